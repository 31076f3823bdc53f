"""`advisor finetune compare`: two models on held-out test questions, side by side.

Both answer each test question through the engine's prompt (persona and rules, no
retrieval); a judge model scores every answer on the rubric in `judge`; ROUGE-L F1
measures overlap with the test set's reference answer; and both answer the safety
prompts, whose refusals are counted. A failed call or a judge reply that cannot be read
is recorded with the item, never fatal.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from bot.finetune.errors import InputError
from bot.finetune.judge import CRITERIA, Judgement, judge_messages, parse_judgement
from bot.finetune.overlap import rouge_l_f1
from bot.finetune.safety import is_refusal
from bot.finetune.validate import read_lines
from bot.llm.openai_model import OpenAIChatModel
from bot.ports import ModelError
from bot.engine.prompts import build_messages

LABELS = ("A", "B")
JUDGE_MAX_TOKENS = 600


@dataclass(frozen=True)
class TestItem:
    line: int
    question: str
    reference: str


def read_test_set(path: Path, limit: int | None = None) -> list[TestItem]:
    """Each example's last assistant message (the reference) and the user message it answers (the question)."""
    items = []
    for number, raw in enumerate(read_lines(path), 1):
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"not a JSON line ({exc})", path, number) from exc
        messages = data.get("messages") if isinstance(data, dict) else None
        pair = _question_and_reference(messages if isinstance(messages, list) else [])
        if pair is None:
            raise InputError("expected 'messages' with a user message and an assistant answer after it", path, number)
        items.append(TestItem(number, *pair))
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise InputError("no test examples", path)
    return items


def _question_and_reference(messages: list[Any]) -> tuple[str, str] | None:
    """The last assistant text, and the last user text before it (tool turns may sit between)."""
    texts: list[tuple[Any, str]] = [
        (m.get("role"), m["content"]) for m in messages if isinstance(m, dict) and isinstance(m.get("content"), str)
    ]
    texts = [(role, content) for role, content in texts if content.strip()]
    answers = [index for index, (role, _) in enumerate(texts) if role == "assistant"]
    questions = [index for index, (role, _) in enumerate(texts[: answers[-1]]) if role == "user"] if answers else []
    return (texts[questions[-1]][1], texts[answers[-1]][1]) if questions else None


@dataclass
class Outcome:
    """One model's reply to one prompt, and how it scored."""

    text: str | None = None
    error: str | None = None
    rouge_l_f1: float | None = None
    judgement: Judgement | None = None
    refused: bool | None = None

    @property
    def overall(self) -> float | None:
        return self.judgement.overall if self.judgement else None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"text": self.text, "error": self.error}
        data |= {
            name: value
            for name, value in (("rouge_l_f1", self.rouge_l_f1), ("refused", self.refused))
            if value is not None
        }
        if self.judgement is not None:
            data["judge"] = self.judgement.to_json()
        return data


@dataclass
class Comparison:
    models: dict[str, str]
    judge: str
    test_file: str
    items: list[TestItem]
    answers: list[dict[str, Outcome]] = field(default_factory=list)  # per item, by label
    safety_prompts: list[str] = field(default_factory=list)
    safety: list[dict[str, Outcome]] = field(default_factory=list)  # per prompt, by label

    def summary(self, label: str) -> dict[str, Any]:
        outcomes = [row[label] for row in self.answers]
        judged = [o.judgement for o in outcomes if o.judgement is not None and o.judgement.error is None]
        overlaps = [o.rouge_l_f1 for o in outcomes if o.rouge_l_f1 is not None]
        safety = [row[label] for row in self.safety]
        return {
            **{criterion: _mean([j.scores[criterion] for j in judged]) for criterion in CRITERIA},
            "overall": _mean([j.overall for j in judged if j.overall is not None]),
            "rouge_l_f1": _mean(overlaps, digits=4),
            "answered": sum(o.text is not None for o in outcomes),
            "answer_errors": sum(o.error is not None for o in outcomes),
            "judged": len(judged),
            "judge_errors": sum(o.judgement is not None and o.judgement.error is not None for o in outcomes),
            "safety_prompts": len(safety),
            "refusals": sum(bool(o.refused) for o in safety),
            "safety_errors": sum(o.error is not None for o in safety),
        }

    def safety_drop(self, base: str) -> str | None:
        """A warning when the other model refuses a smaller share of the safety prompts than the `base`
        model (label or name) does: fine-tuning can weaken safety training (Qi et al., 2023). None otherwise."""
        label = next((lab for lab in LABELS if base in (lab, self.models[lab])), None)
        if label is None:
            raise InputError(f"--base {base!r} is neither of the compared models")
        other = LABELS[1 - LABELS.index(label)]
        base_refused, refused = self.summary(label)["refusals"], self.summary(other)["refusals"]
        if not self.safety_prompts or refused >= base_refused:
            return None
        total = len(self.safety_prompts)
        return (
            f"FLAGGED: {self.models[other]} refused {refused}/{total} harmful prompts, fewer than the base "
            f"{self.models[label]} ({base_refused}/{total}). Fine-tuning can weaken safety training "
            "(Qi et al., 2023): do not switch to it without reading its safety answers."
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "judge": self.judge,
            "test_file": self.test_file,
            "summary": {label: self.summary(label) for label in LABELS},
            "items": [
                {"line": item.line, "question": item.question, "reference": item.reference}
                | {label: row[label].to_json() for label in LABELS}
                for item, row in zip(self.items, self.answers, strict=True)
            ],
            "safety": [
                {"prompt": prompt} | {label: row[label].to_json() for label in LABELS}
                for prompt, row in zip(self.safety_prompts, self.safety, strict=True)
            ],
        }

    def table(self) -> str:
        out = [f"{label} = {name}" for label, name in self.models.items()]
        out.append(f"judge = {self.judge}; {len(self.items)} test questions from {self.test_file}\n")
        out.append(f"{'#':>3}  {'question':<44}{'A overall':>11}{'B overall':>11}{'A ROUGE-L':>11}{'B ROUGE-L':>11}")
        for number, (item, row) in enumerate(zip(self.items, self.answers, strict=True), 1):
            overall = [row[label].overall for label in LABELS]
            overlap = [row[label].rouge_l_f1 for label in LABELS]
            cells = "".join(f"{_cell(value):>11}" for value in overall + overlap)
            out.append(f"{number:>3}  {_clip(item.question, 44):<44}{cells}")
        summaries = {label: self.summary(label) for label in LABELS}
        out.append(f"\n{'':<16}{'A':>10}{'B':>10}")
        for key in (*CRITERIA, "overall", "rouge_l_f1", "answer_errors", "judge_errors"):
            name = "ROUGE-L F1" if key == "rouge_l_f1" else key.replace("_", " ")
            out.append(f"{name:<16}" + "".join(f"{_cell(summaries[label][key]):>10}" for label in LABELS))
        if self.safety_prompts:
            a, b = summaries["A"], summaries["B"]
            out.append(
                f"\nSafety: refused A {a['refusals']}/{a['safety_prompts']}, B {b['refusals']}/{b['safety_prompts']} "
                "(a refusal is the safe reply to these prompts)"
            )
            for number, (prompt, row) in enumerate(zip(self.safety_prompts, self.safety, strict=True), 1):
                verdicts = "".join(f"{_verdict(row[label]):>10}" for label in LABELS)
                out.append(f"{number:>3}  {_clip(prompt, 44):<44}{verdicts}")
        return "\n".join(out)


def _mean(values: list[Any], digits: int = 2) -> float | None:
    return round(statistics.fmean(values), digits) if values else None


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def _clip(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 2] + "… "


def _verdict(outcome: Outcome) -> str:
    return "error" if outcome.error else "refused" if outcome.refused else "answered"


async def compare(
    client: openai.AsyncOpenAI,
    persona: str,
    models: tuple[str, str],
    judge: str,
    test_file: str,
    items: list[TestItem],
    safety_prompts: list[str],
    concurrency: int = 4,
    timeout: float = 60.0,
) -> Comparison:
    """Answers, then judgements, then safety replies; at most `concurrency` calls at a time, in a fixed order."""
    gate = asyncio.Semaphore(concurrency)
    chat = {label: OpenAIChatModel(client, name, timeout=timeout) for label, name in zip(LABELS, models, strict=True)}
    judge_model = OpenAIChatModel(client, judge, timeout=timeout)

    async def ask(model: OpenAIChatModel, messages: list[dict[str, str]], max_tokens: int | None = None) -> Outcome:
        async with gate:
            try:
                text, _usage = await model.complete(messages, max_tokens)
            except ModelError as exc:
                return Outcome(error=f"{exc.kind}: {exc}")
        return Outcome(text=text)

    result = Comparison(dict(zip(LABELS, models, strict=True)), judge, test_file, items, safety_prompts=safety_prompts)
    replies = await asyncio.gather(
        *(ask(chat[label], build_messages(persona, [], [], item.question)) for item in items for label in LABELS)
    )
    result.answers = _by_label(replies)
    answered = [(item, row[label]) for item, row in zip(items, result.answers, strict=True) for label in LABELS]
    answered = [(item, outcome) for item, outcome in answered if outcome.text is not None]
    verdicts = await asyncio.gather(
        *(
            ask(judge_model, judge_messages(item.question, outcome.text or ""), JUDGE_MAX_TOKENS)
            for item, outcome in answered
        )
    )
    for (item, outcome), verdict in zip(answered, verdicts, strict=True):
        outcome.rouge_l_f1 = rouge_l_f1(outcome.text or "", item.reference)
        outcome.judgement = (
            parse_judgement(verdict.text)
            if verdict.text is not None
            else Judgement(error=f"judge call failed: {verdict.error}")
        )
    safety = await asyncio.gather(
        *(ask(chat[label], build_messages(persona, [], [], prompt)) for prompt in safety_prompts for label in LABELS)
    )
    for outcome in safety:
        outcome.refused = is_refusal(outcome.text) if outcome.text is not None else None
    result.safety = _by_label(safety)
    return result


def _by_label(outcomes: list[Outcome]) -> list[dict[str, Outcome]]:
    """[a1, b1, a2, b2, ...] -> [{"A": a1, "B": b1}, ...]"""
    return [dict(zip(LABELS, outcomes[i : i + len(LABELS)], strict=True)) for i in range(0, len(outcomes), len(LABELS))]
