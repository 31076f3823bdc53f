"""The Slack adapter's failure branches: reindexes that cannot run or fail, an admin check Slack cannot
answer, replies and alerts that cannot be posted, clicks that cannot be stored, requests refused at the
door, and an answer taken over from a process that died (its placeholder deleted meanwhile, or not).
The real bolt app served over HTTP, signed requests, the real slack_sdk client against the fake Slack,
the real engine and embedded Qdrant, a real Redis where another process is needed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.slack.app import SORRY, SlackAdapter
from bot.ops.admin import Admin
from bot.wiring import SharedState
from config.settings import Settings, load_settings
from retrieval.embedders import OpenAIEmbedder
from retrieval.ingest import Ingestor
from retrieval.sparse import Bm25Encoder
from tests.harness import slack_payloads as sp
from tests.harness.openai_server import FakeOpenAI
from tests.harness.loopback import free_port
from tests.harness.slack_api import FakeSlack
from tests.harness.stack import SlackDoor, Stack, openai_client, until

pytest_plugins = ["conftest_redis"]

SECRET = "branches-signing-secret"
UNUSABLE = "That is not a usable path (a NUL byte, or longer than 1024 characters)."


@pytest.fixture
def slack(slack: FakeSlack) -> FakeSlack:
    slack.admins = {"UADMIN"}
    return slack


@pytest.fixture
def configure(setenv: Callable[..., None], kb_dir: Path) -> Callable[..., None]:
    def apply(**env: str) -> None:
        setenv(
            **{
                "SLACK_BOT_TOKEN": "xoxb-test",
                "SLACK_SIGNING_SECRET": SECRET,
                "ADVISOR_KNOWLEDGE_PATHS": str(kb_dir),
                "ADVISOR_ADMINS_SLACK_USER_IDS": "UCONFIGADMIN",
                **env,
            }
        )

    apply()
    return apply


@pytest.fixture
def make(stack: Stack, slack: FakeSlack, configure: Any) -> Callable[..., Any]:
    """A door over a new engine; `admin` builds its Admin from (engine, settings)."""

    async def build(admin: Callable[[Any, Settings], Admin] | None = None, **kwargs: Any) -> SlackDoor:
        settings = load_settings(None)
        engine = stack.engine(settings)
        door = await stack.slack_door(engine, settings, slack, SECRET, update_interval=0.05, **kwargs)
        if admin is not None:
            door.adapter.admin = admin(engine, settings)
        return door

    return build


def shown(door: SlackDoor, url: str) -> list[str]:
    """The texts posted to one response_url."""
    return [call["args"]["text"] for call in door.slack.calls_to("response_url") if call["url"] == url]


async def command(
    door: SlackDoor, text: str, user: str = "UCONFIGADMIN", until_starts: tuple[str, ...] = ()
) -> list[str]:
    """Run `/advisor <text>`; the replies on its response_url, up to one starting with `until_starts`
    (or the first reply)."""
    url = door.slack.response_url()
    status, _ = await door.post(sp.slash_command(text, user=user, response_url=url))
    assert status == 200
    if until_starts:
        await until(lambda: any(reply.startswith(until_starts) for reply in shown(door, url)))
    else:
        await until(lambda: shown(door, url))
    return shown(door, url)


# -- reindexes that cannot run, or fail -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["fund.md\x00.txt", "x" * 6000], ids=["nul-byte", "overlong"])
async def test_an_unusable_reindex_path_is_refused(make: Any, path: str) -> None:
    door = await make()
    assert await command(door, f"reindex {path}") == [UNUSABLE]
    assert await door.adapter.admin.store.count() == 3


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
    make: Any, openai_fake: FakeOpenAI, stack: Stack
) -> None:
    door = await make(admin=failing_ingestion(openai_fake, stack))
    replies = await command(door, "reindex", until_starts=(SORRY, "Reindex finished"))
    assert replies[0].startswith("Reindexing the knowledge base") and replies[-1] == SORRY
    assert await door.adapter.admin.store.count() == 3  # the rebuild was abandoned; the old index serves on
    replies = await command(door, "reindex", until_starts=(SORRY, "Reindex finished"))
    assert "3 files: 3 indexed" in replies[-1]


async def test_a_process_that_cannot_reindex_says_so(make: Any, stack: Stack) -> None:
    def without_indexer(engine: Any, settings: Settings) -> Admin:
        return Admin(engine, None, stack.retriever.store, settings.core.knowledge_paths)

    door = await make(admin=without_indexer)
    replies = await command(door, "reindex", until_starts=("Reindexing is not",))
    assert replies == [
        "Reindexing the knowledge base… I'll post progress here.",
        "Reindexing is not available in this process.",
    ]


async def test_a_reindex_running_in_another_process_is_refused_until_it_ends(
    make: Any, shared: Callable[[], Any], stack: Stack
) -> None:
    ours, theirs = await shared(), await shared()

    def admin(engine: Any, settings: Settings) -> Admin:
        built = stack.admin(engine, settings)
        built.shared_lock = ours.reindex_lock
        return built

    door = await make(admin=admin)
    assert await theirs.reindex_lock.acquire()  # the other process's reindex
    assert await command(door, "reindex") == ["A reindex is already running; try again when it's done."]
    await theirs.reindex_lock.release()
    replies = await command(door, "reindex", until_starts=("Reindex finished",))
    assert "3 files: 3 indexed" in replies[-1] and not await door.adapter.admin.reindex_running()


async def test_an_admin_check_slack_cannot_answer_refuses(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    """UADMIN is a workspace admin, but users.info fails: the check fails closed."""
    door = await make()
    door.slack.fail_next("users.info", "server_error")
    refused = await command(door, "reindex", user="UADMIN")
    assert refused == ["Sorry, only workspace admins can reindex the knowledge base."]
    assert "users.info failed for an admin check: internal_error" in caplog.text
    assert await command(door, "reindex", user="UADMIN", until_starts=("Reindex finished",))  # answered again: admin


# -- replies, alerts and clicks that cannot be posted or stored -----------------------------------------------


async def test_a_reply_the_response_url_refuses_goes_out_as_an_ephemeral_message(make: Any) -> None:
    door = await make()
    door.slack.fail_next("response_url", "server_error")
    url = door.slack.response_url()
    status, _ = await door.post(sp.slash_command("status", user="U1", channel="C1", response_url=url))
    assert status == 200
    (ephemeral,) = await until(lambda: door.posts("chat.postEphemeral"))
    assert ephemeral["channel"] == "C1" and ephemeral["user"] == "U1" and "*indexed passages*: 3" in ephemeral["text"]


async def test_a_reply_whose_response_url_cannot_be_reached_goes_out_as_an_ephemeral_message(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    door = await make()
    unreachable = f"http://127.0.0.1:{free_port()}/response/gone"
    status, _ = await door.post(sp.slash_command("status", user="U1", channel="C1", response_url=unreachable))
    assert status == 200
    (ephemeral,) = await until(lambda: door.posts("chat.postEphemeral"))
    assert ephemeral["user"] == "U1" and "*indexed passages*: 3" in ephemeral["text"]
    assert "a reply through the response_url failed (response_url: ClientConnectorError)" in caplog.text


async def test_an_answer_to_ask_that_no_route_can_show_is_logged_and_alerted(
    make: Any, configure: Any, caplog: pytest.LogCaptureFixture
) -> None:
    configure(ADVISOR_SAFETY_ALERT_CHANNEL="slack:CALERTS")
    door = await make()
    door.slack.fail_next("response_url", "server_error")
    door.slack.fail_next("chat.postEphemeral", "error", error="channel_not_found")
    url = door.slack.response_url()
    status, _ = await door.post(sp.slash_command("ask emergency fund size?", user="U1", response_url=url))
    assert status == 200
    (alert,) = await until(lambda: [p for p in door.posts() if p["channel"] == "CALERTS"])
    assert "U1" in alert["text"] and "emergency" not in alert["text"]
    assert "response_url: HTTP 500; chat.postEphemeral: channel_not_found" in caplog.text
    assert "emergency" not in caplog.text  # no user text in the logs


@pytest.mark.parametrize(
    ("alert_channel", "logged"),
    [
        (None, "no slack alert channel is set (ADVISOR_SAFETY_ALERT_CHANNEL): an admin alert was not posted"),
        ("slack:CALERTS", "could not post an admin alert to CALERTS: channel_not_found"),
    ],
    ids=["no-alert-channel", "alert-refused"],
)
async def test_an_alert_that_cannot_be_posted_is_logged(
    make: Any, configure: Any, caplog: pytest.LogCaptureFixture, alert_channel: str | None, logged: str
) -> None:
    if alert_channel is not None:
        configure(ADVISOR_SAFETY_ALERT_CHANNEL=alert_channel)
    door = await make()
    door.slack.fail_next("response_url", "server_error")
    door.slack.fail_next("chat.postEphemeral", "error", error="channel_not_found")
    door.slack.fail_next("chat.postMessage", "error", error="channel_not_found")  # the alert, if any is posted
    await door.post(sp.slash_command("ask emergency fund size?", user="U1", response_url=door.slack.response_url()))
    await until(lambda: logged in caplog.text)


async def test_a_click_memory_cannot_store_is_told(make: Any) -> None:
    door = await make()
    await door.adapter.engine.memory.close()  # memory unusable
    url = door.slack.response_url()
    status, _ = await door.post(sp.block_action("advisor_feedback_up", "17", channel="D1", response_url=url))
    assert status == 200
    told = await until(lambda: shown(door, url))
    assert told == ["Sorry, I couldn't record that just now. Please try again in a moment."]


# -- refused at the door ------------------------------------------------------------------------------------


async def test_a_signed_body_that_is_not_an_object_is_400_and_a_draining_process_503(make: Any) -> None:
    door = await make()
    status, body = await door.post(json.dumps(["not", "an", "object"]).encode(), content_type="application/json")
    assert status == 400 and json.loads(body) == {"error": "malformed request body"}
    async with aiohttp.ClientSession() as http, http.get(door.url.replace("/slack/events", "/healthz")) as response:
        assert response.status == 200 and await response.json() == {"ok": True}
    assert await door.adapter.inflight.drain(1)
    status, body = await door.post(sp.app_mention("emergency fund size?"))
    assert status == 503 and json.loads(body) == {"error": "shutting down"}
    assert door.slack.calls_to("chat.postMessage") == []


# -- an answer taken over from a process that died -----------------------------------------------------------


def answering(adapter: SlackAdapter) -> list[asyncio.Task[Any]]:
    """The tasks running `adapter`'s answers (SlackAdapter._work somewhere down their await chain)."""

    def runs_work(coro: Any) -> bool:
        while coro is not None:
            if getattr(coro, "cr_code", None) is SlackAdapter._work.__code__:
                return True
            coro = getattr(coro, "cr_await", None)
        return False

    return [task for task in asyncio.all_tasks() if runs_work(task.get_coro())]


ANSWER = "Keep three to six months of essential expenses in an easy-access account. " * 5


async def process(stack: Stack, slack: FakeSlack, model: FakeOpenAI, state: SharedState) -> SlackDoor:
    """One web process: its own engine and door, on the shared Redis state."""
    settings = load_settings(None)
    engine = stack.engine(settings, stack.chat_model(model), memory=state.memory, shared=state)
    return await stack.slack_door(
        engine, settings, slack, SECRET, update_interval=0.05, dedupe=state.dedupe, journal=state.journal("slack")
    )


@pytest.mark.parametrize("placeholder_deleted", [False, True], ids=["placeholder-kept", "placeholder-deleted"])
async def test_an_answer_a_dead_process_left_is_finished_by_another(
    stack: Stack, slack: FakeSlack, openai_fake: FakeOpenAI, shared: Callable[[], Any], configure: Any,
    placeholder_deleted: bool,
) -> None:  # fmt: skip
    """In the placeholder it left on screen; if that was deleted meanwhile, as a new message in the thread."""
    openai_fake.chunk_delay = 0.05  # seconds of streaming: the crash comes mid-answer
    openai_fake.default_answer = ANSWER
    first_state, second_state = await shared(), await shared()
    first = await process(stack, slack, openai_fake, first_state)
    mention = sp.app_mention("How big should my emergency fund be?")
    await first.post(mention)
    (placeholder,) = await until(lambda: slack.calls_to("chat.postMessage"))
    await asyncio.sleep(0.2)  # the journal records the placeholder
    (task,) = answering(first.adapter)
    task.cancel()  # the crash: nothing finishes or renews the entry
    await asyncio.gather(task, return_exceptions=True)
    journal = second_state.journal("slack")
    assert await journal.pending() == 1
    (ts,) = [m["ts"] for m in slack.thread("C1", mention["event"]["ts"]) if m.get("bot_id")]
    if placeholder_deleted:
        await first.adapter.client.chat_delete(channel="C1", ts=ts)

    second = await process(stack, slack, openai_fake, second_state)
    recovery = asyncio.create_task(second.adapter.recover(interval=0.2))
    try:
        (final,) = await until(lambda: [m for m in slack.thread("C1", mention["event"]["ts"]) if m.get("blocks")], 15)
        await until(lambda: second.adapter._working == set())
        assert await journal.pending() == 0
    finally:
        recovery.cancel()
        await asyncio.gather(recovery, return_exceptions=True)
    assert placeholder["args"]["thread_ts"] == mention["event"]["ts"]
    assert ANSWER.strip()[:60] in final["text"]
    assert (final["ts"] == ts) is not placeholder_deleted  # edited in place, else posted anew
    replies = [m for m in slack.thread("C1", mention["event"]["ts"]) if m.get("bot_id")]
    assert replies == [final]  # one answer on screen, no placeholder left over
