"""Per-channel settings: the store contract on SQLite and a real redis-server, the merged view the
engine reads, and the engine applying a channel's persona, knowledge scope and rate limits."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from bot.engine.pipeline import Engine
from bot.llm.openai_model import OpenAIChatModel
from bot.models import Final, IncomingMessage, ReplyEvent
from bot.state.channel_settings import NONE, ChannelSettings, ChannelSettingsError, ChannelSettingsStore, ChannelView
from bot.state.channel_settings_redis import RedisChannelSettings
from bot.state.channel_settings_sqlite import SqliteChannelSettings
from bot.state.memory_sqlite import SqliteMemory
from bot.state.redis_client import close, connect
from config.settings import load_settings
from retrieval.ingest import Ingestor
from retrieval.retriever import HybridRetriever
from retrieval.sparse import Bm25Encoder
from retrieval.store_edge import EdgeStore
from retrieval.store_qdrant import QdrantClientStore
from tests.harness.openai_server import FakeOpenAI
from tests.harness.redis_server import RedisServer

pytest_plugins = ["conftest_redis"]  # the redis_server and shared fixtures


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ChannelSettingsStore]:
    if request.param == "sqlite":
        made: Any = SqliteChannelSettings(tmp_path / "channels.sqlite3")
        yield made
        await made.close()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flush()
        client = connect(server.url)
        yield RedisChannelSettings(client)
        await close(client)


# -- the store contract ------------------------------------------------------------------------------


async def test_put_get_all_delete(store: ChannelSettingsStore) -> None:
    assert await store.get("slack:T1") is None and await store.all() == {}
    stored = await store.put("slack:T1:C1", ChannelSettings("  You are terse.  ", ("/kb/tax/", "/kb/tax"), 5, None))
    assert stored == ChannelSettings("You are terse.", ("/kb/tax",), 5, None)
    assert await store.get("slack:T1:C1") == stored
    await store.put("discord:G1", ChannelSettings(conversation_per_minute=30))
    await store.put("slack:T1:C1", ChannelSettings(persona="Replaced."))  # a put replaces the scope's settings
    assert await store.all() == {
        "discord:G1": ChannelSettings(conversation_per_minute=30),
        "slack:T1:C1": ChannelSettings(persona="Replaced."),
    }
    assert await store.delete("discord:G1") is True and await store.delete("discord:G1") is False
    assert list(await store.all()) == ["slack:T1:C1"]


@pytest.mark.parametrize(
    ("scope", "settings", "complaint"),
    [
        ("teams:T1", ChannelSettings(persona="x"), "not a scope"),
        ("slack:T1:C1:extra", ChannelSettings(persona="x"), "not a scope"),
        ("slack:T 1", ChannelSettings(persona="x"), "not a scope"),
        ("slack:T1", ChannelSettings(persona="x" * 2001), "at most 2,000"),
        ("slack:T1", ChannelSettings(persona="   "), "empty"),
        ("slack:T1", ChannelSettings(knowledge_scope=("kb/tax",)), "absolute"),
        ("slack:T1", ChannelSettings(knowledge_scope=("/kb/../etc",)), "absolute"),
        ("slack:T1", ChannelSettings(knowledge_scope=()), "empty"),
        ("slack:T1", ChannelSettings(user_per_minute=0), "between 1 and 600"),
        ("slack:T1", ChannelSettings(conversation_per_minute=601), "between 1 and 600"),
        ("slack:T1", ChannelSettings(user_per_minute=2.5), "whole number"),  # type: ignore[arg-type]
        ("slack:T1", ChannelSettings(user_per_minute=True), "whole number"),  # type: ignore[arg-type]
    ],
)
async def test_bad_values_are_refused_and_nothing_changes(
    store: ChannelSettingsStore, scope: str, settings: ChannelSettings, complaint: str
) -> None:
    await store.put("slack:T1", ChannelSettings(persona="Kept."))
    with pytest.raises(ChannelSettingsError, match=complaint):
        await store.put(scope, settings)
    assert await store.all() == {"slack:T1": ChannelSettings(persona="Kept.")}


# -- the view the engine reads ----------------------------------------------------------------------


async def test_a_channel_overrides_its_workspace_which_overrides_the_defaults(store: ChannelSettingsStore) -> None:
    await store.put("slack:T1", ChannelSettings("Workspace voice.", ("/kb",), 10, 20))
    await store.put("slack:T1:C1", ChannelSettings(persona="Channel voice.", user_per_minute=2))
    view = ChannelView(store)
    assert await view.for_message("slack", "T1", "C1") == ChannelSettings("Channel voice.", ("/kb",), 2, 20)
    assert await view.for_message("slack", "T1", "C2") == ChannelSettings("Workspace voice.", ("/kb",), 10, 20)
    assert await view.for_message("slack", "T2", "C1") == NONE
    assert await view.for_message("console", "local", "terminal") == NONE  # no scope can name it


async def test_edits_are_seen_within_seconds(store: ChannelSettingsStore) -> None:
    now = [100.0]
    view = ChannelView(store, ttl=3.0, clock=lambda: now[0])
    assert await view.for_message("discord", "G1", "C1") == NONE
    await store.put("discord:G1:C1", ChannelSettings(persona="New."))
    now[0] += 3.0
    assert (await view.for_message("discord", "G1", "C1")).persona == "New."


async def test_a_failing_store_means_the_global_configuration(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        async def get(self, scope: str) -> None:
            raise ConnectionError("down")

    assert await ChannelView(Broken()).for_message("slack", "T1", "C1") == NONE  # type: ignore[arg-type]
    assert "channel settings unavailable" in caplog.text


# -- the engine applies them ------------------------------------------------------------------------


def model_for(fake: FakeOpenAI) -> OpenAIChatModel:
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0)
    return OpenAIChatModel(client, "gpt-4o-mini", timeout=2.0, retry_budget=3.0, base_delay=0.01)


def message(text: str, channel: str = "C1", author: str = "U1", thread: str = "t1") -> IncomingMessage:
    return IncomingMessage("slack", "T1", channel, thread, author, text, time.time(), f"m-{time.time_ns()}")


async def ask(engine: Engine, msg: IncomingMessage) -> Final:
    events: list[ReplyEvent] = [event async for event in engine.answer(msg)]
    assert isinstance(events[-1], Final)
    return events[-1]


def system_prompts(fake: FakeOpenAI) -> list[str]:
    return [r["json"]["messages"][0]["content"] for r in fake.requests if r["path"].endswith("/chat/completions")]


async def test_a_channel_persona_replaces_the_configured_one(
    tmp_path: Path, retriever: HybridRetriever, openai_fake: FakeOpenAI
) -> None:
    channels = SqliteChannelSettings(tmp_path / "channels.sqlite3")
    await channels.put("slack:T1:C1", ChannelSettings(persona="You are Penny, the payroll team's helper."))
    settings = load_settings(None)
    engine = Engine(settings, retriever, SqliteMemory(tmp_path / "memory.sqlite3"), model_for(openai_fake), channels=channels)
    openai_fake.script_chat("Three to six months [1].", "Three to six months [1].")
    await ask(engine, message("How big should my emergency fund be?", channel="C1"))
    await ask(engine, message("How big should my emergency fund be?", channel="C2", thread="t2"))
    scoped, default = system_prompts(openai_fake)
    assert scoped.startswith("You are Penny, the payroll team's helper.") and settings.core.persona.strip() not in scoped
    assert default.startswith(settings.core.persona.strip()) and "Penny" not in default
    await channels.close()
    await engine.memory.close()


async def test_a_per_channel_rate_limit(tmp_path: Path, retriever: HybridRetriever) -> None:
    channels = SqliteChannelSettings(tmp_path / "channels.sqlite3")
    await channels.put("slack:T1:C1", ChannelSettings(user_per_minute=1))
    engine = Engine(load_settings(None), retriever, SqliteMemory(tmp_path / "memory.sqlite3"), channels=channels)
    assert (await ask(engine, message("emergency fund?", "C1"))).mode == "offline"
    limited = await ask(engine, message("and credit scores?", "C1"))
    assert limited.mode == "limited" and "seconds" in limited.text
    for n in range(3):  # the default (20 a minute) still holds in the workspace's other channels
        assert (await ask(engine, message(f"question {n} about debt?", "C2", thread=f"t{n}"))).mode == "offline"
    await channels.put("slack:T1:C1", ChannelSettings(user_per_minute=1, conversation_per_minute=600))
    await channels.delete("slack:T1:C1")
    engine.channels.forget()  # type: ignore[union-attr]
    assert (await ask(engine, message("and credit scores?", "C1"))).mode == "offline"  # removed: the default again
    await channels.close()
    await engine.memory.close()


async def test_a_failing_store_never_blocks_an_answer(tmp_path: Path, retriever: HybridRetriever) -> None:
    channels = SqliteChannelSettings(tmp_path / "channels.sqlite3")
    await channels.close()  # every read now fails
    engine = Engine(load_settings(None), retriever, SqliteMemory(tmp_path / "memory.sqlite3"), channels=channels)
    assert (await ask(engine, message("How big should my emergency fund be?"))).mode == "offline"
    await engine.memory.close()


# -- a knowledge scope is a filter in both stores -----------------------------------------------------


@pytest.fixture(params=["edge", "local"])
async def scoped_kb(request: pytest.FixtureRequest, tmp_path: Path, embedder: Any) -> AsyncIterator[tuple[HybridRetriever, Path]]:
    kb = tmp_path / "kb"
    (kb / "savings").mkdir(parents=True)
    (kb / "debt").mkdir()
    (kb / "savings" / "fund.md").write_text("# Emergency fund\n\nAn emergency fund covers three to six months of expenses.\n")
    (kb / "debt" / "avalanche.md").write_text("# Paying off debt\n\nThe avalanche method pays the highest interest rate first.\n")
    (kb / "debt-free.md").write_text("# Debt free\n\nDebt free living means paying off every debt and expenses.\n")
    if request.param == "edge":
        store: Any = EdgeStore.open(tmp_path / "index", "kb", embedder.dim)
    else:
        store = await QdrantClientStore.open("kb", embedder.dim, path=str(tmp_path / "local"))
    await Ingestor(store, embedder, Bm25Encoder()).run([kb])
    yield HybridRetriever(store, embedder, Bm25Encoder(), load_settings(None).retrieval), kb.resolve()
    await store.close()


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
async def test_a_scope_restricts_retrieval_to_its_sources(scoped_kb: tuple[HybridRetriever, Path], mode: str) -> None:
    retriever, kb = scoped_kb
    everything = {hit.chunk.source for hit in await retriever.search("paying off debt and expenses", mode=mode)}  # type: ignore[arg-type]
    assert len(everything) > 1
    scoped = await retriever.search("paying off debt and expenses", mode=mode, sources=[str(kb / "debt")])  # type: ignore[arg-type]
    # a prefix is a folder, not a string prefix: kb/debt-free.md is not under kb/debt
    assert scoped and {hit.chunk.source for hit in scoped} == {str(kb / "debt" / "avalanche.md")}
    one_file = await retriever.search("debt", mode=mode, sources=[str(kb / "savings" / "fund.md")])  # type: ignore[arg-type]
    assert {hit.chunk.source for hit in one_file} <= {str(kb / "savings" / "fund.md")}


async def test_the_engine_searches_only_a_channels_scope(tmp_path: Path, scoped_kb: tuple[HybridRetriever, Path]) -> None:
    retriever, kb = scoped_kb
    channels = SqliteChannelSettings(tmp_path / "channels.sqlite3")
    await channels.put("slack:T1", ChannelSettings(knowledge_scope=(str(kb / "savings"),)))
    engine = Engine(load_settings(None), retriever, SqliteMemory(tmp_path / "memory.sqlite3"), channels=channels)
    final = await ask(engine, message("How does the avalanche method pay off debt?"))
    assert not any("avalanche" in c.source for c in final.citations)
    final = await ask(engine, message("How many months should an emergency fund cover?", thread="t2"))
    assert final.citations and all(c.source.startswith(str(kb / "savings")) for c in final.citations)
    unscoped = Engine(load_settings(None), retriever, SqliteMemory(tmp_path / "other.sqlite3"))
    final = await ask(unscoped, message("How does the avalanche method pay off debt?"))
    assert any("avalanche" in c.source for c in final.citations)  # the same question finds it without the scope
    await unscoped.memory.close()
    await channels.close()
    await engine.memory.close()


async def test_with_redis_every_process_sees_a_channels_settings_and_its_bucket(
    tmp_path: Path, retriever: HybridRetriever, shared: Any
) -> None:
    """Two processes (each its own SharedState and engine, as bot/wiring.py builds them): an edit
    made through one applies in the other, and the channel's own rate is one bucket for both."""
    from bot.wiring import build_channel_settings

    first, second = await shared(), await shared()
    engines = [
        Engine(load_settings(None), retriever, state.memory, shared=state, channels=build_channel_settings(load_settings(None), state))
        for state in (first, second)
    ]
    await engines[0].channels.store.put("slack:T1:C1", ChannelSettings(user_per_minute=1))  # type: ignore[union-attr]
    assert (await ask(engines[0], message("emergency fund?"))).mode == "offline"
    assert (await ask(engines[1], message("and credit scores?"))).mode == "limited"
    assert (await ask(engines[1], message("and credit scores?", "C2"))).mode == "offline"
