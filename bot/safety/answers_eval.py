"""`advisor eval answers`: MTRAG conversational tasks replayed through the full engine.

Each task's earlier user turns are asked in order in a fresh conversation, then its last
user turn; the reply is classified "answered", "declined" or "clarified", and the passages
it cited are checked against the task's gold context document ids (the chunk's `extra["id"]`,
present when the corpus was ingested with `--id-field _id`).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.engine.pipeline import NOT_IN_KNOWLEDGE_BASE
from bot.engine.prompts import OFFLINE_DECLINE
from bot.models import Final, Hit, IncomingMessage

OUTCOMES = ("answered", "declined", "clarified")
CLASSES = ("ANSWERABLE", "PARTIAL", "UNANSWERABLE", "UNDERSPECIFIED")
OFFLINE_MODES = ("offline", "fallback")  # fallback: the extractive answer replaced a local model's (step vet)
_DECLINE = re.compile(
    r"(i couldn't find this in my knowledge base|i can(?:no|')t answer|i(?: am|'m) (?:not able|unable) to answer"
    r"|(?:does not|doesn't|don't|do not) (?:cover|contain|mention|say)|no information (?:about|on)"
    r"|not (?:covered|mentioned) in)",
    re.IGNORECASE,
)
_CLARIFY = re.compile(r"(could you tell me|can you clarify|could you clarify|do you mean|did you mean)", re.IGNORECASE)


@dataclass(frozen=True)
class Task:
    task_id: str
    earlier: tuple[str, ...]
    question: str
    answerability: str
    gold: frozenset[str]


def read_tasks(path: Path, limit: int | None = None) -> list[Task]:
    """MTRAG generation tasks, one JSON object a line. ValueError naming the file and line when bad."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the tasks ({exc})") from exc
    tasks: list[Task] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            users = [str(turn["text"]) for turn in record["input"] if turn.get("speaker") == "user"]
            classes = record.get("answerability") or ["ANSWERABLE"]
            label = str(classes[0] if isinstance(classes, list) else classes).upper()
            gold = frozenset(str(c["document_id"]) for c in record.get("contexts") or [] if "document_id" in c)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}:{number}: not an MTRAG task ({exc})") from exc
        if not users:
            raise ValueError(f"{path}:{number}: the task has no user turn")
        tasks.append(Task(str(record.get("task_id", number)), tuple(users[:-1]), users[-1], label, gold))
        if limit is not None and len(tasks) >= limit:
            break
    if not tasks:
        raise ValueError(f"{path}: no tasks")
    return tasks


def split_tasks(tasks: list[Task]) -> tuple[list[Task], list[Task]]:
    """Dev and test halves, alternating within each answerability class in the order of a hash of
    the task id: the same split on every run and machine, so a threshold chosen on dev is
    reported on tasks it never saw."""
    dev: list[Task] = []
    test: list[Task] = []
    for label in sorted({t.answerability for t in tasks}):
        same = [t for t in tasks if t.answerability == label]
        same.sort(key=lambda t: hashlib.sha256(t.task_id.encode()).hexdigest())
        dev += same[0::2]
        test += same[1::2]
    return dev, test


def classify(final: Final) -> str:
    """answered, declined (the knowledge base does not cover it, or cannot answer) or clarified (asks back)."""
    text = final.text.strip()
    if final.mode in OFFLINE_MODES:
        return "declined" if OFFLINE_DECLINE in text or not final.citations else "answered"
    if final.mode in {"rejected", "error", "limited", "crisis"}:
        return "declined"
    if NOT_IN_KNOWLEDGE_BASE.strip() in text or _DECLINE.search(text.replace("\u2019", "'")):
        return "declined"
    if text.endswith("?") or _CLARIFY.search(text):
        return "clarified"
    return "answered"


@dataclass
class AnswersReport:
    mode: str = "offline"
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    cited: int = 0
    cited_gold: int = 0
    cited_without_id: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, task: Task, outcome: str, cited_ids: list[str | None], mode: str = "offline") -> None:
        self.counts.setdefault(task.answerability, Counter())[outcome] += 1
        known = [i for i in cited_ids if i is not None]
        self.cited += len(known)
        self.cited_without_id += len(cited_ids) - len(known)
        self.cited_gold += sum(1 for i in known if i in task.gold)
        self.rows.append({"task_id": task.task_id, "answerability": task.answerability, "outcome": outcome, "mode": mode, "cited": cited_ids})

    def _share(self, classes: tuple[str, ...], outcomes: tuple[str, ...]) -> float | None:
        total = sum(sum(self.counts.get(c, Counter()).values()) for c in classes)
        hits = sum(self.counts.get(c, Counter())[o] for c in classes for o in outcomes)
        return round(hits / total, 4) if total else None

    def balanced_accuracy(self) -> float | None:
        """The mean of answerable tasks answered and unanswerable or underspecified ones declined (or
        asked back): answering everything, or declining everything, scores 0.5."""
        answered = self._share(("ANSWERABLE",), ("answered",))
        declined = self._share(("UNANSWERABLE", "UNDERSPECIFIED"), ("declined", "clarified"))
        return None if answered is None or declined is None else round((answered + declined) / 2, 4)

    def to_json(self) -> dict[str, Any]:
        return {
            "tasks": len(self.rows),
            "mode": self.mode,
            "by_answerability": {
                label: {o: self.counts[label][o] for o in OUTCOMES}
                for label in [*CLASSES, *sorted(set(self.counts) - set(CLASSES))]
                if label in self.counts
            },
            "answerable_answered": self._share(("ANSWERABLE",), ("answered",)),
            "unanswerable_declined_or_clarified": self._share(("UNANSWERABLE", "UNDERSPECIFIED"), ("declined", "clarified")),
            "answer_decline_accuracy": self.balanced_accuracy(),
            "citation_precision": round(self.cited_gold / self.cited, 4) if self.cited else None,
            "answer_modes": dict(Counter(row["mode"] for row in self.rows)),
            "citations": {"with_id": self.cited, "in_gold": self.cited_gold, "without_id": self.cited_without_id},
            "results": self.rows,
        }

    def table(self) -> str:
        data = self.to_json()
        lines = [f"{'answerability':<16}{'answered':>10}{'declined':>10}{'clarified':>10}"]
        for label, row in data["by_answerability"].items():
            lines.append(f"{label:<16}{row['answered']:>10}{row['declined']:>10}{row['clarified']:>10}")

        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.1%}"

        lines += [
            "",
            f"tasks: {data['tasks']} (engine mode: {self.mode})",
            "answers by mode:                            "
            + ", ".join(f"{mode} {count}" for mode, count in sorted(data["answer_modes"].items())),
            f"answerable tasks answered:                  {pct(data['answerable_answered'])}",
            f"unanswerable+underspecified declined/asked: {pct(data['unanswerable_declined_or_clarified'])}",
            f"answer/decline accuracy (balanced):         {pct(data['answer_decline_accuracy'])}",
            (
                f"citation precision (cited in gold):         {pct(data['citation_precision'])}"
                f" ({self.cited_gold}/{self.cited}; {self.cited_without_id} citations without a document id)"
            ),
        ]
        return "\n".join(lines)


class RecordingRetriever:
    """Wraps the engine's retriever to keep the hits of the latest search (citations carry no chunk id)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.last: list[Hit] = []

    async def search(self, *args: Any, **kwargs: Any) -> list[Hit]:
        hits = await self.inner.search(*args, **kwargs)
        self.last = list(hits)
        return hits

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Unlimited:
    """Stands in for the engine's rate limiters while a task replays its turns back to back."""

    def try_take(self, key: str) -> float:
        return 0.0


def cited_ids(final: Final, hits: list[Hit]) -> list[str | None]:
    """The document id of each passage the reply cites, None when its chunk has none."""
    by_place = {(h.chunk.source, h.chunk.location, h.chunk.title): h.chunk.extra.get("id") for h in hits}
    return [by_place.get((c.source, c.location, c.title)) for c in final.citations]


async def evaluate(engine: Any, tasks: list[Task]) -> AnswersReport:
    recorder = RecordingRetriever(engine.retriever)
    limits = (engine.user_limit, engine.conversation_limit)
    engine.retriever = recorder
    engine.user_limit = engine.conversation_limit = Unlimited()  # a replay is not a user typing too fast
    report = AnswersReport(mode=str(getattr(engine, "mode", "offline")))
    try:
        for task in tasks:
            run = uuid.uuid4().hex
            final: Final | None = None
            for text in (*task.earlier, task.question):
                message = IncomingMessage("eval", "answers", "eval", run, f"eval-{run}", text, time.time(), uuid.uuid4().hex)
                recorder.last = []
                final = None
                async for event in engine.answer(message):
                    if isinstance(event, Final):
                        final = event
                if final is None:
                    raise RuntimeError("the engine ended an answer without a Final")
            await engine.forget(str(message.conversation))
            assert final is not None
            report.add(task, classify(final), cited_ids(final, recorder.last), final.mode)
    finally:
        engine.retriever = recorder.inner
        engine.user_limit, engine.conversation_limit = limits
    return report
