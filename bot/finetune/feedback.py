"""`advisor finetune from-feedback`: a fine-tuning set from reviewed answers and a curated data set.

Every answer an admin marked good, or corrected, on the console's conversations page
(`Memory.reviewed_turns()`) becomes an example: its question, and the answer (a correction replaces
the model's). A curated Q&A data set (counsel-chat, a CSV given as an argument) goes through
`finetune prepare`'s own steps (cleaning, length filter, best answer per question). Reviewed examples
come first, so a curated one repeating a reviewed question is the one dropped; then everything is
de-duplicated together and split as prepare splits (the curated set's own split when it has one, a
seeded train/validation/test split otherwise), keeping a held-out test split.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.finetune.clean import clean_question
from bot.finetune.errors import InputError
from bot.finetune.prepare import (
    REASONS,
    SPLITS,
    Example,
    PrepareOptions,
    PrepareReport,
    _best_per_question,
    _deduplicate,
    _example,
    _length_problem,
    _split,
    _write,
)
from bot.finetune.sources import Mapping, choose_mapping, read_table
from bot.state.memory import AnsweredTurn

FEEDBACK_REASONS = {
    "no_question": "the question before the answer is gone, or not a user's",
    "empty_answer": "no answer text",
    "too_long": "answer longer than --max-answer-words",
}
NO_SPLIT = Mapping("feedback", "question", "answer")


@dataclass
class FeedbackReport:
    reviews: int = 0
    good: int = 0
    corrected: int = 0
    usable_reviews: int = 0
    dropped_reviews: Counter[str] = field(default_factory=Counter)
    curated: str | None = None
    curated_rows: int = 0
    prepared: PrepareReport | None = None
    from_reviews: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        prepared = self.prepared.to_json() if self.prepared else {}
        return {
            "reviews": {
                "total": self.reviews,
                "good": self.good,
                "corrected": self.corrected,
                "used": self.usable_reviews,
                "dropped": {reason: self.dropped_reviews[reason] for reason in FEEDBACK_REASONS},
                "examples_by_split": self.from_reviews,
            },
            "curated": {"source": self.curated, "rows": self.curated_rows},
            "examples": prepared.get("examples", 0),
            "splits": prepared.get("splits", {}),
            "split_from": prepared.get("split_from", ""),
            "dropped": prepared.get("dropped", {}),
            "dropped_reasons": {**REASONS, **{f"review_{k}": v for k, v in FEEDBACK_REASONS.items()}},
            "options": prepared.get("options", {}),
            "files": prepared.get("files", {}),
        }

    def summary(self) -> str:
        data = self.to_json()
        lines = [
            f"Built {data['examples']} examples: {self.usable_reviews} of {self.reviews} reviewed answers "
            f"({self.good} good, {self.corrected} corrected)"
            + (f" and {self.curated_rows} curated rows from {self.curated}" if self.curated else " (no curated set)"),
            f"Split from {data['split_from']}:",
        ]
        lines += [
            f"  {name:<10} {data['splits'].get(name, 0):>6}  ({self.from_reviews.get(name, 0)} from reviews)  "
            f"{data['files'].get(name, '')}"
            for name in SPLITS
        ]
        dropped = {f"review {k}": v for k, v in self.dropped_reviews.items() if v}
        dropped |= {k: v for k, v in data["dropped"].items() if v}
        lines.append(f"Dropped {sum(dropped.values())}:" + ("" if dropped else " nothing"))
        reasons = data["dropped_reasons"]
        lines += [
            f"  {reason:<24} {count:>6}  {reasons.get(reason.replace('review ', 'review_'), '')}"
            for reason, count in dropped.items()
        ]
        lines.append(f"Report: {data['files'].get('report', '')}")
        return "\n".join(lines)


def _from_review(turn: AnsweredTurn, options: PrepareOptions, report: FeedbackReport) -> Example | None:
    review = turn.review
    assert review is not None
    corrected = review.status == "corrected" and bool(review.correction)
    report.corrected += corrected
    report.good += not corrected
    if turn.question is None or turn.question.role != "user" or not turn.question.content.strip():
        report.dropped_reviews["no_question"] += 1
        return None
    answer = (review.correction if corrected else turn.answer.content) or ""
    answer = answer.strip()
    if not answer:
        report.dropped_reviews["empty_answer"] += 1
        return None
    if len(answer.split()) > options.max_answer_words:
        report.dropped_reviews["too_long"] += 1
        return None
    question = clean_question(turn.question.content).text
    return Example(turn.answer.id, f"review:{turn.answer.id}", question, answer, None, math.inf)


def build_from_feedback(
    reviewed: list[AnsweredTurn],
    out_dir: Path,
    persona: str,
    curated: Path | None = None,
    options: PrepareOptions | None = None,
    min_reviews: int = 1,
) -> FeedbackReport:
    """Write train/validation/test.jsonl and report.json in `out_dir`. InputError, with nothing written,
    when there are fewer than `min_reviews` usable reviewed answers or the curated set cannot be read."""
    options = options or PrepareOptions()
    options.check()
    if min_reviews < 1:
        raise InputError("--min-reviews must be at least 1")
    report = FeedbackReport(reviews=len(reviewed))
    if not reviewed:
        raise InputError(
            "there are no reviewed answers yet: mark answers good or correct them on the console's "
            "conversations page first; nothing was written"
        )
    examples = [e for turn in reviewed if (e := _from_review(turn, options, report)) is not None]
    report.usable_reviews = len(examples)
    if len(examples) < min_reviews:
        raise InputError(
            f"only {len(examples)} usable reviewed answers ({report.reviews} reviewed); at least {min_reviews} "
            "are needed (--min-reviews); nothing was written"
        )
    prepared = PrepareReport(source="reviewed answers" + (f" + {curated}" if curated else ""), mapping="feedback")
    prepared.options = asdict(options) | {"min_reviews": min_reviews}
    curated_examples: list[Example] = []
    mapping = NO_SPLIT
    if curated is not None:
        table = read_table(curated)  # prepare's reading, cleaning and filtering
        mapping = choose_mapping(table, {})
        report.curated, report.curated_rows = str(curated), len(table.rows)
        prepared.mapping = f"feedback + {mapping.name}"
        for row in table.rows:
            example = _example(row, mapping, table.path, options, prepared)
            if reason := _length_problem(example, options):
                prepared.dropped[reason] += 1
            else:
                curated_examples.append(example)
        curated_examples = _best_per_question(curated_examples, prepared)
    reviewed_keys = {e.key for e in examples}
    kept = _deduplicate(examples + curated_examples, options.near_duplicate_threshold, prepared)
    presplit = [e for e in kept if e.split is not None]
    seeded, how = _split([e for e in kept if e.split is None], NO_SPLIT, options)
    where = {id(e): name for name, part in seeded.items() for e in part} | {id(e): e.split for e in presplit}
    splits = {name: [e for e in kept if where[id(e)] == name] for name in SPLITS}
    prepared.split_from = how + (f", and the curated set's {mapping.split!r} field for its rows" if presplit else "")
    prepared.rows = report.reviews + report.curated_rows
    prepared.questions = len(kept)
    report.from_reviews = {name: sum(e.key in reviewed_keys for e in splits[name]) for name in SPLITS}
    report.prepared = prepared
    _write(out_dir, persona, splits, prepared)
    (out_dir / "report.json").write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
    return report
