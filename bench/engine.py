"""Engine benchmark: overhead over the model's own streaming time, and 500 concurrent conversations.

    python bench/engine.py [--answers 40] [--concurrent 500] [--local-answers 20]

The fake OpenAI server (tests/harness) streams a fixed answer at a fixed rate. The
baseline is the same stream read straight with the openai client, in the same run;
the engine's overhead is its message-in to final-event time minus that baseline. The last
section runs the real local model instead (bench/local_model.py), when the `local` extra is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openai

from bot.engine.pipeline import Engine
from bot.state.memory_sqlite import SqliteMemory
from bot.models import Final, IncomingMessage
from bot.llm.openai_model import OpenAIChatModel
from config.settings import load_settings
from retrieval.embedders import OnnxMiniLMEmbedder
from retrieval.evaluate import percentile
from retrieval.ingest import Ingestor
from retrieval.retriever import HybridRetriever
from retrieval.sparse import Bm25Encoder
from retrieval.store_edge import EdgeStore
from tests.harness.openai_server import FakeOpenAI

ANSWER = "Keep three to six months of essential expenses in an easy-access account [1]. " * 4
QUESTIONS = ["How big should my emergency fund be?", "Which debt should I pay first?", "How do I ask for a raise?"]


async def raw_stream(client: openai.AsyncOpenAI) -> float:
    started = time.perf_counter()
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
    )
    async for _ in stream:
        pass
    return time.perf_counter() - started


async def through_engine(engine: Engine, n: int) -> float:
    message = IncomingMessage("bench", "w", "c", f"overhead-{n}", f"u{n}", QUESTIONS[n % 3], time.time())
    started = time.perf_counter()
    async for event in engine.answer(message):
        if isinstance(event, Final) and event.mode != "model":
            raise RuntimeError(f"unexpected {event.mode}: {event.text[:80]}")
    return time.perf_counter() - started


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--answers", type=int, default=40)
    parser.add_argument("--chunk-delay", type=float, default=0.02)
    parser.add_argument("--concurrent", type=int, default=500)
    parser.add_argument("--local-answers", type=int, default=20, help="the local model's section (0: skip it)")
    args = parser.parse_args()
    os.environ.update(ADVISOR_LIMITS_USER_PER_MINUTE="100000", ADVISOR_LIMITS_CONVERSATION_PER_MINUTE="100000")
    settings = load_settings(None)
    embedder = OnnxMiniLMEmbedder()
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeStore.open(Path(tmp) / "index", "kb", embedder.dim)
        await Ingestor(store, embedder, Bm25Encoder()).run([ROOT / "retrieval" / "sample_kb"])
        retriever = HybridRetriever(store, embedder, Bm25Encoder(), settings.retrieval)
        async with FakeOpenAI() as fake:
            fake.default_answer = ANSWER
            fake.chunk_delay = args.chunk_delay
            client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="bench", max_retries=0)
            model = OpenAIChatModel(client, "gpt-4o-mini")
            engine = Engine(settings, retriever, SqliteMemory(Path(tmp) / "memory.sqlite3"), model)
            await through_engine(engine, -1)  # warm up
            baseline, total = [], []
            for n in range(args.answers):  # interleaved, so drift hits both alike
                baseline.append(await raw_stream(client))
                total.append(await through_engine(engine, n))
            b50, b95 = percentile(baseline, 50), percentile(baseline, 95)
            t50, t95 = percentile(total, 50), percentile(total, 95)
            print(f"== engine overhead: {args.answers} first-turn answers, {len(ANSWER)} chars streamed "
                  f"in {fake.chunk_chars}-char chunks every {args.chunk_delay * 1000:.0f} ms")
            print(f"{'':<28}{'p50 ms':>10}{'p95 ms':>10}")
            print(f"{'model stream alone':<28}{b50 * 1000:>10.1f}{b95 * 1000:>10.1f}")
            print(f"{'through the engine':<28}{t50 * 1000:>10.1f}{t95 * 1000:>10.1f}")
            print(f"{'overhead share of total':<28}{(t50 - b50) / t50:>10.1%}{(t95 - b95) / t95:>10.1%}")
            print(f"(mean overhead {(statistics.fmean(total) - statistics.fmean(baseline)) * 1000:.1f} ms per answer: memory, query embedding, "
                  "hybrid search, prompt, citations, SQLite writes)")

            # The tone pass: time to first token and to the final event, with and without it.
            tone = Engine(load_settings(None).model_copy(
                update={"core": settings.core.model_copy(update={"tone_pass": True})}
            ), retriever, engine.memory, model)
            rows = {}
            generation = b50  # a non-streamed draft takes as long to generate as the streamed answer
            for label, subject in (("one call", engine), ("tone pass (two calls)", tone)):
                first, whole = [], []
                for n in range(10):
                    if subject is tone:  # the fake answers non-streamed calls at once: give the draft its time
                        fake.fail_next("/chat/completions", "slow", seconds=generation)
                    message = IncomingMessage("bench", "w", "c", f"tone-{label}-{n}", f"t{n}", QUESTIONS[n % 3], time.time())
                    started = time.perf_counter()
                    seen_first = None
                    async for event in subject.answer(message):
                        if seen_first is None and type(event).__name__ == "TextDelta":
                            seen_first = time.perf_counter() - started
                    whole.append(time.perf_counter() - started)
                    first.append(seen_first or 0.0)
                rows[label] = (percentile(first, 50), percentile(whole, 50))
            print(f"\n== tone pass (the draft call, not streamed, takes {generation * 1000:.0f} ms like the streamed answer)")
            print(f"{'':<26}{'first token p50 ms':>20}{'final p50 ms':>15}")
            for label, (f50, w50) in rows.items():
                print(f"{label:<26}{f50 * 1000:>20.1f}{w50 * 1000:>15.1f}")
            added = rows["tone pass (two calls)"][0] - rows["one call"][0]
            print(f"added latency before the first token: {added * 1000:.0f} ms (one full non-streamed model call)")

            fake.chunk_delay = 0.0
            gc.collect()
            rss_before = rss_mb()
            tracemalloc.start()
            started = time.perf_counter()
            messages = [
                IncomingMessage("bench", "w", "c", f"conv-{n}", f"user-{n}", f"{QUESTIONS[n % 3]} (ref {n})", time.time())
                for n in range(args.concurrent)
            ]

            async def one(msg: IncomingMessage) -> Final:
                finals = [e async for e in engine.answer(msg) if isinstance(e, Final)]
                return finals[0]

            finals = await asyncio.gather(*(one(m) for m in messages), return_exceptions=True)
            elapsed = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss_after = rss_mb()
            errors = [f for f in finals if isinstance(f, BaseException) or f.mode != "model"]
            mixed = 0
            for msg in messages:
                turns = await engine.memory.history(str(msg.conversation))
                if [t.content for t in turns if t.role == "user"] != [msg.text]:
                    mixed += 1
            print(f"\n== {args.concurrent} concurrent conversations in one process")
            print(f"errors {len(errors)}, conversations with foreign or missing turns {mixed}, "
                  f"wall time {elapsed:.1f} s ({args.concurrent / elapsed:.0f} answers/s)")
            print(f"memory: Python heap peak {peak / 1e6:.1f} MB = {peak / args.concurrent / 1024:.1f} KiB per conversation "
                  f"in flight; RSS {rss_before:.0f} -> {rss_after:.0f} MB")
            await engine.memory.close()
        await store.close()
    if args.local_answers:
        from local_model import run as local_model_section  # bench/local_model.py, beside this file

        await local_model_section(args.local_answers)


if __name__ == "__main__":
    asyncio.run(main())
