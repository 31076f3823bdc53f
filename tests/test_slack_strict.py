"""The Slack adapter against a strict fake Slack: per-workspace rate limits, the 3-s ack deadline and
writes that fail mid-answer. Real bolt served over HTTP (and Socket Mode), correctly signed requests,
the real slack_sdk clients, the real engine. Nothing here times anything: the fake counts late acks,
retries and 429s, and the tests count those."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.app import PLACEHOLDER, SORRY
from bot.ops.metrics import REGISTRY
from config.settings import Settings, load_settings
from tests.harness import slack_payloads as sp
from tests.harness.openai_server import FakeOpenAI
from tests.harness.slack_api import TIMEOUT_NOTICE, FakeSlack, Limit
from tests.harness.stack import SlackDoor, Stack, until

SECRET = "strict-signing-secret"
SCALE = 0.05  # a minute of Slack's limits lasts 3 s here
QUESTION = "How big should my emergency fund be?"
ANSWER = "Keep three to six months of essential expenses in an easy-access savings account [1]. " * 3


def lost() -> float:
    return REGISTRY.get_sample_value("advisor_write_failures_total", {"platform": "slack", "outcome": "lost"}) or 0.0


def new_messages() -> float:
    labels = {"platform": "slack", "outcome": "new_message"}
    return REGISTRY.get_sample_value("advisor_write_failures_total", labels) or 0.0


@pytest.fixture
async def strict() -> Any:
    async with FakeSlack(strict=True, time_scale=SCALE) as fake:
        fake.admins = {"UADMIN"}
        yield fake


@pytest.fixture
def settings(setenv: Callable[..., None], kb_dir: Path) -> Settings:
    setenv(
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET=SECRET,
        ADVISOR_KNOWLEDGE_PATHS=str(kb_dir),
        ADVISOR_ADMINS_SLACK_USER_IDS="UCONFIGADMIN",
        ADVISOR_SAFETY_ALERT_CHANNEL="slack:CALERTS",
        ADVISOR_LIMITS_USER_PER_MINUTE="100000",
        ADVISOR_LIMITS_CONVERSATION_PER_MINUTE="100000",
    )
    return load_settings(None)


async def door(stack: Stack, settings: Settings, slack: FakeSlack, model: Any = None, **kwargs: Any) -> SlackDoor:
    """The adapter paced for the fake's scaled minute: posts 1 per 0.05 s per channel, edits 45 per 3 s."""
    kwargs = {"update_interval": SCALE, "edit_window": 60.0 * SCALE, **kwargs}
    return await stack.slack_door(stack.engine(settings, model), settings, slack, SECRET, bot_user_id="UBOT", **kwargs)


def bot_messages(slack: FakeSlack, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.thread(channel, thread_ts) if m.get("bot_id")]


def finals_in(slack: FakeSlack, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's messages with blocks (final answers) in the thread of the event in `body`."""
    event = body["event"]
    return [m for m in bot_messages(slack, event["channel"], event["ts"]) if m.get("blocks")]


def streaming(openai_fake: FakeOpenAI) -> FakeOpenAI:
    """An answer that streams in 26 pieces over about half a second: many chances to edit."""
    openai_fake.default_answer = ANSWER
    openai_fake.chunk_chars = 10
    openai_fake.chunk_delay = 0.02
    return openai_fake


# -- the strict fake itself, against the real slack_sdk client ------------------------------------------


async def refused(call: Any) -> Any:
    """The response of a call that must fail."""
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value.response


async def test_the_fake_limits_chat_update_per_workspace_with_429_and_retry_after(strict: FakeSlack) -> None:
    strict.teams["xoxb-other"] = "T2"
    client = AsyncWebClient(token="xoxb-test", base_url=strict.base_url, retry_handlers=[])
    other = AsyncWebClient(token="xoxb-other", base_url=strict.base_url, retry_handlers=[])
    posted = await client.chat_postMessage(channel="C1", text="x")
    for _ in range(50):  # Tier 3: 50 a minute
        await client.chat_update(channel="C1", ts=posted["ts"], text="y")
    response = await refused(client.chat_update(channel="C1", ts=posted["ts"], text="z"))
    assert response.status_code == 429 and response["error"] == "ratelimited" and not response["ok"]
    assert int(response.headers["Retry-After"]) >= 1
    assert [(e["method"], e["team"]) for e in strict.limited_calls()] == [("chat.update", "T1")]
    mine = await other.chat_postMessage(channel="C1", text="x")  # another workspace has its own budget
    assert (await other.chat_update(channel="C1", ts=mine["ts"], text="y"))["ok"]


async def test_the_fake_limits_posts_per_channel_with_short_bursts(strict: FakeSlack) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=strict.base_url, retry_handlers=[])
    for _ in range(3):  # a burst of 3
        assert (await client.chat_postMessage(channel="C1", text="x"))["ok"]
    response = await refused(client.chat_postMessage(channel="C1", text="x"))
    assert response.status_code == 429
    assert (await client.chat_postMessage(channel="C2", text="x"))["ok"]  # per channel
    assert len(strict.limited_calls("chat.postMessage")) == 1


async def test_a_late_http_ack_is_retried_with_slacks_headers(stack: Stack) -> None:
    """An app that answers its first delivery after the deadline gets the event again at once."""
    from aiohttp import web

    seen: list[dict[str, str]] = []
    release = asyncio.Event()

    async def events(request: web.Request) -> web.Response:
        seen.append({k: v for k, v in request.headers.items() if k.startswith("X-Slack-Retry")})
        if len(seen) == 1:
            await release.wait()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/events", events)
    base = await stack.serve(app)
    async with FakeSlack(ack_deadline=0.3) as fake:
        delivery = await fake.deliver(f"{base}/events", sp.app_mention("hi"), SECRET)
        assert delivery.acked and delivery.retries == 1
        assert seen == [{}, {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}]
        release.set()
        await until(lambda: delivery.attempts[0].late)  # answered, but Slack had stopped waiting


async def test_a_late_socket_ack_is_redelivered_as_a_retry(strict: FakeSlack) -> None:
    strict.ack_deadline = 0.3
    received: list[SocketModeRequest] = []

    async def listener(client: SocketModeClient, request: SocketModeRequest) -> None:
        received.append(request)
        if len(received) > 1:  # the first envelope is never acked
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))

    web = AsyncWebClient(base_url=strict.base_url, retry_handlers=[])
    client = SocketModeClient(app_token="xapp-1-x", web_client=web)
    client.socket_mode_request_listeners.append(listener)  # type: ignore[arg-type]
    try:
        await client.connect()
        delivery = await strict.deliver_socket(sp.socket_envelope(sp.app_mention("hi")))
    finally:
        await client.close()
    assert delivery.acked and delivery.retries == 1
    assert [(r.retry_attempt, r.retry_reason) for r in received] == [(0, ""), (1, "timeout")]
    assert received[0].envelope_id != received[1].envelope_id


# -- one pacer across channels per workspace ---------------------------------------------------------


async def test_forty_answers_at_once_stay_inside_the_workspace_limit_and_edit_less_often(
    stack: Stack, settings: Settings, strict: FakeSlack, openai_fake: FakeOpenAI
) -> None:
    adapter_door = await door(stack, settings, strict, stack.chat_model(streaming(openai_fake)))
    lone = sp.app_mention(QUESTION, user="ULONE", channel="CLONE")
    assert (await strict.deliver(adapter_door.url, lone, SECRET)).acked
    await until(lambda: adapter_door.finals(), timeout=20)
    lone_edits = len([u for u in adapter_door.posts("chat.update") if u["channel"] == "CLONE"])

    events = [sp.app_mention(QUESTION, user=f"U{n:02d}", channel=f"C{n % 8}") for n in range(40)]
    deliveries = await asyncio.gather(*(strict.deliver(adapter_door.url, body, SECRET) for body in events))
    assert all(d.acked and d.retries == 0 for d in deliveries)
    await until(lambda: len(adapter_door.finals()) == 41, timeout=30)

    assert strict.limited_calls() == []  # not one 429 in the workspace: every edit was paced
    for body in events:  # each answer whole, in its own placeholder
        (reply,) = bot_messages(strict, body["event"]["channel"], body["event"]["ts"])
        assert "three to six months" in reply["text"] and reply.get("blocks")
    updates = [u for u in adapter_door.posts("chat.update") if u["channel"] != "CLONE"]
    assert len([u for u in updates if u.get("blocks")]) == 40  # every final went out, as an edit
    assert lone_edits >= 4 and len(updates) / 40 < lone_edits / 2  # under load each answer edits far less


async def test_a_429_on_a_preview_holds_the_workspaces_edits(
    stack: Stack, settings: Settings, openai_fake: FakeOpenAI
) -> None:
    """The fake allows 3 edits a (scaled) minute, the adapter thinks 45: the first 429 stops the previews."""
    async with FakeSlack(strict=True, time_scale=SCALE) as fake:
        fake.limits = {**fake.limits, "chat.update": (Limit(3, 60.0),)}
        adapter_door = await door(stack, settings, fake, stack.chat_model(streaming(openai_fake)))
        body = sp.app_mention(QUESTION)
        assert (await fake.deliver(adapter_door.url, body, SECRET)).acked
        (reply,) = await until(lambda: finals_in(fake, body), 20)
        assert "three to six months" in reply["text"]
        previews = [c for c in fake.calls_to("chat.update") if not c["args"].get("blocks")]
        assert len(fake.limited_calls("chat.update")) <= 2  # one preview's 429, at most one final retry's
        assert len(previews) == 4  # 3 served and the one refused; then the workspace held its edits


# -- a write that fails mid-answer still reaches the user ------------------------------------------------

WRITE_FAULTS = {
    # id: (fault kind, options); every chat.update of the answer fails this way
    "429-past-retries": ("rate_limited", {"retry_after": 0}),
    "5xx": ("server_error", {}),
    "msg_too_long": ("error", {"error": "msg_too_long"}),
}


@pytest.mark.parametrize("case", list(WRITE_FAULTS), ids=list(WRITE_FAULTS))
async def test_a_failing_edit_still_gets_the_answer_to_the_user_as_a_new_message(
    case: str, stack: Stack, settings: Settings, strict: FakeSlack
) -> None:
    kind, options = WRITE_FAULTS[case]
    strict.fail_next("chat.update", kind, times=20, **options)  # type: ignore[arg-type]
    adapter_door = await door(stack, settings, strict)
    fell_back = new_messages()
    body = sp.app_mention(QUESTION)
    assert (await strict.deliver(adapter_door.url, body, SECRET)).acked
    (reply,) = await until(lambda: finals_in(strict, body), 20)
    assert "three to six months" in reply["text"] and reply["blocks"][-1]["type"] == "actions"
    await until(lambda: len(bot_messages(strict, "C1", body["event"]["ts"])) == 1)  # the stale placeholder removed
    assert new_messages() - fell_back == 1
    edits = strict.calls_to("chat.update")
    assert edits and all(c["args"]["ts"] != reply["ts"] for c in edits)  # the placeholder was edited, never the reply


async def test_a_placeholder_deleted_mid_answer_gets_the_answer_as_a_new_message(
    stack: Stack, settings: Settings, strict: FakeSlack, openai_fake: FakeOpenAI
) -> None:
    adapter_door = await door(stack, settings, strict, stack.chat_model(streaming(openai_fake)))
    openai_fake.chunk_delay = 0.05
    body = sp.app_mention(QUESTION)
    assert (await strict.deliver(adapter_door.url, body, SECRET)).acked
    (placeholder,) = await until(lambda: bot_messages(strict, "C1", body["event"]["ts"]))
    await AsyncWebClient(token="xoxb-test", base_url=strict.base_url).chat_delete(channel="C1", ts=placeholder["ts"])
    (reply,) = await until(lambda: bot_messages(strict, "C1", body["event"]["ts"]), 20)
    assert reply["ts"] != placeholder["ts"] and reply.get("blocks") and "three to six months" in reply["text"]
    gone = [c for c in strict.calls_to("chat.update") if c["args"]["ts"] == placeholder["ts"]]
    assert len(gone) <= 2  # after message_not_found no more edits go to it (one preview, maybe one in flight)


async def test_content_refused_twice_goes_out_as_plain_text(
    stack: Stack, settings: Settings, strict: FakeSlack, openai_fake: FakeOpenAI
) -> None:
    adapter_door = await door(stack, settings, strict, stack.chat_model(streaming(openai_fake)))
    openai_fake.chunk_delay = 0.05
    body = sp.app_mention(QUESTION)
    assert (await strict.deliver(adapter_door.url, body, SECRET)).acked
    await until(lambda: adapter_door.posts())  # the placeholder is up; from now on every message is "too long"
    strict.fail_next("chat.update", "error", times=20, error="msg_too_long")
    strict.fail_next("chat.postMessage", "error", times=1, channel="C1", error="msg_too_long")
    shown = await until(lambda: [m for m in bot_messages(strict, "C1", body["event"]["ts"]) if "six" in m["text"]], 20)
    assert all(not m.get("blocks") for m in shown)  # plain text parts, no blocks
    assert " ".join(m["text"] for m in shown).count("three to six months") == 3


async def test_an_answer_nothing_can_show_is_logged_counted_and_alerted(
    stack: Stack, settings: Settings, strict: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    strict.fail_next("chat.postMessage", "error", times=20, channel="C1", error="is_archived")
    adapter_door = await door(stack, settings, strict)
    before = lost()
    body = sp.app_mention("secret-plan-zebra: " + QUESTION)
    with caplog.at_level(logging.INFO):
        assert (await strict.deliver(adapter_door.url, body, SECRET)).acked
        (alert,) = await until(lambda: [p for p in adapter_door.posts() if p["channel"] == "CALERTS"])
    assert "<#C1>" in alert["text"] and "U1" in alert["text"] and "is_archived" in alert["text"]
    assert "zebra" not in alert["text"]
    assert lost() - before == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("adapters.slack")]
    assert errors and all("zebra" not in r.getMessage() for r in errors)
    assert "could not be shown" in errors[-1].getMessage() and body["event"]["ts"] in errors[-1].getMessage()


# -- every command and click acks before any I/O ---------------------------------------------------------


class Blocked:
    """`inner` whose every async method waits until `gate` is set: I/O that takes as long as a test wants."""

    def __init__(self, inner: Any, gate: asyncio.Event) -> None:
        self._inner, self._gate = inner, gate
        self.waiting = 0  # calls that started and are held

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def held(*args: Any, **kwargs: Any) -> Any:
            self.waiting += 1
            await self._gate.wait()
            return await attr(*args, **kwargs)

        return held


COMMANDS = {
    # id: the request body, given a response_url
    "status": lambda url: sp.slash_command("status", response_url=url),
    "forget": lambda url: sp.slash_command("forget", response_url=url),
    "reindex": lambda url: sp.slash_command("reindex", user="UCONFIGADMIN", response_url=url),
    "ask": lambda url: sp.slash_command(f"ask {QUESTION}", response_url=url),
    "feedback-click": lambda url: sp.block_action("advisor_feedback_up", "1", response_url=url),
}


async def slow_door(
    stack: Stack, settings: Settings, slack: FakeSlack, gate: asyncio.Event
) -> tuple[SlackDoor, list[Blocked]]:
    """A door whose memory and admin commands are stuck until `gate` is set."""
    memory = Blocked(stack.memory(), gate)
    engine = stack.engine(settings, memory=memory)
    adapter_door = await stack.slack_door(engine, settings, slack, SECRET, bot_user_id="UBOT", update_interval=SCALE)
    admin = Blocked(adapter_door.adapter.admin, gate)
    adapter_door.adapter.admin = admin  # type: ignore[assignment]
    return adapter_door, [memory, admin]


@pytest.mark.parametrize("command", list(COMMANDS), ids=list(COMMANDS))
async def test_commands_and_clicks_ack_in_time_while_their_io_is_stuck(
    command: str, stack: Stack, settings: Settings, strict: FakeSlack
) -> None:
    gate = asyncio.Event()
    adapter_door, blocked = await slow_door(stack, settings, strict, gate)
    url = strict.response_url()
    delivery = await strict.deliver(adapter_door.url, COMMANDS[command](url), SECRET)
    assert delivery.acked, delivery.attempts  # inside the 3 s...
    await until(lambda: sum(b.waiting for b in blocked))  # ...while the I/O it started is still stuck
    gate.set()
    shown = await until(lambda: strict.screen(url))
    assert TIMEOUT_NOTICE not in shown and PLACEHOLDER not in shown


async def test_a_slow_workspace_admin_check_does_not_hold_the_ack(
    stack: Stack, settings: Settings, strict: FakeSlack
) -> None:
    strict.fail_next("users.info", "slow", seconds=3.5)  # the Web API itself is slow
    adapter_door = await door(stack, settings, strict)
    url = strict.response_url()
    command = sp.slash_command("reindex", user="UADMIN", response_url=url)  # not a configured admin: users.info
    delivery = await strict.deliver(adapter_door.url, command, SECRET)
    assert delivery.acked
    shown = await until(lambda: strict.screen(url))
    assert shown[0].startswith("Reindexing the knowledge base")


async def test_socket_mode_commands_ack_in_time_while_their_io_is_stuck(
    stack: Stack, settings: Settings, strict: FakeSlack
) -> None:
    gate = asyncio.Event()
    adapter_door, blocked = await slow_door(stack, settings, strict, gate)
    handler = adapter_door.adapter.socket_mode("xapp-1-test")
    await handler.connect_async()
    try:
        url = strict.response_url()
        delivery = await strict.deliver_socket(sp.socket_envelope(sp.slash_command("status", response_url=url)))
        assert delivery.acked
        await until(lambda: sum(b.waiting for b in blocked))
        gate.set()
        (shown,) = await until(lambda: strict.screen(url))
        assert "*indexed passages*" in shown
    finally:
        await handler.close_async()


async def test_a_slow_state_check_refuses_an_event_in_time_and_never_holds_a_command(
    stack: Stack, settings: Settings, strict: FakeSlack
) -> None:
    slow = asyncio.Event()

    async def gate() -> None:  # shared state that stops answering
        if not slow.is_set():
            await asyncio.sleep(30)

    adapter_door = await door(stack, settings, strict, gate=gate)
    strict.time_scale = 0.001  # redeliveries at once
    url = strict.response_url()
    command = await strict.deliver(adapter_door.url, sp.slash_command("help", response_url=url), SECRET)
    assert command.acked and "reindex [path]" in strict.screen(url)[0]  # commands are not gated
    body = sp.app_mention(QUESTION)
    first = asyncio.create_task(strict.deliver(adapter_door.url, body, SECRET))
    await until(lambda: len(strict.deliveries) == 2 and strict.deliveries[1].attempts[0].status)
    slow.set()
    delivery = await first
    assert delivery.attempts[0].status == 503 and not delivery.attempts[0].late  # refused in time, so not lost
    assert delivery.acked and delivery.attempts[1].reason == "http_error"
    await until(adapter_door.finals)


# -- /advisor ask never leaves a placeholder --------------------------------------------------------------


async def test_ask_shows_a_clear_failure_and_no_placeholder_when_the_engine_fails(
    stack: Stack, settings: Settings, strict: FakeSlack
) -> None:
    adapter_door = await door(stack, settings, strict)
    await adapter_door.adapter.engine.memory.close()  # the engine cannot answer
    url = strict.response_url()
    assert (await strict.deliver(adapter_door.url, sp.slash_command(f"ask {QUESTION}", response_url=url), SECRET)).acked
    (shown,) = await until(lambda: strict.screen(url))
    assert shown == SORRY  # the only thing on screen: no "Thinking…" left behind


async def test_ask_replies_with_the_answer_and_nothing_else(
    stack: Stack, settings: Settings, strict: FakeSlack
) -> None:
    adapter_door = await door(stack, settings, strict)
    url = strict.response_url()
    delivery = await strict.deliver(adapter_door.url, sp.slash_command(f"ask {QUESTION}", response_url=url), SECRET)
    assert json.loads(delivery.ack_body)["response_type"] == "ephemeral"
    (shown,) = await until(lambda: strict.screen(url))
    assert "three to six months" in shown


# -- no user text in any log -------------------------------------------------------------------------------


async def test_no_user_text_in_any_log_record_of_a_full_exchange(
    stack: Stack, settings: Settings, strict: FakeSlack, openai_fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """Every logger at DEBUG (bolt's, slack_sdk's, ours) through mentions, a DM, a thread reply, a
    command, a click, Socket Mode and a forged signature: the user's words are in no record."""
    secret_words = "Quokka-zebra-4711"
    caplog.set_level(logging.DEBUG)
    adapter_door = await door(stack, settings, strict, stack.chat_model(streaming(openai_fake)))
    mention = sp.app_mention(f"{secret_words} {QUESTION}")
    assert (await strict.deliver(adapter_door.url, mention, SECRET)).acked
    await until(adapter_door.finals, 20)
    reply = sp.channel_message(f"{secret_words} and where?", thread_ts=mention["event"]["ts"])
    assert (await strict.deliver(adapter_door.url, reply, SECRET)).acked
    assert (await strict.deliver(adapter_door.url, sp.dm_message(f"{secret_words} in a DM?"), SECRET)).acked
    await until(lambda: len(adapter_door.finals()) == 3, 20)
    url = strict.response_url()
    ask = sp.slash_command(f"ask {secret_words}?", response_url=url)
    assert (await strict.deliver(adapter_door.url, ask, SECRET)).acked
    await until(lambda: strict.screen(url), 20)
    turn = adapter_door.finals()[0]["blocks"][-1]["elements"][0]["value"]
    click = sp.block_action("advisor_feedback_up", turn, message_text=secret_words, response_url=strict.response_url())
    assert (await strict.deliver(adapter_door.url, click, SECRET)).acked
    forged = await adapter_door.post(sp.app_mention(secret_words), headers={"X-Slack-Signature": "v0=" + "0" * 64})
    assert forged[0] == 401
    handler = adapter_door.adapter.socket_mode("xapp-1-test")
    await handler.connect_async()
    try:
        assert (await strict.deliver_socket(sp.socket_envelope(sp.app_mention(f"{secret_words} over a socket")))).acked
        await until(lambda: len(adapter_door.finals()) == 4, 20)
    finally:
        await handler.close_async()

    seen = {r.name for r in caplog.records}
    assert any(name.startswith("slack_bolt") for name in seen) and any(name.startswith("slack_sdk") for name in seen)
    leaks = [
        (r.name, r.getMessage()[:200])
        for r in caplog.records
        if not r.name.startswith("tests.") and secret_words.lower() in f"{r.getMessage()} {r.exc_text or ''}".lower()
    ]
    assert leaks == []
