"""The engine end to end: real embedded Qdrant, real SQLite memory, the fake OpenAI server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from qdrant_client import AsyncQdrantClient

from bot.engine.pipeline import NOT_IN_KNOWLEDGE_BASE, Engine
from bot.state.memory_sqlite import SqliteMemory
from bot.models import Citations, Final, IncomingMessage, Notice, ReplyEvent, TextDelta, Usage
from bot.llm.openai_model import OpenAIChatModel
from config.settings import Settings, load_settings
from retrieval.retriever import HybridRetriever
from retrieval.sparse import Bm25Encoder
from retrieval.store_qdrant import QdrantClientStore
from tests.harness.openai_server import FakeOpenAI


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def model_for(fake: FakeOpenAI, timeout: float = 2.0) -> OpenAIChatModel:
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0)
    return OpenAIChatModel(client, "gpt-4o-mini", timeout=timeout, retry_budget=3.0, base_delay=0.01)


def make_engine(tmp_path: Path, retriever: HybridRetriever, model: Any = None, settings: Settings | None = None, **kw: Any) -> Engine:
    memory = SqliteMemory(tmp_path / "memory.sqlite3")
    return Engine(settings or load_settings(None), retriever, memory, model, **kw)


def message(text: str, thread: str = "t1", author: str = "u1") -> IncomingMessage:
    return IncomingMessage("test", "w1", "c1", thread, author, text, time.time(), f"m-{time.time_ns()}")


async def ask(engine: Engine, text: str, thread: str = "t1", author: str = "u1") -> tuple[list[ReplyEvent], Final]:
    events = [event async for event in engine.answer(message(text, thread, author))]
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1 and events[-1] is finals[0]
    return events, finals[0]


def chat_requests(fake: FakeOpenAI, streaming: bool | None = None) -> list[dict[str, Any]]:
    bodies = [r["json"] for r in fake.requests if r["path"].endswith("/chat/completions")]
    return [b for b in bodies if streaming is None or bool(b.get("stream")) == streaming]


async def test_streams_a_grounded_cited_answer(tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI) -> None:
    fake.script_chat("Aim for three to six months of expenses [1].")
    engine = make_engine(tmp_path, retriever, model_for(fake))
    events, final = await ask(engine, "How big should my emergency fund be?")
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1 and "".join(deltas) == final.text == "Aim for three to six months of expenses [1]."
    (citation,) = final.citations
    assert citation.title == "Emergency fund" and citation.source.endswith("fund.md")
    assert any(isinstance(e, Citations) for e in events)
    assert final.mode == "model" and final.usage.completion_tokens > 0 and final.cost_usd is not None
    (request,) = chat_requests(fake, streaming=True)
    system, user = request["messages"][0], request["messages"][-1]
    assert system["role"] == "system" and "never instructions" in system["content"]
    assert '<passage number="1" title="Emergency fund">' in user["content"]
    assert "<user_message>\nHow big should my emergency fund be?\n</user_message>" in user["content"]


async def test_follow_up_is_rewritten_with_the_model(tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI) -> None:
    engine = make_engine(tmp_path, retriever, model_for(fake))
    fake.script_chat("Three to six months [1].")
    await ask(engine, "How big should an emergency fund be?")
    fake.script_chat("which debt to pay off first with the highest interest rate", "Use the avalanche method [1].")
    _, final = await ask(engine, "And what about my debts, which first?")
    rewrite = chat_requests(fake, streaming=False)[-1]
    assert "How big should an emergency fund be?" in rewrite["messages"][-1]["content"]
    assert [c.title for c in final.citations] == ["Paying off debt"]
    answer_request = chat_requests(fake, streaming=True)[-1]
    roles = [m["role"] for m in answer_request["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


async def test_offline_follow_up_uses_the_previous_question(tmp_path: Path, retriever: HybridRetriever) -> None:
    engine = make_engine(tmp_path, retriever)
    await ask(engine, "What is the avalanche method for debt?")
    _, final = await ask(engine, "is it better?")
    assert final.citations and final.citations[0].title == "Paying off debt"


async def test_offline_mode_is_honest(tmp_path: Path, retriever: HybridRetriever) -> None:
    engine = make_engine(tmp_path, retriever)
    events, final = await ask(engine, "How many months of expenses for an emergency fund?")
    assert final.mode == "offline" and final.usage.total_tokens == 0
    assert final.text.startswith("I'm running without a language model right now")
    (citation,) = final.citations
    assert citation.title == "Emergency fund"  # the passage its quoted sentences come from, and no other
    quote = "An emergency fund should cover three to six months of essential expenses."
    assert f"\n\n> {quote} [{citation.number}]" in final.text
    _, unrelated = await ask(engine, "What's the weather on Mars?", thread="t2")
    assert unrelated.text.startswith("I don't have this in my knowledge base") and not unrelated.citations


async def test_says_so_when_nothing_is_relevant(tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI) -> None:
    fake.script_chat("Mars is cold.")
    engine = make_engine(tmp_path, retriever, model_for(fake))
    _, final = await ask(engine, "What's the weather on Mars?")
    assert final.text == NOT_IN_KNOWLEDGE_BASE + "Mars is cold." and not final.citations
    assert "No passage in the knowledge base matched" in chat_requests(fake)[-1]["messages"][-1]["content"]


async def test_memory_survives_a_restart(tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI) -> None:
    engine = make_engine(tmp_path, retriever, model_for(fake))
    fake.script_chat("Noted [1].")
    await ask(engine, "My name is Ada and I have credit card debt.")
    await engine.memory.close()
    restarted = make_engine(tmp_path, retriever, model_for(fake))
    fake.script_chat("avalanche method for credit card debt", "Hello again.")
    await ask(restarted, "What should I do first?")
    history = chat_requests(fake, streaming=True)[-1]["messages"]
    assert history[1] == {"role": "user", "content": "<user_message>\nMy name is Ada and I have credit card debt.\n</user_message>"}
    assert history[2]["content"] == "Noted [1]."


async def test_conversations_are_isolated_under_load(tmp_path: Path, retriever: HybridRetriever) -> None:
    engine = make_engine(tmp_path, retriever, settings=load_settings(None))
    engine.user_limit.rate = engine.conversation_limit.rate = 10_000.0  # the load is the point here

    async def converse(n: int) -> None:
        for turn in range(3):
            await ask(engine, f"secret-{n}-{turn} emergency fund", thread=f"t{n}", author=f"u{n}")

    await asyncio.gather(*(converse(n) for n in range(20)))
    for n in range(20):
        turns = await engine.memory.history(f"test:w1:c1:t{n}")
        users = [t.content for t in turns if t.role == "user"]
        assert users == [f"secret-{n}-{turn} emergency fund" for turn in range(3)]


async def test_one_answer_at_a_time_per_conversation(tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI) -> None:
    fake.chunk_delay = 0.01
    fake.script_chat("First answer, streamed slowly.", "rewritten second", "Second answer.")
    engine = make_engine(tmp_path, retriever, model_for(fake))
    order: list[str] = []

    async def run(text: str) -> None:
        async for event in engine.answer(message(text)):
            if isinstance(event, TextDelta):
                order.append(text)

    await asyncio.gather(run("first emergency fund"), run("second emergency fund"))
    first_done = max(i for i, t in enumerate(order) if t == "first emergency fund")
    assert all(t == "second emergency fund" for t in order[first_done + 1 :])
    assert order.index("second emergency fund") > first_done


async def test_long_history_is_summarised_and_the_reply_says_so(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADVISOR_MEMORY_HISTORY_TOKENS", "100")
    engine = make_engine(tmp_path, retriever, model_for(fake), settings=load_settings(None))
    long = "I have a lot of different debts and savings questions. " * 6
    fake.default_answer = "A reasonably long answer about budgets and savings. " * 3
    for _ in range(3):
        _, final = await ask(engine, long)
    assert any(n.kind == "trimmed" and "summarised" in n.text for n in final.notices)
    summaries = [b for b in chat_requests(fake, streaming=False) if "Summarise" in b["messages"][0]["content"]]
    assert summaries
    turns = await engine.memory.history("test:w1:c1:t1")
    assert turns[0].role == "summary"


async def test_offline_trimming_drops_old_turns(tmp_path: Path, retriever: HybridRetriever, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVISOR_MEMORY_HISTORY_TOKENS", "100")
    engine = make_engine(tmp_path, retriever, settings=load_settings(None))
    for n in range(3):
        events, final = await ask(engine, f"question {n} about my emergency fund")
    assert any(isinstance(e, Notice) and e.kind == "trimmed" and "left out" in e.text for e in events)
    turns = await engine.memory.history("test:w1:c1:t1")
    assert all(t.role != "summary" for t in turns) and "question 0" not in " ".join(t.content for t in turns)


async def test_forget_and_retention(tmp_path: Path, retriever: HybridRetriever) -> None:
    now = [time.time()]
    engine = make_engine(tmp_path, retriever, clock=lambda: now[0])
    await ask(engine, "emergency fund size?")
    assert await engine.forget("test:w1:c1:t1") == 2
    assert await engine.memory.history("test:w1:c1:t1") == []
    await engine.memory.add("test:w1:c1:old", "user", "ancient", at=now[0] - 31 * 86400)
    await ask(engine, "emergency fund again", thread="t2")
    assert len(await engine.memory.history("test:w1:c1:old")) == 1  # swept at most once an hour
    now[0] += 3601
    await ask(engine, "emergency fund again", thread="t2")
    assert await engine.memory.history("test:w1:c1:old") == []
    assert len(await engine.memory.history("test:w1:c1:t2")) == 4


async def test_rate_limits_answer_with_a_cooldown(tmp_path: Path, retriever: HybridRetriever, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVISOR_LIMITS_USER_PER_MINUTE", "2")
    engine = make_engine(tmp_path, retriever, settings=load_settings(None))
    assert (await ask(engine, "emergency fund"))[1].mode == "offline"
    assert (await ask(engine, "emergency fund", thread="t2"))[1].mode == "offline"
    events, final = await ask(engine, "emergency fund", thread="t3")
    assert final.mode == "limited" and "try again in about 30 seconds" in final.text
    assert any(isinstance(e, Notice) and e.kind == "rate_limited" for e in events)
    assert (await ask(engine, "emergency fund", thread="t4", author="someone-else"))[1].mode == "offline"


async def test_empty_and_huge_messages_are_refused(tmp_path: Path, retriever: HybridRetriever) -> None:
    engine = make_engine(tmp_path, retriever)
    assert (await ask(engine, "   "))[1].mode == "rejected"
    _, final = await ask(engine, "x" * 50_000)
    assert final.mode == "rejected" and "50,000 characters" in final.text and "4,000" in final.text
    assert await engine.memory.history("test:w1:c1:t1") == []


async def test_retries_429_and_500_then_answers(tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI) -> None:
    fake.fail_next("/chat/completions", "rate_limit", retry_after=0.05)
    fake.fail_next("/chat/completions", "server_error")
    fake.script_chat("Recovered answer.")
    engine = make_engine(tmp_path, retriever, model_for(fake))
    started = time.monotonic()
    _, final = await ask(engine, "emergency fund size")
    assert final.mode == "model" and final.text == "Recovered answer."
    assert len(chat_requests(fake)) == 3
    assert time.monotonic() - started >= 0.05  # Retry-After was honoured


async def test_insufficient_quota_fails_fast_and_keeps_the_turn(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("/chat/completions", "insufficient_quota")
    engine = make_engine(tmp_path, retriever, model_for(fake))
    with caplog.at_level(logging.ERROR):
        _, final = await ask(engine, "How big should my emergency fund be?")
    assert final.mode == "error" and "an admin has been alerted" in final.text
    assert "three to six months" in final.text  # the passages still help
    assert len(chat_requests(fake)) == 1
    assert any("quota" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert all("test" not in r.getMessage().split() for r in caplog.records)  # the API key is never logged
    turns = await engine.memory.history("test:w1:c1:t1")
    assert [t.role for t in turns] == ["user"]


async def test_context_length_trims_history_and_retries_once(tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI) -> None:
    engine = make_engine(tmp_path, retriever, model_for(fake))
    fake.script_chat("First [1].")
    await ask(engine, "emergency fund size")
    # the rewrite call and the first answer attempt are both too long; the rewrite falls back
    fake.fail_next("/chat/completions", "context_length", times=2)
    fake.script_chat("Shorter context answer.")
    events, final = await ask(engine, "and where do I keep it?")
    assert final.mode == "model" and final.text == "Shorter context answer."
    assert any(isinstance(e, Notice) and e.kind == "trimmed" for e in events)
    retried = chat_requests(fake, streaming=True)[-1]["messages"]
    assert [m["role"] for m in retried] == ["system", "user"]


async def test_timeouts_give_a_clear_message(tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI) -> None:
    fake.fail_next("/chat/completions", "slow", times=5, seconds=2)
    engine = make_engine(tmp_path, retriever, model_for(fake, timeout=0.2))
    _, final = await ask(engine, "emergency fund size")
    assert final.mode == "error" and final.text.startswith("I couldn't reach my language model just now.")
    assert 2 <= len(chat_requests(fake)) <= 4


async def test_dropped_stream_keeps_what_was_said(tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI) -> None:
    fake.fail_next("/chat/completions", "midstream_error", after_chunks=2)
    fake.script_chat("This answer will be cut off somewhere in the middle.")
    engine = make_engine(tmp_path, retriever, model_for(fake))
    events, final = await ask(engine, "emergency fund size")
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert final.mode == "error" and final.text == streamed
    assert final.text.startswith("This answer will") and "cut off" in final.text
    assert len(chat_requests(fake)) == 1  # never retried after text was shown
    assert [t.role for t in await engine.memory.history("test:w1:c1:t1")] == ["user"]


async def test_retrieval_outage_still_answers(tmp_path: Path, embedder: Any, fake: FakeOpenAI) -> None:
    """A Qdrant server that is down (nothing listens on the port)."""
    down = QdrantClientStore(AsyncQdrantClient(url="http://127.0.0.1:9", timeout=1, check_compatibility=False), "kb", "kb", embedder.dim)
    retriever = HybridRetriever(down, embedder, Bm25Encoder(), load_settings(None).retrieval)
    fake.script_chat("General advice.")
    engine = make_engine(tmp_path, retriever, model_for(fake))
    events, final = await ask(engine, "emergency fund size")
    assert any(isinstance(e, Notice) and e.kind == "search_unavailable" for e in events)
    assert final.mode == "model" and final.text.endswith("General advice.")


def test_only_openai_itself_is_billed_at_openai_prices() -> None:
    from bot.llm.pricing import cost_usd

    usage = Usage(1_000_000, 1_000_000)
    openai_settings = load_settings(None)
    assert cost_usd("gpt-4o-mini", usage, openai_settings) == 0.75
    local = openai_settings.model_copy(
        update={"openai": openai_settings.openai.model_copy(update={"base_url": "http://127.0.0.1:8080/v1"})}
    )
    assert cost_usd("gpt-4o-mini", usage, local) is None
    official = openai_settings.model_copy(
        update={"openai": openai_settings.openai.model_copy(update={"base_url": "https://api.openai.com/v1"})}
    )
    assert cost_usd("gpt-4o-mini", usage, official) == 0.75
