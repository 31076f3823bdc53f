"""The Discord adapters against the strict fakes: failed writes still reach the user (or an admin), every
interaction acks before any I/O, "Thinking…" never stays, many answers at once stay inside the limits,
and a zombied gateway is resumed without a lost or doubled answer. Counts, never speeds."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import discord
import pytest
from nacl.signing import SigningKey

from adapters.discord.gateway import SORRY, DiscordAdapter, intents
from adapters.discord.interactions import DiscordInteractions
from adapters.discord.pacing import Pacer
from bot.ops import metrics
from config.settings import load_settings
from tests.harness import discord_payloads as dp
from tests.harness.discord_api import FakeClock, FakeDiscord
from tests.harness.discord_webhooks import FakeWebhooks
from tests.harness.openai_server import FakeOpenAI
from tests.harness.stack import Stack, until

QUESTION = "How big should my emergency fund be?"
SLOW = 4.0  # fake-clock seconds each slow I/O call takes: past Discord's 3-second deadline
KEY = SigningKey.generate()


def write_failures(outcome: str) -> float:
    value = metrics.REGISTRY.get_sample_value("advisor_write_failures_total", {"platform": "discord", "outcome": outcome})
    return value or 0.0


def slow(clock: FakeClock, target: Any, name: str, seconds: float = SLOW) -> None:
    """Make `target.name` slow I/O: each call moves the fake clock `seconds` on, a moment after it starts
    (so an ack sent before the call lands in time, and one sent after it is late)."""
    original = getattr(target, name)

    async def wait() -> None:
        await asyncio.sleep(0.2)
        clock.advance(seconds)

    if inspect.isasyncgenfunction(original):

        async def stream(*args: Any, **kwargs: Any) -> Any:
            await wait()
            async for item in original(*args, **kwargs):
                yield item

        setattr(target, name, stream)
        return

    async def call(*args: Any, **kwargs: Any) -> Any:
        await wait()
        return await original(*args, **kwargs)

    setattr(target, name, call)


@pytest.fixture
def env(setenv: Callable[..., None], kb_dir: Path) -> Callable[..., None]:
    def apply(**values: str) -> None:
        setenv(**{"DISCORD_TOKEN": dp.BOT_TOKEN, "ADVISOR_KNOWLEDGE_PATHS": str(kb_dir), **values})

    apply()
    return apply


# -- the gateway adapter -------------------------------------------------------------------------


class Bot:
    def __init__(self, adapter: DiscordAdapter, fake: FakeDiscord) -> None:
        self.adapter, self.fake = adapter, fake

    def posts(self, channel: str) -> list[dict[str, Any]]:
        return [c["json"] for c in self.fake.calls_to("POST", f"/channels/{channel}/messages") if c["status"] == 200]

    def dm_posts(self) -> list[dict[str, Any]]:
        """Messages the bot posted outside the guild's channels: in DMs."""
        guild = {f"/channels/{c}/messages" for c in (dp.CHANNEL_ID, dp.THREAD_ID)}
        sent = [c for c in self.fake.calls_to("POST", "/channels/") if c["path"].endswith("/messages")]
        return [c["json"] for c in sent if c["status"] == 200 and c["path"] not in guild]

    async def say(self, content: str, **kw: Any) -> dict[str, Any]:
        payload = dp.message_create(content, **kw)
        await self.fake.dispatch("MESSAGE_CREATE", payload)
        return payload


@pytest.fixture
def start(stack: Stack, discord_fake: FakeDiscord, openai_fake: FakeOpenAI, env: Any) -> Callable[..., Any]:
    async def launch(model: bool = False, edit_interval: float = 0.05, **kwargs: Any) -> Bot:
        settings = load_settings(None)
        chat_model = stack.chat_model(openai_fake) if model else None
        engine = stack.engine(settings, chat_model, memory=stack.memory("memory.sqlite3"))
        adapter = await stack.discord_gateway(engine, settings, discord_fake, edit_interval=edit_interval, **kwargs)
        return Bot(adapter, discord_fake)

    return launch


def finished(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [b for b in bodies if b.get("components")]


async def test_a_403_on_the_channel_sends_the_answer_as_a_dm(start: Any) -> None:
    bot = await start()
    before = write_failures("dm")
    bot.fake.fail_next("POST", f"/channels/{dp.CHANNEL_ID}/", "forbidden", times=10)  # typing and messages
    await bot.say(f"<@{dp.BOT_ID}> {QUESTION}")
    (answer,) = await until(lambda: finished(bot.dm_posts()))
    assert "three to six months" in answer["content"] and f"<#{dp.CHANNEL_ID}>" in answer["content"]
    assert answer["allowed_mentions"]["parse"] == []
    assert await until(lambda: write_failures("dm") == before + 1)
    assert bot.posts(dp.CHANNEL_ID) == []


async def test_a_failed_edit_mid_answer_reposts_the_whole_answer(start: Any, openai_fake: FakeOpenAI) -> None:
    openai_fake.default_answer = "Save three to six months of expenses, step by step. " * 8
    openai_fake.chunk_chars = 40
    openai_fake.chunk_delay = 0.02
    bot = await start(model=True)
    before = write_failures("new_message")
    bot.fake.fail_next("PATCH", f"/channels/{dp.CHANNEL_ID}/messages/", "forbidden", times=50, code=50001)
    await bot.say(f"<@{dp.BOT_ID}> {QUESTION}")
    (answer,) = await until(lambda: finished(bot.posts(dp.CHANNEL_ID)))
    assert answer["content"].startswith(openai_fake.default_answer.strip()[:200])
    half = bot.posts(dp.CHANNEL_ID)[0]
    assert half is not answer and len(half["content"]) < len(answer["content"])
    assert await until(lambda: bot.fake.calls_to("DELETE", f"/channels/{dp.CHANNEL_ID}/messages/"))  # the half one
    assert await until(lambda: write_failures("new_message") == before + 1)


async def test_when_no_route_reaches_the_user_a_log_line_a_metric_and_an_admin_alert(
    start: Any, env: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    env(ADVISOR_SAFETY_ALERT_CHANNEL=f"discord:{dp.THREAD_ID}")
    bot = await start()
    before = write_failures("lost")
    bot.fake.fail_next("POST", f"/channels/{dp.CHANNEL_ID}/", "forbidden", times=10)
    bot.fake.fail_next("POST", "/users/@me/channels", "forbidden", code=50007)
    await bot.say(f"<@{dp.BOT_ID}> {QUESTION}")
    (alert,) = await until(lambda: bot.posts(dp.THREAD_ID))
    assert alert["content"].startswith("Delivery alert") and dp.USER_ID in alert["content"]
    assert f"<#{dp.CHANNEL_ID}>" in alert["content"] and "emergency" not in alert["content"]
    assert await until(lambda: write_failures("lost") == before + 1)
    (line,) = [r for r in caplog.records if "could not be delivered by any route" in r.getMessage()]
    assert line.levelno == logging.ERROR and "HTTP 403" in line.getMessage()
    assert "emergency" not in caplog.text.lower() and "three to six" not in caplog.text  # no user or answer text


async def test_a_forbidden_typing_indicator_does_not_stop_the_answer(start: Any) -> None:
    bot = await start()
    bot.fake.fail_next("POST", f"/channels/{dp.CHANNEL_ID}/typing", "forbidden", times=5)
    await bot.say(f"<@{dp.BOT_ID}> {QUESTION}")
    (answer,) = await until(lambda: finished(bot.posts(dp.CHANNEL_ID) + _edits(bot.fake, dp.CHANNEL_ID)))
    assert "three to six months" in answer["content"]
    assert bot.fake.calls_to("POST", f"/channels/{dp.CHANNEL_ID}/typing")[0]["status"] == 403


def callbacks(fake: FakeDiscord, payload: dict[str, Any]) -> list[dict[str, Any]]:
    return fake.calls_to("POST", f"/interactions/{payload['id']}/{payload['token']}/callback")


def original_edits(fake: FakeDiscord, payload: dict[str, Any]) -> list[dict[str, Any]]:
    path = f"/webhooks/{dp.APPLICATION_ID}/{payload['token']}/messages/@original"
    return [c["json"] for c in fake.calls_to("PATCH", path) if c["status"] == 200]


async def test_every_interaction_acks_before_slow_io_and_beats_the_3_second_deadline(start: Any) -> None:
    bot = await start()
    engine, admin, clock = bot.adapter.engine, bot.adapter.admin, bot.fake.clock
    for target, name in ((admin, "status"), (admin, "reindex_running"), (engine.memory, "conversations_of"),
                         (engine, "record_feedback"), (engine, "answer")):  # fmt: skip
        slow(clock, target, name)
    answer = bot.fake.add_message(dp.CHANNEL_ID, dp.message("advice", author=dp.bot_user()))
    payloads = {
        "status": dp.interaction_create(subcommand="status"),
        "forget": dp.interaction_create(subcommand="forget"),
        "reindex": dp.interaction_create(subcommand="reindex", permissions=dp.MODERATOR_PERMISSIONS),
        "ask": dp.interaction_create(options={"question": QUESTION}),
        "click": dp.component_interaction("advisor:feedback:up:1", answer),
    }
    for payload in payloads.values():
        await bot.fake.dispatch("INTERACTION_CREATE", payload)
        await until(lambda p=payload: original_edits(bot.fake, p))  # one at a time: each one's clock is its own
    for name, payload in payloads.items():
        (ack,) = callbacks(bot.fake, payload)
        assert ack["status"] < 300 and ack["json"]["type"] == 5, name
    texts = {name: original_edits(bot.fake, p)[-1]["content"] for name, p in payloads.items()}
    assert "**indexed passages**" in texts["status"] and "Done: I forgot" in texts["forget"]
    assert "three to six months" in texts["ask"]
    assert texts["click"] in ("Thanks for the feedback.", "Sorry, I couldn't find that answer any more.")
    await until(lambda: "Reindex finished" in original_edits(bot.fake, payloads["reindex"])[-1]["content"])


async def test_ask_never_leaves_thinking_when_the_engine_fails(start: Any) -> None:
    bot = await start()
    await bot.adapter.engine.memory.close()  # memory unusable: the engine cannot answer
    payload = dp.interaction_create(options={"question": QUESTION})
    await bot.fake.dispatch("INTERACTION_CREATE", payload)
    (edit,) = await until(lambda: original_edits(bot.fake, payload))
    assert edit["content"] == SORRY
    message = bot.fake.get_message(dp.CHANNEL_ID, bot.fake.interactions[payload["id"]]["original_message_id"])
    assert message is not None and not message["flags"] & (1 << 7)  # no longer "thinking"


@pytest.mark.parametrize("paced", [True, False], ids=["paced", "unpaced"])
async def test_many_answers_at_once_stay_inside_the_limits(
    stack: Stack, openai_fake: FakeOpenAI, env: Any, monkeypatch: pytest.MonkeyPatch, paced: bool
) -> None:
    """40 answers streaming in 40 channels: paced, no 429 at all; without the pacer the same load takes
    global 429s (so this test can fail)."""
    rooms = [dp.text_channel(str(7000 + n), f"room-{n}") for n in range(40)]
    openai_fake.default_answer = "Keep three to six months of expenses aside, then invest the rest. " * 4
    openai_fake.chunk_chars = 16
    openai_fake.chunk_delay = 0.02
    async with FakeDiscord(guilds=[dp.guild(channels=rooms)]) as fake:
        fake.patch(monkeypatch)
        settings = load_settings(None)
        engine = stack.engine(settings, stack.chat_model(openai_fake, timeout=30), memory=stack.memory())
        pacer = Pacer() if paced else Pacer(per_second=1e9, per_channel=10**9, optional_share=1.0)
        adapter = await stack.discord_gateway(engine, settings, fake, edit_interval=0.05, pacer=pacer)
        bot = Bot(adapter, fake)
        await asyncio.gather(  # one asker per room: the engine's own per-user limit stays out of it
            *(bot.say(f"<@{dp.BOT_ID}> {QUESTION}", channel_id=r["id"], author_id=str(8000 + n)) for n, r in enumerate(rooms))
        )
        await until(lambda: all(finished(bot.posts(r["id"]) + _edits(fake, r["id"])) for r in rooms), timeout=90)
        if paced:
            assert fake.rate_limited == [] and pacer.skipped > 0  # edits were left out, none refused
        else:
            assert any(r["scope"] == "global" for r in fake.rate_limited)
        assert all(len(finished(bot.posts(r["id"]) + _edits(fake, r["id"]))) == 1 for r in rooms)


def _edits(fake: FakeDiscord, channel: str) -> list[dict[str, Any]]:
    return [c["json"] for c in fake.calls_to("PATCH", f"/channels/{channel}/messages/") if c["status"] == 200]


async def test_a_zombied_gateway_is_resumed_and_each_message_is_answered_once(
    stack: Stack, env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeDiscord(heartbeat_interval_ms=200) as fake:
        fake.patch(monkeypatch)
        settings = load_settings(None)
        engine = stack.engine(settings, memory=stack.memory())
        client = discord.Client(intents=intents(), guild_ready_timeout=0.05, heartbeat_timeout=1.0)
        adapter = DiscordAdapter(engine, stack.admin(engine, settings), settings, client=client, edit_interval=0.05)
        task = asyncio.create_task(client.start(dp.BOT_TOKEN))
        try:
            await asyncio.wait_for(client.wait_until_ready(), 10)
            bot = Bot(adapter, fake)
            first = await bot.say(f"<@{dp.BOT_ID}> {QUESTION}")
            await until(lambda: len(finished(bot.posts(dp.CHANNEL_ID) + _edits(fake, dp.CHANNEL_ID))) == 1)
            fake.zombie()
            missed = await bot.say(f"<@{dp.BOT_ID}> Which debt should I pay first?")  # into the dead line
            await until(lambda: fake.resumes == 1)
            await until(lambda: len(finished(bot.posts(dp.CHANNEL_ID) + _edits(fake, dp.CHANNEL_ID))) == 2)
            await fake.dispatch("MESSAGE_CREATE", first)  # replays of both
            await fake.dispatch("MESSAGE_CREATE", missed)
            await asyncio.sleep(0.5)
        finally:
            await client.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
    replies = [str(p["message_reference"]["message_id"]) for p in bot.posts(dp.CHANNEL_ID) if p.get("message_reference")]
    assert sorted(replies) == sorted([first["id"], missed["id"]])  # each answered, once
    assert fake.identifies == 1 and fake.acks_withheld >= 1


# -- the HTTP interactions adapter ------------------------------------------------------------------

APP_ID = "123456789012345678"


class Endpoint:
    def __init__(self, adapter: DiscordInteractions, hooks: FakeWebhooks, url: str) -> None:
        self.adapter, self.hooks, self.url = adapter, hooks, url

    async def interact(self, payload: dict[str, Any]) -> tuple[int, Any]:
        return await self.hooks.interact(self.url, payload, KEY)

    def edits(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        path = f"/webhooks/{APP_ID}/{payload['token']}/messages/@original"
        return [c["json"] for c in self.hooks.calls_to("PATCH", path, ok=True)]

    def bot_posts(self, channel: str | None = None) -> list[dict[str, Any]]:
        calls = [c for c in self.hooks.calls_to("POST", "/channels/", ok=True)]
        return [c["json"] for c in calls if channel is None or c["path"] == f"/channels/{channel}/messages"]


@pytest.fixture
async def hooks() -> AsyncIterator[FakeWebhooks]:
    async with FakeWebhooks() as server:
        yield server


@pytest.fixture
def endpoint(stack: Stack, hooks: FakeWebhooks, env: Any) -> Callable[..., Any]:
    async def launch(**values: str) -> Endpoint:
        env(DISCORD_PUBLIC_KEY=KEY.verify_key.encode().hex(), DISCORD_APPLICATION_ID=APP_ID, **values)
        settings = load_settings(None)
        engine = stack.engine(settings, memory=stack.memory("memory.sqlite3"))
        adapter = DiscordInteractions(engine, stack.admin(engine, settings), settings, api_base=hooks.api_base, edit_interval=None)
        base = await stack.serve(adapter.web_app(), access_log=None, shutdown_timeout=1.0)
        return Endpoint(adapter, hooks, f"{base}/discord/interactions")

    return launch


def command(subcommand: str, options: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return dp.interaction_create(subcommand=subcommand, options=options, application_id=APP_ID, **kw)


async def test_http_interactions_ack_before_slow_io(endpoint: Any) -> None:
    point = await endpoint()
    adapter, clock = point.adapter, point.hooks.clock
    for target, name in ((adapter.admin, "status"), (adapter.admin, "reindex"), (adapter.engine.memory, "conversations_of"),
                         (adapter.engine, "record_feedback"), (adapter.engine, "answer")):  # fmt: skip
        slow(clock, target, name)
    payloads = {
        "status": command("status"),
        "forget": command("forget"),
        "reindex": command("reindex", permissions=dp.MODERATOR_PERMISSIONS),
        "ask": command("ask", {"question": QUESTION}),
        "click": dp.component_interaction("advisor:feedback:up:1", {"id": "1", "channel_id": dp.CHANNEL_ID}, application_id=APP_ID),
    }
    for name, payload in payloads.items():
        status, body = await point.interact(payload)
        assert status == 200 and body["type"] == 5, name
        assert await adapter.drain(30)
        assert point.hooks.interactions[payload["token"]]["late"] is False, name
        assert point.edits(payload), name  # the token still worked for the answer
    assert "**indexed passages**" in point.edits(payloads["status"])[-1]["content"]
    assert "three to six months" in point.edits(payloads["ask"])[-1]["content"]
    assert "Reindex finished" in point.edits(payloads["reindex"])[-1]["content"]


async def test_http_a_deleted_response_gets_the_answer_as_a_follow_up(endpoint: Any) -> None:
    point = await endpoint()
    before = write_failures("follow_up")
    payload = command("ask", {"question": QUESTION})
    point.hooks.fail_next("PATCH", f"/webhooks/{APP_ID}/{payload['token']}", status=404, code=10008)
    await point.interact(payload)
    assert await point.adapter.drain(30)
    (follow,) = [c["json"] for c in point.hooks.calls_to("POST", f"/webhooks/{APP_ID}/{payload['token']}", ok=True)]
    assert "three to six months" in follow["content"] and follow["flags"] == 64
    assert write_failures("follow_up") == before + 1


async def test_http_an_expired_token_sends_the_answer_as_a_dm(endpoint: Any) -> None:
    point = await endpoint()
    before = write_failures("dm")
    slow(point.hooks.clock, point.adapter.engine, "answer", seconds=15 * 60 + 1)
    payload = command("ask", {"question": QUESTION})
    await point.interact(payload)
    assert await point.adapter.drain(30)
    refused = point.hooks.calls_to("PATCH", f"/webhooks/{APP_ID}/{payload['token']}")
    assert [c["status"] for c in refused] == [401]
    (dm,) = point.bot_posts()
    assert "three to six months" in dm["content"] and f"<#{dp.CHANNEL_ID}>" in dm["content"]
    assert point.hooks.calls_to("POST", "/users/@me/channels", ok=True)[0]["json"] == {"recipient_id": dp.USER_ID}
    assert write_failures("dm") == before + 1


async def test_http_when_nothing_reaches_the_user_admins_are_alerted(
    endpoint: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    point = await endpoint(ADVISOR_SAFETY_ALERT_CHANNEL="discord:8888")
    before = write_failures("lost")
    payload = command("ask", {"question": QUESTION})
    point.hooks.fail_next("PATCH", "/webhooks/", status=404, code=10015)
    point.hooks.fail_next("POST", "/webhooks/", status=404, code=10015)
    point.hooks.fail_next("POST", "/users/@me/channels", status=403, code=50007)
    await point.interact(payload)
    assert await point.adapter.drain(30)
    (alert,) = point.bot_posts("8888")
    assert alert["content"].startswith("Delivery alert") and dp.USER_ID in alert["content"]
    assert write_failures("lost") == before + 1
    assert any("could not be delivered by any route" in r.getMessage() for r in caplog.records)
    assert "emergency" not in caplog.text.lower() and payload["token"] not in caplog.text
    assert json.dumps(alert).count(QUESTION) == 0
