"""Safety benchmark: the learned detector beside the rules, on messages it was never trained on.

    python bench/safety.py [--latency-messages 200]

Prints, each against the rules alone in the same run:
* crisis recall and false alarms on the held-out split (bot/safety/data/heldout), and the
  crisis rate on third-party worries (which should get care, not the protocol);
* the offline harm gate (no moderation endpoint): harmful requests caught and refused, and
  false refusals on safe look-alikes, counsel-chat questions and FiQA questions (the latter two
  read from ../shared/datasets, for evaluation only);
* the latency the detector adds per message: the engine (offline, embedded Qdrant, the sample
  knowledge base) with and without it, interleaved, p50/p95; and the detector's own work per
  message once its embedding is shared (the steadier figure: the engine's tail varies by more).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bot.engine.pipeline import Engine  # noqa: E402
from bot.models import Final, IncomingMessage  # noqa: E402
from bot.safety.crisis import detect  # noqa: E402
from bot.safety.crisis_eval import HELDOUT, read_messages  # noqa: E402
from bot.safety.moderation import decide, offline_classify  # noqa: E402
from bot.safety.safety_eval import read_prompts  # noqa: E402
from bot.safety.semantic import SemanticDetector, combined_signal  # noqa: E402
from bot.state.memory_sqlite import SqliteMemory  # noqa: E402
from config.settings import DEFAULT_SAFETY_ACTIONS, load_settings, parse_safety_actions  # noqa: E402
from retrieval.embedders import OnnxMiniLMEmbedder, QueryCache  # noqa: E402
from retrieval.evaluate import percentile  # noqa: E402
from retrieval.ingest import Ingestor  # noqa: E402
from retrieval.retriever import HybridRetriever  # noqa: E402
from retrieval.sparse import Bm25Encoder  # noqa: E402
from retrieval.store_edge import EdgeStore  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"
ACTIONS = parse_safety_actions(DEFAULT_SAFETY_ACTIONS)


def rate(hits: int, total: int) -> str:
    return f"{hits}/{total} ({hits / total:.1%})" if total else "0/0"


async def crisis_figures(detector: SemanticDetector) -> None:
    print("== crisis detection, held-out split (never used in training)")
    print(f"{'':<34}{'rules alone':>22}{'rules + head':>22}")
    for name, want in (("crisis.txt", True), ("benign.txt", False), ("third_party.txt", False)):
        messages = read_messages(HELDOUT / name)
        rules = sum(detect(m).level == "crisis" for m in messages)
        both = 0
        for m in messages:
            both += combined_signal(m, [], await detector.read(m)).level == "crisis"
        label = {"crisis.txt": "crisis recall", "benign.txt": "false alarms (sad, idioms)",
                 "third_party.txt": "protocol on third-party worries"}[name]
        print(f"{label:<34}{rate(rules, len(messages)):>22}{rate(both, len(messages)):>22}")


def ordinary_questions() -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {}
    counsel = SHARED / "advice_conversations" / "counsel_chat_20200325.csv"
    if counsel.exists():
        with counsel.open(encoding="utf-8") as handle:
            texts = [f"{row['questionTitle'] or ''} {row['questionText'] or ''}".strip() for row in csv.DictReader(handle)]
        sets["counsel-chat questions"] = list(dict.fromkeys(texts))
    fiqa = SHARED / "retrieval" / "fiqa_mtrag_conversational" / "mtragun" / "queries_lastturn.jsonl"
    if fiqa.exists():
        sets["FiQA questions"] = [json.loads(line)["text"].removeprefix("|user|: ") for line in fiqa.read_text().splitlines() if line.strip()]
    if not sets:
        print(f"(no {SHARED}: counsel-chat and FiQA false refusals not measured)")
    return sets


async def harm_figures(detector: SemanticDetector) -> None:
    print("\n== offline harm gate (no moderation endpoint), default actions")
    prompts = read_prompts(HELDOUT / "safety.csv")
    groups = {"harmful requests": [p.text for p in prompts if p.category != "benign"],
              "safe look-alikes": [p.text for p in prompts if p.category == "benign"], **ordinary_questions()}
    print(f"{'':<26}{'flagged: rules':>18}{'rules + head':>18}{'refused: rules':>18}{'rules + head':>18}")
    for label, texts in groups.items():
        counts = [0, 0, 0, 0]
        for text in texts:
            reading = await detector.read(text)
            alone, both = offline_classify(text), offline_classify(text, reading.harm, reading.harmless)
            counts[0] += alone.flagged
            counts[1] += both.flagged
            counts[2] += decide(alone, ACTIONS).action == "refuse"
            counts[3] += decide(both, ACTIONS).action == "refuse"
        print(f"{label:<26}" + "".join(f"{rate(c, len(texts)):>18}" for c in counts))


async def latency_figures(embedder: OnnxMiniLMEmbedder, messages: int) -> None:
    os.environ.update(ADVISOR_LIMITS_USER_PER_MINUTE="100000", ADVISOR_LIMITS_CONVERSATION_PER_MINUTE="100000")
    settings = load_settings(None)
    questions = [  # ordinary questions that both engines answer from the knowledge base
        "How big should my emergency fund be?", "Which debt should I pay off first?", "How do I build a budget?",
        "What is a credit score?", "Should I pay off my credit card or save first?", "How do I start investing?",
        "How much should I save for retirement?", "How do I ask for a raise?",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeStore.open(Path(tmp) / "index", "kb", embedder.dim)
        await Ingestor(store, embedder, Bm25Encoder()).run([ROOT / "retrieval" / "sample_kb"])
        engines = {}
        for label, with_detector in (("without the detector", False), ("with the detector", True)):
            shared = QueryCache(embedder)
            retriever = HybridRetriever(store, shared, Bm25Encoder(), settings.retrieval)
            memory = SqliteMemory(Path(tmp) / f"{with_detector}.sqlite3")
            detector = SemanticDetector(shared) if with_detector else None
            engines[label] = (Engine(settings, retriever, memory, None, detector=detector), shared)
        times: dict[str, list[float]] = {label: [] for label in engines}
        for n in range(messages + 5):  # interleaved, so drift hits both alike; 5 warm-up rounds
            text = f"{questions[n % len(questions)]} ({n})"  # a new text each time: no cached embedding
            order = list(engines.items()) if n % 2 else list(engines.items())[::-1]
            for label, (engine, _) in order:
                message = IncomingMessage("bench", "w", "c", f"{label}-{n}", f"u{n}", text, time.time())
                started = time.perf_counter()
                async for event in engine.answer(message):
                    if isinstance(event, Final):
                        final = event
                if n >= 5:
                    times[label].append(time.perf_counter() - started)
                assert final.mode == "offline", (label, text, final.mode)
        print(f"\n== added latency per message: the engine offline, {messages} ordinary messages each")
        print(f"{'':<26}{'p50 ms':>10}{'p95 ms':>10}{'embeddings/message':>20}")
        for label, (_, shared) in engines.items():
            per = shared.calls / (messages + 5)
            print(f"{label:<26}{percentile(times[label], 50) * 1000:>10.2f}{percentile(times[label], 95) * 1000:>10.2f}{per:>20.2f}")
        added50 = percentile(times["with the detector"], 50) - percentile(times["without the detector"], 50)
        added95 = percentile(times["with the detector"], 95) - percentile(times["without the detector"], 95)
        print(f"{'added by the detector':<26}{added50 * 1000:>10.2f}{added95 * 1000:>10.2f}")
        await head_figures(engines["with the detector"][1], [f"{questions[n % len(questions)]} ({n})" for n in range(messages)])
        for engine, _ in engines.values():
            await engine.memory.close()
        await store.close()


async def head_figures(shared: QueryCache, asked: list[str]) -> None:
    """The detector's own work per message once the embedding is shared: what step sense adds to the
    engine. The engine's p95 above moves by more than this from one run to the next (it is ~200 ms of
    other work), so this is the figure the 5 ms budget is checked against."""
    head = SemanticDetector(shared).head
    groups = {"the questions above": asked,
              **{label: texts for label, texts in ordinary_questions().items() if label.startswith("counsel")}}
    print("\n== the detector's own work per message (embedding shared with retrieval)")
    print(f"{'':<26}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for label, texts in groups.items():
        spent = []
        for text in texts:
            vector = await shared.embed_query(text)
            started = time.perf_counter()
            head.read(vector, text)
            spent.append(time.perf_counter() - started)
        print(f"{label:<26}{percentile(spent, 50) * 1000:>10.3f}{percentile(spent, 95) * 1000:>10.3f}{max(spent) * 1000:>10.3f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-messages", type=int, default=200)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # every refusal and crisis answer logs a warning
    embedder = OnnxMiniLMEmbedder()
    detector = SemanticDetector(QueryCache(embedder))
    await crisis_figures(detector)
    await harm_figures(detector)
    await latency_figures(embedder, args.latency_messages)


if __name__ == "__main__":
    asyncio.run(main())
