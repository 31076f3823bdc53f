"""Offline answers on the FiQA conversational tasks: the extractive answer (up to three sentences,
declining when none is relevant) against the whole passages quoted before it, in the same run.

    python bench/offline_answers.py [--data-dir DIR] [--tasks FILE] [--corpus FILE]

The corpus is ingested into DIR (a temporary directory unless given; a second run over the same
DIR finds it unchanged). The tasks are split in halves by `answers_eval.split_tasks`. On the dev
half each task's final turn is replayed and its candidate sentences scored, by cosine with the
query and by word overlap, to choose each scorer's decline threshold (the best balanced
answer/decline accuracy; the lowest of ties) and to compare the sentences each would quote. The
test half is then replayed through `advisor eval answers`'s `evaluate()`: as the engine answered
before, as it answers now (`extractive.THRESHOLD`, as in the code) and as it answers now without
an embedder (word overlap). Times are per turn, after a warm-up replay, so they leave out the
query's embedding (cached) and show what each way of answering costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.engine import extractive, prompts  # noqa: E402
from bot.models import Hit  # noqa: E402
from bot.safety.answers_eval import AnswersReport, Task, evaluate, read_tasks, split_tasks  # noqa: E402

FIQA = Path("/work/shared/datasets/retrieval/fiqa_mtrag_conversational")
current_answer = prompts.offline_answer
DECLINES = ("UNANSWERABLE", "UNDERSPECIFIED")


async def passages_answer(hits: list[Hit], query: str, embedder: Any = None) -> str:
    """The offline answer before the extractive one: every quotable passage quoted whole."""
    if not prompts.quotable(hits):
        return (f"{prompts.OFFLINE_LEAD}, so I can only search my knowledge base, and nothing in it matches "
                "your question closely. Try rephrasing, or ask about another topic.")
    return (f"{prompts.OFFLINE_LEAD}, so I can't write you an answer. These are the passages from my "
            "knowledge base that best match your question:\n" + prompts.quote_passages(hits))


@dataclass
class Scored:
    """One dev task's candidate sentences and their scores by each scorer (none: the engine did
    not answer offline, e.g. moderation refused the message, so it declines at any threshold)."""

    task: Task
    candidates: list[extractive.Sentence]
    ids: dict[int, str | None]  # citation number -> document id
    scores: dict[str, list[float]]


async def score_dev(engine: Any, tasks: list[Task]) -> list[Scored]:
    """Each task replayed, and the hits and query its last turn gave `prompts.offline_answer` scored."""
    embedder = engine.retriever.embedder
    given: list[tuple[list[Hit], str]] = []

    async def recording(hits: list[Hit], query: str, used: Any = None) -> str:
        given.append((hits, query))
        return await current_answer(hits, query, used)

    scored = []
    for task in tasks:
        report, _ = await replay(engine, [task], recording)
        hits, query = given[-1] if report.rows[0]["mode"] == "offline" else ([], "")
        candidates = extractive.sentences(prompts.quotable_passages(hits))
        scores = {
            "cosine": await extractive.dense_scores(query, candidates, embedder),
            "word overlap": extractive.overlap_scores(query, candidates),
        }
        ids = {n: h.chunk.extra.get("id") for n, h in enumerate(hits, start=1)}
        scored.append(Scored(task, candidates, ids, scores))
    return scored


def shares(rows: Sequence[Scored], scorer: str, threshold: float) -> tuple[float, float]:
    """The shares of answerable tasks answered and of unanswerable or underspecified ones declined."""

    def share(labels: tuple[str, ...], answered: bool) -> float:
        group = [r for r in rows if r.task.answerability in labels]
        return sum((max(r.scores[scorer], default=-1.0) >= threshold) == answered for r in group) / max(len(group), 1)

    return share(("ANSWERABLE",), True), share(DECLINES, False)


def balanced(rows: Sequence[Scored], scorer: str, threshold: float) -> float:
    return sum(shares(rows, scorer, threshold)) / 2


def best_threshold(rows: Sequence[Scored], scorer: str) -> float:
    """The cut halfway between two tasks' best scores with the best balanced accuracy on `rows`,
    the lowest of ties (so it answers more)."""
    tops = sorted({max(r.scores[scorer], default=-1.0) for r in rows})
    cuts = [(low + high) / 2 for low, high in zip(tops, tops[1:])]
    return max(cuts, key=lambda t: (round(balanced(rows, scorer, t), 6), -t))


def quoted_precision(rows: Sequence[Scored], scorer: str, threshold: float) -> tuple[int, int]:
    """(gold, all) passages cited by the sentences `extractive.choose` keeps under `scorer`."""
    gold = total = 0
    for r in rows:
        numbers = {s.number for s in extractive.choose(r.candidates, r.scores[scorer], threshold)}
        gold += sum(r.ids[n] in r.task.gold for n in numbers)
        total += len(numbers)
    return gold, total


async def overlap_answer(hits: list[Hit], query: str, embedder: Any = None) -> str:
    """The extractive answer as it is without an embedder: sentences ranked by word overlap."""
    return await current_answer(hits, query, None)


async def replay(engine: Any, tasks: list[Task], answer: Callable[..., Any]) -> tuple[AnswersReport, float]:
    """`evaluate()` with `answer` standing in for `prompts.offline_answer`, and the seconds it took."""
    current, prompts.offline_answer = prompts.offline_answer, answer
    started = time.perf_counter()
    try:
        return await evaluate(engine, tasks), time.perf_counter() - started
    finally:
        prompts.offline_answer = current


def figures(label: str, report: AnswersReport, seconds: float, turns: int) -> str:
    data = report.to_json()
    rows = data["by_answerability"]
    declined = sum(rows.get(c, {}).get("declined", 0) + rows.get(c, {}).get("clarified", 0) for c in DECLINES)
    declinable = sum(sum(rows.get(c, {}).values()) for c in DECLINES)
    cited = data["citations"]
    return (f"{label:<26}{data['answerable_answered']:>10.1%}{f'{declined}/{declinable}':>12}"
            f"{data['answer_decline_accuracy']:>11.1%}{data['citation_precision'] or 0:>11.1%}"
            f"{cited['in_gold']:>6}/{cited['with_id']:<5}{seconds / turns * 1000:>9.0f}")


async def bench(tasks: list[Task]) -> None:
    from bot.wiring import build_engine, build_retrieval
    from config.settings import load_settings

    settings = load_settings(None)
    stack = await build_retrieval(settings)
    engine = await build_engine(settings, stack)
    try:
        if engine.mode != "offline":
            raise SystemExit("this bench measures the offline answer: run it with no language model configured")
        dev, test = split_tasks(tasks)
        rows = await score_dev(engine, dev)
        print(f"== dev half: {len(dev)} tasks, decline threshold chosen per scorer (best balanced accuracy)")
        print(f"{'scorer':<14}{'threshold':>10}{'balanced':>10}{'cited in gold':>16}"
              f"{'in the code':>13}{'balanced':>10}")
        for scorer, in_code in (("cosine", extractive.THRESHOLD), ("word overlap", extractive.OVERLAP_THRESHOLD)):
            threshold = best_threshold(rows, scorer)
            gold, total = quoted_precision(rows, scorer, threshold)
            print(f"{scorer:<14}{threshold:>10.4f}{balanced(rows, scorer, threshold):>10.1%}{f'{gold}/{total}':>16}"
                  f"{in_code:>13}{balanced(rows, scorer, in_code):>10.1%}")
        print("cosine threshold on dev: " + "  ".join(
            f"{t:.2f} {answered:.0%}/{declined:.0%}"
            for t in (0.5, 0.54, 0.58, 0.6, 0.62, 0.64, 0.66, 0.7)
            for answered, declined in [shares(rows, "cosine", t)]
        ) + "  (answerable answered/unanswerable declined)")

        turns = sum(len(t.earlier) + 1 for t in test)
        await replay(engine, test, passages_answer)  # untimed: every timed run then finds its query vectors cached
        before, before_s = await replay(engine, test, passages_answer)
        after, after_s = await replay(engine, test, current_answer)
        overlap, overlap_s = await replay(engine, test, overlap_answer)
        print(f"\n== test half: {len(test)} tasks ({turns} turns), offline engine, the same index and run")
        print(f"{'offline answer':<26}{'answerable':>10}{'declined':>12}{'balanced':>11}{'citations':>11}"
              f"{'in gold':>12}{'ms/turn':>9}")
        print(f"{'':<26}{'answered':>10}{'unans.+und.':>12}{'accuracy':>11}{'precision':>11}")
        print(figures("before: passages quoted", before, before_s, turns))
        print(figures("after: extractive", after, after_s, turns))
        print(figures("  without an embedder", overlap, overlap_s, turns))
    finally:
        await engine.memory.close()
        await stack.close()


def ingest(corpus: Path) -> None:
    from bot.cli import main

    if main(["ingest", str(corpus), "--text-field", "text", "--title-field", "title", "--id-field", "_id"]) != 0:
        raise SystemExit(f"could not ingest {corpus}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="where the index and memory go (default: a temporary directory)")
    parser.add_argument("--tasks", type=Path, default=FIQA / "mtragun" / "generation_tasks_fiqa.jsonl")
    parser.add_argument("--corpus", type=Path, default=FIQA / "corpus.jsonl")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ADVISOR_DATA_DIR"] = str(args.data_dir or tmp)
        ingest(args.corpus)
        asyncio.run(bench(read_tasks(args.tasks)))


if __name__ == "__main__":
    main()
