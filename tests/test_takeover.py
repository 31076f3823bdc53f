"""A Discord answer cut off by a crashed worker is finished by the next one, in the message already posted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from adapters.discord.gateway import DiscordAdapter
from bot.ops.admin import Admin
from bot.wiring import SharedState, build_shared
from config.settings import load_settings
from tests.harness import discord_payloads as dp
from tests.harness.discord_api import FakeDiscord
from tests.harness.openai_server import FakeOpenAI
from tests.harness.redis_server import RedisServer
from tests.harness.stack import Stack, until

pytest_plugins = ["conftest_redis"]
ANSWER = "Keep three to six months of essential expenses in an easy-access account. " * 5


def awaits(coro: Any, code: Any) -> bool:
    """Whether the suspended coroutine `coro` is (somewhere down its await chain) running `code`."""
    while coro is not None:
        if getattr(coro, "cr_code", None) is code:
            return True
        coro = getattr(coro, "cr_await", None)
    return False


async def worker(settings: Any, stack: Stack, model: FakeOpenAI) -> tuple[DiscordAdapter, SharedState]:
    """One worker process: its own Redis clients, engine and gateway client."""
    shared = await build_shared(settings)
    assert shared is not None
    engine = stack.engine(settings, stack.chat_model(model), memory=shared.memory, shared=shared)
    admin = Admin(engine, None, stack.retriever.store, [])
    adapter = stack.discord_adapter(
        engine, settings, admin, edit_interval=0.05, dedupe=shared.dedupe, journal=shared.journal("discord")
    )
    return adapter, shared


async def test_a_crashed_workers_answer_is_finished_by_the_next_in_the_same_message(
    discord_fake: FakeDiscord, redis_server: RedisServer, stack: Stack, setenv: Callable[..., None]
) -> None:
    redis_server.flush()
    setenv(REDIS_URL=redis_server.url, ADVISOR_MEMORY_WORK_LEASE_SECONDS="1", ADVISOR_SAFETY_MODERATION="false")
    settings = load_settings(None)
    async with FakeOpenAI() as model:
        model.chunk_delay = 0.05  # a few seconds of streaming: the crash comes mid-answer
        model.default_answer = ANSWER
        first, first_shared = await worker(settings, stack, model)
        run = asyncio.create_task(first.client.start(dp.BOT_TOKEN))
        await asyncio.wait_for(first.client.wait_until_ready(), 10)
        question = dp.message_create("How big should my emergency fund be?", channel_id=dp.DM_CHANNEL_ID, guild_id=None)
        await discord_fake.dispatch("MESSAGE_CREATE", question)
        sent = await until(lambda: discord_fake.calls_to("POST", f"/channels/{dp.DM_CHANNEL_ID}/messages"), 15)
        await until(lambda: first._working and (first.journal is not None), 15)
        await asyncio.sleep(0.2)  # the journal records the posted part
        # the crash: the answering task dies where it stands, nothing renews its lease
        crashed = [t for t in asyncio.all_tasks() if awaits(t.get_coro(), DiscordAdapter._work.__code__)]
        assert len(crashed) == 1
        crashed[0].cancel()
        await asyncio.gather(*crashed, return_exceptions=True)
        await first.client.close()
        await asyncio.gather(run, return_exceptions=True)
        assert await first_shared.journal("discord").pending() == 1  # left unfinished

        second, second_shared = await worker(settings, stack, model)
        run = asyncio.create_task(second.client.start(dp.BOT_TOKEN))
        recovery = asyncio.create_task(second.recover(interval=0.2))
        try:
            finals = await until(
                lambda: [c for c in discord_fake.calls if c["method"] == "PATCH" and (c.get("json") or {}).get("components")],
                timeout=20,
            )
        finally:
            recovery.cancel()
            await second.client.close()
            await asyncio.gather(run, recovery, return_exceptions=True)
        posts = discord_fake.calls_to("POST", f"/channels/{dp.DM_CHANNEL_ID}/messages")
        assert len(posts) == len(sent) == 1  # the second worker edited the first one's message, posted nothing new
        assert {c["path"] for c in finals} == {c["path"] for c in discord_fake.calls if c["method"] == "PATCH"}  # one message
        assert ANSWER.strip()[:60] in finals[-1]["json"]["content"]
        history = await second_shared.memory.history(f"discord:dm:{dp.DM_CHANNEL_ID}:{question['id']}")
        assert [turn.role for turn in history] == ["user", "assistant"]  # the cut-off turn replaced, not doubled
        assert await second_shared.journal("discord").pending() == 0
        for shared in (first_shared, second_shared):
            await shared.close()
