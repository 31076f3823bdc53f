"""The Discord adapters' failure branches: a replied-to message that cannot be fetched, the guild
allowlist, admins by role and by id, reindexes that cannot run or fail, and a takeover after the
question was deleted. The real discord.py client against the fake gateway and REST API (and the
HTTP interactions endpoint against the fake webhooks), the real engine and embedded Qdrant, a real
Redis where another process is needed."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import discord.http
import pytest
from nacl.signing import SigningKey

from adapters.discord.gateway import DiscordAdapter
from adapters.discord.interactions import DiscordInteractions
from bot.ops import metrics
from bot.ops.admin import Admin
from bot.wiring import SharedState
from config.settings import Settings, load_settings
from retrieval.embedders import OpenAIEmbedder
from retrieval.ingest import Ingestor
from retrieval.sparse import Bm25Encoder
from tests.harness import discord_payloads as dp
from tests.harness.discord_api import FakeDiscord
from tests.harness.discord_webhooks import FakeWebhooks, sign
from tests.harness.loopback import free_port
from tests.harness.openai_server import FakeOpenAI
from tests.harness.stack import Stack, openai_client, until

pytest_plugins = ["conftest_redis"]

NOT_ADDRESSED = "a guild message that neither mentions nor replies to the bot"
OWN = "the bot's own message"  # the fake echoes what the bot posts, as Discord does
SORRY_START = "Sorry, something went wrong on my side"


@pytest.fixture
def env(setenv: Callable[..., None], kb_dir: Path) -> Callable[..., None]:
    def apply(**values: str) -> None:
        setenv(**{"DISCORD_TOKEN": dp.BOT_TOKEN, "ADVISOR_KNOWLEDGE_PATHS": str(kb_dir), **values})

    apply()
    return apply


@pytest.fixture
def start(stack: Stack, discord_fake: FakeDiscord, env: Any) -> Callable[..., Any]:
    """The gateway adapter logged in to the fake Discord; `admin` builds its Admin from (engine, settings);
    `model`: a chat model on that fake server, else offline."""

    async def launch(
        admin: Callable[[Any, Settings], Admin] | None = None, model: FakeOpenAI | None = None, **adapter_kwargs: Any
    ) -> DiscordAdapter:
        settings = load_settings(None)
        chat_model = stack.chat_model(model) if model is not None else None
        engine = stack.engine(settings, chat_model, memory=stack.memory("memory.sqlite3"))
        chosen = admin(engine, settings) if admin is not None else None
        return await stack.discord_gateway(
            engine, settings, discord_fake, admin=chosen, edit_interval=0.05, **adapter_kwargs
        )

    return launch


def sent(fake: FakeDiscord, channel: str = dp.CHANNEL_ID) -> list[dict[str, Any]]:
    return [c["json"] for c in fake.calls_to("POST", f"/channels/{channel}/messages") if c["status"] < 300]


def answers(fake: FakeDiscord, channel: str = dp.CHANNEL_ID) -> int:
    """Finished answers: messages (as sent or edited) that carry the feedback buttons."""
    edits = [c["json"] for c in fake.calls if c["method"] == "PATCH" and c["path"].startswith(f"/channels/{channel}/")]
    return sum(1 for body in sent(fake, channel) + edits if body.get("components"))


def finished(fake: FakeDiscord, channel: str = dp.CHANNEL_ID) -> bool:
    return answers(fake, channel) > 0


def responses(fake: FakeDiscord, payload: dict[str, Any]) -> list[str]:
    """What a deferred interaction's response was edited to, in order."""
    path = f"/webhooks/{dp.APPLICATION_ID}/{payload['token']}/messages/@original"
    return [c["json"]["content"] for c in fake.calls_to("PATCH", path)]


async def last_response(fake: FakeDiscord, payload: dict[str, Any], *starts: str) -> str:
    """The response's final text: the first edit that starts with one of `starts`."""
    found = await until(lambda: [text for text in responses(fake, payload) if text.startswith(starts)])
    return found[-1]


@pytest.fixture
def quick_discord_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """discord.py retries a 500 five times, 1, 3, 5, 7 and 9 s apart: the same retries, without the wait."""

    class Quick:
        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        @staticmethod
        async def sleep(delay: float, result: Any = None) -> Any:
            return await asyncio.sleep(0, result)

    monkeypatch.setattr(discord.http, "asyncio", Quick())


def unfetchable(fake: FakeDiscord, how: str) -> str:
    """The id of a message the bot wrote earlier that GET /channels/.../messages/{id} now refuses:
    deleted (404), in a channel it lost access to (403), or a server error on every try (5xx)."""
    if how == "404":
        return dp.snowflake()  # deleted since: the fake does not know it
    earlier = fake.add_message(dp.CHANNEL_ID, dp.message("An earlier answer.", author=dp.bot_user()))
    path = f"/channels/{dp.CHANNEL_ID}/messages/{earlier['id']}"
    if how == "403":
        fake.fail_next("GET", path, "forbidden", code=50001)
    else:
        fake.fail_next("GET", path, "server_error", times=5)  # every try discord.py makes
    return earlier["id"]


def reply_to(message_id: str) -> dict[str, Any]:
    """A message_reference to `message_id` whose referenced_message the gateway left out (null)."""
    return {"message_id": message_id, "channel_id": dp.CHANNEL_ID, "guild_id": dp.GUILD_ID}


# -- reply chains ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["404", "403", "5xx"])
async def test_a_reply_to_a_message_that_cannot_be_fetched_is_not_taken_for_a_reply_to_the_bot(
    start: Any, discord_fake: FakeDiscord, how: str, quick_discord_retries: None
) -> None:
    """The replied-to message was the bot's: fetched, the reply would be answered. Unfetchable, it is
    a guild message addressed to no one, and ignored as such (not an error)."""
    adapter = await start()
    earlier = unfetchable(discord_fake, how)
    reply = dp.message_create("and after that?", message_reference=reply_to(earlier))
    await discord_fake.dispatch("MESSAGE_CREATE", reply)
    assert list(await until(lambda: adapter.ignored)) == [NOT_ADDRESSED]
    fetches = discord_fake.calls_to("GET", f"/channels/{dp.CHANNEL_ID}/messages/{earlier}")
    assert fetches and {c["status"] for c in fetches} == {{"404": 404, "403": 403, "5xx": 500}[how]}
    assert sent(discord_fake) == []


@pytest.mark.parametrize("how", ["404", "403", "5xx"])
async def test_a_mention_replying_to_a_message_that_cannot_be_fetched_starts_its_conversation_there(
    start: Any, discord_fake: FakeDiscord, how: str, quick_discord_retries: None
) -> None:
    """The chain cannot be followed past the unfetchable message, so the conversation is rooted at it,
    and a reply to the bot's answer later joins the same conversation."""
    adapter = await start()
    earlier = unfetchable(discord_fake, how)
    question = dp.message_create(f"<@{dp.BOT_ID}> emergency fund size?", message_reference=reply_to(earlier))
    await discord_fake.dispatch("MESSAGE_CREATE", question)
    await until(lambda: finished(discord_fake))
    conversation = f"discord:{dp.GUILD_ID}:{dp.CHANNEL_ID}:{earlier}"
    assert [t.role for t in await adapter.engine.memory.history(conversation)] == ["user", "assistant"]

    ours = [m for m in discord_fake.messages_in(dp.CHANNEL_ID) if m["author"]["id"] == dp.BOT_ID]
    answer = next(m for m in ours if m.get("components"))
    follow_up = dp.message_create("and where do I keep it?", referenced_message=answer)
    await discord_fake.dispatch("MESSAGE_CREATE", follow_up)
    await until(lambda: answers(discord_fake) == 2)
    turns = await adapter.engine.memory.history(conversation)
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"]


# -- who is answered, who is an admin ---------------------------------------------------------------------


async def test_the_guild_allowlist_leaves_other_guilds_unanswered_but_not_dms(
    start: Any, discord_fake: FakeDiscord, env: Any
) -> None:
    env(ADVISOR_DISCORD_ALLOWED_GUILD_IDS="4999")
    adapter = await start()
    await discord_fake.dispatch("MESSAGE_CREATE", dp.message_create(f"<@{dp.BOT_ID}> emergency fund size?"))
    assert list(await until(lambda: adapter.ignored)) == ["a guild that is not allowed"]
    dm = dp.message_create("emergency fund size?", channel_id=dp.DM_CHANNEL_ID, guild_id=None)
    await discord_fake.dispatch("MESSAGE_CREATE", dm)
    await until(lambda: finished(discord_fake, dp.DM_CHANNEL_ID))
    assert sent(discord_fake) == [] and [r for r in adapter.ignored if r != OWN] == ["a guild that is not allowed"]


async def test_a_listed_guild_is_answered(start: Any, discord_fake: FakeDiscord, env: Any) -> None:
    env(ADVISOR_DISCORD_ALLOWED_GUILD_IDS=f"4999,{dp.GUILD_ID}")
    adapter = await start()
    await discord_fake.dispatch("MESSAGE_CREATE", dp.message_create(f"<@{dp.BOT_ID}> emergency fund size?"))
    await until(lambda: finished(discord_fake))
    assert set(adapter.ignored) <= {OWN}


@pytest.mark.parametrize(
    ("settings", "invoker", "admin"),
    [
        ({"ADVISOR_ADMINS_DISCORD_ROLE_IDS": dp.MODERATOR_ROLE_ID}, {"roles": [dp.MODERATOR_ROLE_ID]}, True),
        ({"ADVISOR_ADMINS_DISCORD_ROLE_IDS": "4999"}, {"roles": [dp.MODERATOR_ROLE_ID]}, False),
        ({"ADVISOR_ADMINS_DISCORD_USER_IDS": dp.USER_ID}, {}, True),
        ({"ADVISOR_ADMINS_DISCORD_USER_IDS": dp.USER_ID}, {"guild_id": None}, True),
    ],
    ids=["listed-role", "other-role", "listed-user", "listed-user-in-a-dm"],
)
async def test_reindex_admins_by_role_or_user_id_without_manage_server(
    start: Any, discord_fake: FakeDiscord, env: Any, settings: dict[str, str], invoker: dict[str, Any], admin: bool
) -> None:
    """The member has only @everyone's permissions: a listed role or user id alone makes them an admin."""
    env(**settings)
    await start()
    payload = dp.interaction_create(subcommand="reindex", permissions=dp.EVERYONE_PERMISSIONS, **invoker)
    await discord_fake.dispatch("INTERACTION_CREATE", payload)
    if admin:
        assert "3 files: 3 indexed" in await last_response(discord_fake, payload, "Reindex finished")
    else:
        callback = f"/interactions/{payload['id']}/{payload['token']}/callback"
        (refusal,) = await until(lambda: discord_fake.calls_to("POST", callback))
        assert refusal["json"]["data"]["content"] == "Sorry, only admins can reindex the knowledge base."


# -- /advisor replies that cannot be shown -----------------------------------------------------------------


def write_failures(outcome: str) -> float:
    labels = {"platform": "discord", "outcome": outcome}
    return metrics.REGISTRY.get_sample_value("advisor_write_failures_total", labels) or 0.0


@pytest.mark.parametrize(
    ("broken", "outcome"),
    [
        (["edit"], "follow_up"),
        (["edit", "follow-up"], "dm"),
        (["edit", "follow-up", "dm"], "lost"),
        (["edit", "follow-up", "dm", "alert"], "lost"),
    ],
    ids=["as-a-follow-up", "as-a-dm", "alerted", "alert-refused-too"],
)
async def test_a_command_reply_that_cannot_fill_its_response_takes_the_next_route(
    start: Any, discord_fake: FakeDiscord, env: Any, caplog: pytest.LogCaptureFixture, broken: list[str], outcome: str
) -> None:
    """The deferred response cannot be edited (deleted, say): a follow-up, else a DM, else a log line, a
    metric and an admin alert (whose own failure is logged)."""
    env(ADVISOR_SAFETY_ALERT_CHANNEL=f"discord:{dp.THREAD_ID}")
    await start()
    payload = dp.interaction_create(subcommand="status")
    hook = f"/webhooks/{dp.APPLICATION_ID}/{payload['token']}"
    faults = {
        "edit": ("PATCH", f"{hook}/messages/@original", 10008),
        "follow-up": ("POST", hook, 50001),
        "dm": ("POST", "/users/@me/channels", 50007),
        "alert": ("POST", f"/channels/{dp.THREAD_ID}/messages", 50001),
    }
    for name in broken:
        method, path, code = faults[name]
        discord_fake.fail_next(method, path, "forbidden", code=code)
    before = write_failures(outcome)
    await discord_fake.dispatch("INTERACTION_CREATE", payload)
    assert await until(lambda: write_failures(outcome) == before + 1)
    if outcome == "lost":
        (alert,) = await until(lambda: discord_fake.calls_to("POST", f"/channels/{dp.THREAD_ID}/messages"))
        assert alert["json"]["content"].startswith("Delivery alert") and dp.USER_ID in alert["json"]["content"]
        if "alert" in broken:
            await until(lambda: f"could not post an admin alert to channel {dp.THREAD_ID}" in caplog.text)
        return
    where = hook if outcome == "follow_up" else "/channels/"  # the DM channel's messages
    (shown,) = [c for c in discord_fake.calls_to("POST", where) if c["status"] == 200]
    assert "**indexed passages**: 3" in shown["json"]["content"]


async def test_a_half_shown_answer_that_cannot_be_removed_stays_and_the_answer_still_arrives(
    start: Any, discord_fake: FakeDiscord, openai_fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """Edits are refused (the channel's permissions changed mid-answer): the answer goes out as a new
    message, and the half-shown one, which cannot be deleted either, is left with a log line."""
    caplog.set_level(logging.INFO)
    openai_fake.default_answer = "Streaming advice arrives word by word. " * 12
    openai_fake.chunk_delay = 0.02
    await start(model=openai_fake)
    discord_fake.fail_next("PATCH", f"/channels/{dp.CHANNEL_ID}/messages/", "forbidden", times=100)
    discord_fake.fail_next("DELETE", f"/channels/{dp.CHANNEL_ID}/messages/", "forbidden")
    before = write_failures("new_message")
    await discord_fake.dispatch("MESSAGE_CREATE", dp.message_create(f"<@{dp.BOT_ID}> emergency fund size?"))
    assert await until(lambda: write_failures("new_message") == before + 1, 20)
    await until(lambda: "could not remove a half-shown answer" in caplog.text)
    half, whole = [m for m in discord_fake.messages_in(dp.CHANNEL_ID) if m["author"]["id"] == dp.BOT_ID]
    assert not half["components"] and whole["components"]
    assert whole["content"].startswith(openai_fake.default_answer.strip()[:60])


# -- reindexes that cannot run, or fail -------------------------------------------------------------------


def reindex(path: str | None = None) -> dict[str, Any]:
    return dp.interaction_create(
        subcommand="reindex", options={"path": path} if path is not None else None, permissions=dp.MODERATOR_PERMISSIONS
    )


@pytest.mark.parametrize(
    ("path", "refusal"),
    [
        ("/etc", "'/etc' is not inside the configured knowledge paths."),
        ("fund.md\x00.txt", "That is not a usable path (a NUL byte, or longer than 1024 characters)."),
        ("x" * 6000, "That is not a usable path (a NUL byte, or longer than 1024 characters)."),
        ("missing.md", "'missing.md' is not inside the configured knowledge paths."),
    ],
    ids=["outside", "nul-byte", "overlong", "missing"],
)
async def test_a_refused_reindex_path_is_told_and_nothing_is_indexed(
    start: Any, discord_fake: FakeDiscord, path: str, refusal: str
) -> None:
    adapter = await start()
    payload = reindex(path)
    await discord_fake.dispatch("INTERACTION_CREATE", payload)
    assert await last_response(discord_fake, payload, refusal[:12]) == refusal
    assert await adapter.admin.store.count() == 3 and not adapter._reindex_claimed


def failing_ingestion(openai_fake: FakeOpenAI, stack: Stack) -> Callable[[Any, Settings], Admin]:
    """An Admin whose ingestion embeds through the fake OpenAI server, which fails the next call."""
    openai_fake.fail_next("/embeddings", "server_error")

    def build(engine: Any, settings: Settings) -> Admin:
        client = openai_client(openai_fake)
        stack.later(client.close)
        store = stack.retriever.store
        embedder = OpenAIEmbedder(client, "text-embedding-3-small", dimensions=stack.retriever.embedder.dim)
        return Admin(engine, Ingestor(store, embedder, Bm25Encoder()), store, settings.core.knowledge_paths)

    return build


async def test_an_ingestion_failure_is_told_keeps_the_old_index_and_frees_the_next_reindex(
    start: Any, discord_fake: FakeDiscord, openai_fake: FakeOpenAI, stack: Stack
) -> None:
    adapter = await start(admin=failing_ingestion(openai_fake, stack))
    first = reindex()
    await discord_fake.dispatch("INTERACTION_CREATE", first)
    assert (await last_response(discord_fake, first, SORRY_START, "Reindex finished")).startswith(SORRY_START)
    assert await adapter.admin.store.count() == 3  # the rebuild was abandoned; the old index serves on
    again = reindex()
    await discord_fake.dispatch("INTERACTION_CREATE", again)
    assert "3 files: 3 indexed" in await last_response(discord_fake, again, SORRY_START, "Reindex finished")


async def test_a_reindex_running_in_another_process_is_refused_until_it_ends(
    start: Any, discord_fake: FakeDiscord, shared: Callable[[], Any], stack: Stack
) -> None:
    ours, theirs = await shared(), await shared()

    def admin(engine: Any, settings: Settings) -> Admin:
        built = stack.admin(engine, settings)
        built.shared_lock = ours.reindex_lock
        return built

    adapter = await start(admin=admin)
    assert await theirs.reindex_lock.acquire()  # the other process's reindex
    busy = reindex()
    await discord_fake.dispatch("INTERACTION_CREATE", busy)
    refusal = await last_response(discord_fake, busy, "A reindex")
    assert refusal == "A reindex is already running; try again when it's done."
    await theirs.reindex_lock.release()
    done = reindex()
    await discord_fake.dispatch("INTERACTION_CREATE", done)
    assert "3 files: 3 indexed" in await last_response(discord_fake, done, "Reindex finished")
    assert not await adapter.admin.reindex_running()


# -- a takeover after the question was deleted ------------------------------------------------------------


def answering(adapter: DiscordAdapter) -> list[asyncio.Task[Any]]:
    """The tasks running `adapter`'s answers (DiscordAdapter._work somewhere down their await chain)."""

    def runs_work(coro: Any) -> bool:
        while coro is not None:
            if getattr(coro, "cr_code", None) is DiscordAdapter._work.__code__:
                return True
            coro = getattr(coro, "cr_await", None)
        return False

    return [task for task in asyncio.all_tasks() if runs_work(task.get_coro())]


async def crashed_mid_answer(
    stack: Stack, discord_fake: FakeDiscord, openai_fake: FakeOpenAI, state: SharedState, question: dict[str, Any]
) -> None:
    """A worker takes `question`, posts the first part of its answer, and dies there (its lease lapses)."""
    openai_fake.chunk_delay = 0.05  # seconds of streaming: the crash comes mid-answer
    openai_fake.default_answer = "Keep three to six months of essential expenses in an easy-access account. " * 5
    settings = load_settings(None)
    engine = stack.engine(settings, stack.chat_model(openai_fake), memory=state.memory, shared=state)
    adapter = await stack.discord_gateway(
        engine, settings, discord_fake, edit_interval=0.05, dedupe=state.dedupe, journal=state.journal("discord")
    )
    await discord_fake.dispatch("MESSAGE_CREATE", question)
    await until(lambda: sent(discord_fake, question["channel_id"]))
    await asyncio.sleep(0.2)  # the journal records the posted part
    (task,) = answering(adapter)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await adapter.client.close()


async def test_a_takeover_after_the_question_was_deleted_gives_it_up_and_posts_nothing(
    stack: Stack,
    discord_fake: FakeDiscord,
    openai_fake: FakeOpenAI,
    shared: Callable[[], Any],
    env: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = await shared(), await shared()
    question = dp.message_create("How big should my emergency fund be?", channel_id=dp.DM_CHANNEL_ID, guild_id=None)
    await crashed_mid_answer(stack, discord_fake, openai_fake, first, question)
    journal = second.journal("discord")
    assert await journal.pending() == 1
    await discord_fake.dispatch("MESSAGE_DELETE", {"id": question["id"], "channel_id": dp.DM_CHANNEL_ID})
    writes = len([c for c in discord_fake.calls if c["method"] in ("POST", "PATCH", "DELETE")])

    settings = load_settings(None)
    engine = stack.engine(settings, stack.chat_model(openai_fake), memory=second.memory, shared=second)
    adapter = stack.discord_adapter(engine, settings, dedupe=second.dedupe, journal=journal)
    run = asyncio.create_task(adapter.client.start(dp.BOT_TOKEN))
    recovery = asyncio.create_task(adapter.recover(interval=0.2))
    try:
        await until(lambda: "the message or channel is gone" in caplog.text, timeout=15)
        assert await journal.pending() == 0  # given up for good: no process tries again
    finally:
        recovery.cancel()
        await adapter.client.close()
        await asyncio.gather(run, recovery, return_exceptions=True)
    fetch = discord_fake.calls_to("GET", f"/channels/{dp.DM_CHANNEL_ID}/messages/{question['id']}")
    assert [c["status"] for c in fetch] == [404]
    assert len([c for c in discord_fake.calls if c["method"] in ("POST", "PATCH", "DELETE")]) == writes


async def test_a_takeover_after_the_half_shown_answer_was_deleted_answers_anew(
    stack: Stack,
    discord_fake: FakeDiscord,
    openai_fake: FakeOpenAI,
    shared: Callable[[], Any],
    env: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = await shared(), await shared()
    question = dp.message_create("How big should my emergency fund be?", channel_id=dp.DM_CHANNEL_ID, guild_id=None)
    await crashed_mid_answer(stack, discord_fake, openai_fake, first, question)
    (half,) = [m for m in discord_fake.messages_in(dp.DM_CHANNEL_ID) if m["author"]["id"] == dp.BOT_ID]
    await discord_fake.dispatch("MESSAGE_DELETE", {"id": half["id"], "channel_id": dp.DM_CHANNEL_ID})
    journal = second.journal("discord")

    settings = load_settings(None)
    engine = stack.engine(settings, stack.chat_model(openai_fake), memory=second.memory, shared=second)
    adapter = stack.discord_adapter(engine, settings, dedupe=second.dedupe, journal=journal)
    run = asyncio.create_task(adapter.client.start(dp.BOT_TOKEN))
    recovery = asyncio.create_task(adapter.recover(interval=0.2))
    try:
        await until(lambda: finished(discord_fake, dp.DM_CHANNEL_ID) or "cannot finish answer" in caplog.text, 15)
        assert finished(discord_fake, dp.DM_CHANNEL_ID) and await journal.pending() == 0
    finally:
        recovery.cancel()
        await adapter.client.close()
        await asyncio.gather(run, recovery, return_exceptions=True)
    shown = [m for m in discord_fake.messages_in(dp.DM_CHANNEL_ID) if m["author"]["id"] == dp.BOT_ID]
    assert len(shown) == 1 and shown[0]["components"] and shown[0]["message_reference"]["message_id"] == question["id"]


# -- the HTTP interactions endpoint -------------------------------------------------------------------------

KEY = SigningKey.generate()
APP_ID = "123456789012345678"


class Endpoint:
    """DiscordInteractions served on loopback, the fake webhooks it calls, and signed posts to it."""

    def __init__(
        self, adapter: DiscordInteractions, hooks: FakeWebhooks, url: str, http: aiohttp.ClientSession
    ) -> None:
        self.adapter, self.hooks, self.url, self.http = adapter, hooks, url, http

    async def post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The immediate response (200 expected) to a signed delivery of `payload`."""
        body = json.dumps(payload).encode()
        async with self.http.post(self.url, data=body, headers=sign(body, KEY)) as response:
            assert response.status == 200
            return await response.json()

    async def shown(self, payload: dict[str, Any]) -> str:
        """What the deferred response finally says, once the work in the background is done."""
        assert await self.adapter.drain(10)
        path = f"/webhooks/{APP_ID}/{payload['token']}/messages/@original"
        return self.hooks.calls_to("PATCH", path, ok=True)[-1]["json"]["content"]


@pytest.fixture
async def hooks() -> AsyncIterator[FakeWebhooks]:
    async with FakeWebhooks() as server:
        yield server


@pytest.fixture
def endpoint(stack: Stack, hooks: FakeWebhooks, kb_dir: Path, setenv: Callable[..., None]) -> Callable[..., Any]:
    """The HTTP endpoint (without DISCORD_TOKEN in `env`: no DM or alert route); `admin` builds its Admin
    from (engine, settings); `model`: a chat model on that fake server, else offline."""

    async def launch(
        admin: Callable[[Any, Settings], Admin] | None = None,
        model: FakeOpenAI | None = None,
        api_base: str | None = None,
        edit_interval: float | None = None,
        **env: str,
    ) -> Endpoint:
        setenv(
            DISCORD_PUBLIC_KEY=KEY.verify_key.encode().hex(),
            DISCORD_APPLICATION_ID=APP_ID,
            ADVISOR_KNOWLEDGE_PATHS=str(kb_dir),
            **env,
        )
        settings = load_settings(None)
        chat_model = stack.chat_model(model) if model is not None else None
        engine = stack.engine(settings, chat_model, memory=stack.memory("memory.sqlite3"))
        built = admin(engine, settings) if admin is not None else stack.admin(engine, settings)
        adapter = DiscordInteractions(
            engine, built, settings, api_base=api_base or hooks.api_base, edit_interval=edit_interval
        )
        base = await stack.serve(adapter.web_app(), access_log=None, shutdown_timeout=1.0)
        http = aiohttp.ClientSession()
        stack.later(http.close)
        return Endpoint(adapter, hooks, f"{base}/discord/interactions", http)

    return launch


DEFERRED = {"type": 5, "data": {"flags": 64}}


async def test_http_an_ingestion_failure_is_told_and_frees_the_next_reindex(
    endpoint: Any, openai_fake: FakeOpenAI, stack: Stack
) -> None:
    door = await endpoint(admin=failing_ingestion(openai_fake, stack))
    first = reindex()
    assert await door.post(first) == DEFERRED
    assert (await door.shown(first)).startswith(SORRY_START)
    assert await door.adapter.admin.store.count() == 3
    again = reindex()
    assert await door.post(again) == DEFERRED
    assert "3 files: 3 indexed" in await door.shown(again)


async def test_http_a_reindex_running_in_another_process_is_refused_in_its_words(
    endpoint: Any, shared: Callable[[], Any], stack: Stack
) -> None:
    ours, theirs = await shared(), await shared()

    def admin(engine: Any, settings: Settings) -> Admin:
        built = stack.admin(engine, settings)
        built.shared_lock = ours.reindex_lock
        return built

    door = await endpoint(admin=admin)
    assert await theirs.reindex_lock.acquire()
    busy = reindex()
    assert await door.post(busy) == DEFERRED  # only this process's reindex is known before the ack
    assert await door.shown(busy) == "A reindex is already running in another process; wait for it to finish."
    await theirs.reindex_lock.release()
    done = reindex()
    assert await door.post(done) == DEFERRED
    assert "3 files: 3 indexed" in await door.shown(done)


@pytest.mark.parametrize("path", ["fund.md\x00.txt", "x" * 6000], ids=["nul-byte", "overlong"])
async def test_http_an_unusable_reindex_path_is_refused(endpoint: Any, path: str) -> None:
    door = await endpoint()
    payload = reindex(path)
    assert await door.post(payload) == DEFERRED
    assert await door.shown(payload) == "That is not a usable path (a NUL byte, or longer than 1024 characters)."


async def test_http_commands_without_a_token_get_an_apology_at_once_and_reindex_stays_free(endpoint: Any) -> None:
    """No interaction token, no webhook to answer through later: an immediate apology, nothing deferred."""
    door = await endpoint()
    for payload in (
        dp.interaction_create(options={"question": "emergency fund size?"}),
        dp.interaction_create(subcommand="status"),
        reindex(),
    ):
        answer = await door.post({**payload, "token": ""})
        assert answer["type"] == 4 and answer["data"]["content"].startswith(SORRY_START), payload["data"]
    payload = reindex()
    assert await door.post(payload) == DEFERRED  # the tokenless reindex did not keep the claim
    assert "3 files: 3 indexed" in await door.shown(payload)


@pytest.mark.parametrize(
    ("payload", "reply"),
    [
        (lambda: dp.interaction_create(subcommand="explode"), "Sorry, I don't know that command. Try `/advisor ask`."),
        (lambda: dp.interaction_create(subcommand=None), "Sorry, I don't know that command. Try `/advisor ask`."),
        (lambda: dp.interaction_create(name="other"), "Sorry, I don't know that command. Try `/advisor ask`."),
        (
            lambda: dp.component_interaction("someone-elses:button", {"id": "1", "channel_id": dp.CHANNEL_ID}),
            "Sorry, that button doesn't do anything any more.",
        ),
    ],
    ids=["unknown-subcommand", "no-subcommand", "other-command", "unknown-button"],
)
async def test_http_what_the_endpoint_has_nothing_for_gets_a_polite_answer(
    endpoint: Any, payload: Callable[[], dict[str, Any]], reply: str
) -> None:
    door = await endpoint()
    answer = await door.post(payload())
    assert answer["type"] == 4 and answer["data"]["content"] == reply and answer["data"]["flags"] == 64
    assert door.hooks.calls == []


@pytest.mark.parametrize(
    "faults",
    [[60.0], [0.01] * 4],  # a wait past MAX_RETRY_WAIT is not waited; a 429 on every retry (3)
    ids=["wait-too-long", "retries-used-up"],
)
async def test_http_an_answer_no_route_can_deliver_is_logged_never_silent(
    endpoint: Any, caplog: pytest.LogCaptureFixture, faults: list[float]
) -> None:
    """The response cannot be edited and no follow-up goes out; without DISCORD_TOKEN there is no DM or
    alert route either: the loss is logged, with what failed."""
    caplog.set_level(logging.WARNING)
    door = await endpoint()
    payload = dp.interaction_create(options={"question": "emergency fund size?"})
    for retry_after in faults:
        door.hooks.fail_next("PATCH", f"/webhooks/{APP_ID}/{payload['token']}", retry_after=retry_after)
        door.hooks.fail_next("POST", f"/webhooks/{APP_ID}/{payload['token']}", retry_after=retry_after)
    assert await door.post(payload) == DEFERRED
    assert await door.adapter.drain(10)
    for method in ("PATCH", "POST"):
        assert [c["status"] for c in door.hooks.calls_to(method, "/webhooks/")] == [429] * len(faults)
    assert f"could not be delivered by any route (a follow-up to interaction {payload['id']}: HTTP 429)" in caplog.text
    assert "no admin alert posted (it needs DISCORD_TOKEN and ADVISOR_SAFETY_ALERT_CHANNEL)" in caplog.text
    assert payload["token"] not in caplog.text


async def test_http_the_webhook_server_unreachable_is_logged_by_kind_never_with_the_token(
    endpoint: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The webhook URL carries the token: a connection error is named by its type, not its text."""
    caplog.set_level(logging.DEBUG)
    door = await endpoint(api_base=f"http://127.0.0.1:{free_port()}/api/v10")
    payload = dp.interaction_create(options={"question": "emergency fund size?"})
    assert await door.post(payload) == DEFERRED
    assert await door.adapter.drain(10)
    assert f"any route (a follow-up to interaction {payload['id']}: ClientConnectorError)" in caplog.text  # the kind only
    assert payload["token"] not in caplog.text


async def test_http_an_admin_alert_that_cannot_be_posted_is_logged(
    endpoint: Any, caplog: pytest.LogCaptureFixture
) -> None:
    door = await endpoint(DISCORD_TOKEN=dp.BOT_TOKEN, ADVISOR_SAFETY_ALERT_CHANNEL=f"discord:{dp.THREAD_ID}")
    payload = dp.interaction_create(options={"question": "emergency fund size?"})
    door.hooks.fail_next("PATCH", f"/webhooks/{APP_ID}/{payload['token']}", retry_after=60)
    door.hooks.fail_next("POST", f"/webhooks/{APP_ID}/{payload['token']}", retry_after=60)
    door.hooks.fail_next("POST", "/users/@me/channels", status=403, code=50007)  # DMs closed
    door.hooks.fail_next("POST", f"/channels/{dp.THREAD_ID}/messages", status=403, code=50001)
    assert await door.post(payload) == DEFERRED
    assert await door.adapter.drain(10)
    (alert,) = door.hooks.calls_to("POST", f"/channels/{dp.THREAD_ID}/messages")
    assert alert["status"] == 403 and alert["json"]["content"].startswith("Delivery alert")
    assert "could not post an admin alert: an admin alert: HTTP 403" in caplog.text


async def test_http_a_failed_streaming_edit_stops_the_previews_and_the_final_still_lands(
    endpoint: Any, openai_fake: FakeOpenAI
) -> None:
    openai_fake.default_answer = "Streaming advice arrives word by word. " * 12
    openai_fake.chunk_delay = 0.02
    door = await endpoint(model=openai_fake, edit_interval=0.05)
    payload = dp.interaction_create(options={"question": "emergency fund size?"})
    door.hooks.fail_next("PATCH", f"/webhooks/{APP_ID}/{payload['token']}", status=404, code=10015)
    assert await door.post(payload) == DEFERRED
    assert await door.adapter.drain(10)
    edits = door.hooks.calls_to("PATCH", f"/webhooks/{APP_ID}/{payload['token']}")
    assert [c["status"] for c in edits] == [404, 200]  # no preview after the first failed; then the final
    assert edits[-1]["json"]["content"].startswith(openai_fake.default_answer.strip()[:60])


async def test_http_a_body_that_does_not_arrive_in_time_is_408(endpoint: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Headers, then a body that never comes (a slow-loris client): refused, not waited on forever."""
    monkeypatch.setattr("adapters.discord.interactions.READ_TIMEOUT", 0.2)
    door = await endpoint()
    host, port = door.url.removeprefix("http://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /discord/interactions HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    assert status_line.split()[1] == b"408"


async def test_http_an_interaction_without_an_id_is_400(endpoint: Any) -> None:
    door = await endpoint()
    payload = dp.interaction_create(options={"question": "emergency fund size?"})
    del payload["id"]
    body = json.dumps(payload).encode()
    async with door.http.post(door.url, data=body, headers=sign(body, KEY)) as response:
        assert response.status == 400 and await response.json() == {"error": "missing interaction id"}
    assert door.hooks.calls == []
