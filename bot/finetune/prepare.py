"""`advisor finetune prepare`: an advice Q&A data set -> OpenAI chat fine-tuning JSONL per split.

One example per question: the user turn is the question's title and text, the assistant
turn its best answer (by the rank field, e.g. upvotes), the system turn the advisor's
persona. Rows are cleaned, filtered by answer length, de-duplicated (questions and
answers, exact and near), split, and every drop is counted by reason in the report.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.finetune.clean import clean_answer, clean_question
from bot.finetune.dedupe import DuplicateFilter, normalise
from bot.finetune.errors import InputError
from bot.finetune.sources import Mapping, Row, choose_mapping, read_table

SPLITS = ("train", "validation", "test")
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
}
REASONS = {
    "empty_question": "no question text",
    "empty_answer": "no answer text left after cleaning",
    "too_short": "answer shorter than --min-answer-words",
    "too_long": "answer longer than --max-answer-words",
    "not_best_answer": "a better-ranked answer to the same question was kept",
    "duplicate_question": "same question as an earlier example",
    "near_duplicate_question": "question nearly the same as an earlier example's",
    "duplicate_answer": "same answer as an earlier example",
    "near_duplicate_answer": "answer nearly the same as an earlier example's",
}


@dataclass(frozen=True)
class PrepareOptions:
    min_answer_words: int = 25
    max_answer_words: int = 750
    near_duplicate_threshold: float = 0.8
    resplit: bool = False  # ignore the source's split field and make a seeded one
    seed: int = 0
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)

    def check(self) -> None:
        if not 0 <= self.min_answer_words <= self.max_answer_words:
            raise InputError("--min-answer-words must be between 0 and --max-answer-words")
        if not 0 < self.near_duplicate_threshold <= 1:
            raise InputError("--near-duplicate-threshold must be in (0, 1]")
        if len(self.ratios) != 3 or min(self.ratios) < 0 or not math.isclose(sum(self.ratios), 1.0, abs_tol=1e-6):
            raise InputError("--ratios must be three non-negative numbers (train,validation,test) adding up to 1")


@dataclass
class Example:
    line: int
    key: str
    user: str
    answer: str
    split: str | None
    rank: float

    def to_json(self, persona: str) -> dict[str, Any]:
        return {
            "messages": [
                {"role": "system", "content": persona},
                {"role": "user", "content": self.user},
                {"role": "assistant", "content": self.answer},
            ]
        }


@dataclass
class PrepareReport:
    source: str
    mapping: str
    rows: int = 0
    questions: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    split_from: str = ""
    dropped: Counter[str] = field(default_factory=Counter)
    questions_without_answer: int = 0
    cleaned: Counter[str] = field(default_factory=Counter)
    options: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def examples(self) -> int:
        return sum(self.splits.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "mapping": self.mapping,
            "rows": self.rows,
            "questions": self.questions,
            "examples": self.examples,
            "splits": self.splits,
            "split_from": self.split_from,
            "dropped": {reason: self.dropped[reason] for reason in REASONS},
            "questions_without_answer": self.questions_without_answer,
            "cleaned": dict(sorted(self.cleaned.items())),
            "options": self.options,
            "files": self.files,
        }

    def summary(self) -> str:
        lines = [
            (
                f"Prepared {self.examples} examples from {self.source} ({self.mapping} mapping: "
                f"{self.rows} rows, {self.questions} questions; split from {self.split_from})"
            )
        ]
        lines += [f"  {name:<10} {self.splits[name]:>6}  {self.files[name]}" for name in SPLITS]
        lines.append(f"Dropped {sum(self.dropped.values())} rows:")
        lines += [f"  {reason:<24} {self.dropped[reason]:>6}  {REASONS[reason]}" for reason in REASONS]
        lines.append(f"Questions left without a usable answer: {self.questions_without_answer}")
        if self.cleaned:
            lines.append("Cleaned: " + ", ".join(f"{step} {count}" for step, count in sorted(self.cleaned.items())))
        lines.append(f"Report: {self.files['report']}")
        return "\n".join(lines)


def prepare(
    source: Path, out_dir: Path, persona: str, fields: dict[str, str | None], options: PrepareOptions
) -> PrepareReport:
    """Build train/validation/test JSONL and report.json in `out_dir`; InputError on unusable input."""
    options.check()
    table = read_table(source)
    mapping = choose_mapping(table, fields)
    report = PrepareReport(source=str(source), mapping=mapping.name, rows=len(table.rows), options=asdict(options))
    keys: set[str] = set()
    candidates = []
    for row in table.rows:
        example = _example(row, mapping, table.path, options, report)
        keys.add(example.key)
        reason = _length_problem(example, options)
        if reason:
            report.dropped[reason] += 1
        else:
            candidates.append(example)
    report.questions = len(keys)
    best = _best_per_question(candidates, report)
    report.questions_without_answer = report.questions - len(best)
    kept = _deduplicate(best, options.near_duplicate_threshold, report)
    splits, report.split_from = _split(kept, mapping, options)
    _write(out_dir, persona, splits, report)
    return report


def _example(row: Row, mapping: Mapping, path: Path, options: PrepareOptions, report: PrepareReport) -> Example:
    values = row.values
    question = clean_question(values.get(mapping.question, ""))
    title = clean_question(values.get(mapping.title, "")) if mapping.title else None
    answer = clean_answer(values.get(mapping.answer, ""), values.get(mapping.author, "") if mapping.author else "")
    for cleaned in (question, title, answer):
        if cleaned is not None:
            report.cleaned.update(cleaned.steps)
    user = _user_text(title.text if title else "", question.text)
    key = values.get(mapping.id, "").strip() if mapping.id else ""
    return Example(
        row.line,
        key or normalise(user),
        user,
        answer.text,
        _split_name(row, mapping, path, options),
        _rank(row, mapping, path),
    )


def _user_text(title: str, question: str) -> str:
    """Title and text, unless the text already contains the title."""
    if title and normalise(title) not in normalise(question):
        return f"{title}\n\n{question}".strip()
    return question


def _split_name(row: Row, mapping: Mapping, path: Path, options: PrepareOptions) -> str | None:
    if not mapping.split or options.resplit:
        return None
    value = row.values.get(mapping.split, "").strip()
    if value.lower() not in SPLIT_NAMES:
        raise InputError(
            f"field {mapping.split!r} is {value!r}: expected train, val (validation, dev) or test; "
            "or pass --resplit for a seeded split",
            path,
            row.line,
        )
    return SPLIT_NAMES[value.lower()]


def _rank(row: Row, mapping: Mapping, path: Path) -> float:
    if not mapping.rank:
        return 0.0
    raw = row.values.get(mapping.rank, "").strip()
    try:
        rank = float(raw) if raw else 0.0
    except ValueError:
        rank = math.nan
    if not math.isfinite(rank):
        raise InputError(f"field {mapping.rank!r} is {raw!r}: expected a number", path, row.line)
    return rank


def _length_problem(example: Example, options: PrepareOptions) -> str | None:
    words = len(example.answer.split())
    if not example.user:
        return "empty_question"
    if not words:
        return "empty_answer"
    if words < options.min_answer_words:
        return "too_short"
    if words > options.max_answer_words:
        return "too_long"
    return None


def _best_per_question(candidates: list[Example], report: PrepareReport) -> list[Example]:
    """The highest-ranked answer of each question (the first of equals), in order of first appearance."""
    groups: dict[str, list[Example]] = {}
    for example in candidates:
        groups.setdefault(example.key, []).append(example)
    report.dropped["not_best_answer"] += sum(len(group) - 1 for group in groups.values())
    return [max(group, key=lambda example: example.rank) for group in groups.values()]


def _deduplicate(examples: list[Example], threshold: float, report: PrepareReport) -> list[Example]:
    """Drop an example whose question, or else whose answer, repeats an earlier one's (across splits too)."""
    questions, answers = DuplicateFilter(threshold), DuplicateFilter(threshold)
    kept = []
    for example in examples:
        if kind := questions.check(example.user):
            report.dropped[f"{kind}_question"] += 1
        elif kind := answers.check(example.answer):
            report.dropped[f"{kind}_answer"] += 1
        else:
            kept.append(example)
    return kept


def _split(examples: list[Example], mapping: Mapping, options: PrepareOptions) -> tuple[dict[str, list[Example]], str]:
    if mapping.split and not options.resplit:
        splits = {name: [e for e in examples if e.split == name] for name in SPLITS}
        return splits, f"the source's {mapping.split!r} field"
    order = list(range(len(examples)))
    random.Random(options.seed).shuffle(order)
    train_end = round(len(order) * options.ratios[0])
    validation_end = train_end + round(len(order) * options.ratios[1])
    parts = (order[:train_end], order[train_end:validation_end], order[validation_end:])
    splits = {name: [examples[i] for i in sorted(part)] for name, part in zip(SPLITS, parts, strict=True)}
    ratios = "/".join(f"{ratio:g}" for ratio in options.ratios)
    return splits, f"a seeded shuffle (seed {options.seed}, ratios {ratios})"


def _write(out_dir: Path, persona: str, splits: dict[str, list[Example]], report: PrepareReport) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, examples in splits.items():
        path = out_dir / f"{name}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(e.to_json(persona), ensure_ascii=False) + "\n" for e in examples)
        report.splits[name] = len(examples)
        report.files[name] = str(path)
    report.files["report"] = str(out_dir / "report.json")
    (out_dir / "report.json").write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
