"""Slack's native text streaming (chat.startStream / appendStream / stopStream) through the real bolt
app served over HTTP, signed requests, the real slack_sdk client against the strict fake Slack (its
documented tiers, argument checks and block schemas), the real engine on the fake OpenAI server.

What the user sees is read back from the fake: the thread's messages, what each stream holds, whether it
still streams. Nothing here times anything."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from adapters.slack.native_stream import safe_markdown
from bot.safety.moderation import RETRACTION, build_moderator
from config.settings import Settings, load_settings
from tests.harness import slack_payloads as sp
from tests.harness.openai_server import FakeOpenAI
from tests.harness.slack_api import FakeSlack
from tests.harness.slack_stream_api import MARKDOWN_TEXT_LIMIT
from tests.harness.stack import SlackDoor, Stack, openai_client, until

pytest_plugins = ["conftest_redis"]

SECRET = "native-stream-secret"
SCALE = 0.05  # a minute of Slack's limits lasts 3 s here
QUESTION = "How big should my emergency fund be?"
PARAGRAPH = "Keep three to six months of essential expenses in an easy-access savings account [1]."
ANSWER = " ".join([PARAGRAPH] * 4)
STREAM_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream")


@pytest.fixture
async def fake() -> Any:
    async with FakeSlack(strict=True, time_scale=SCALE, streaming=True) as server:
        yield server


@pytest.fixture
def settings(setenv: Callable[..., None], kb_dir: Path) -> Settings:
    setenv(
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET=SECRET,
        ADVISOR_KNOWLEDGE_PATHS=str(kb_dir),
        ADVISOR_LIMITS_USER_PER_MINUTE="100000",
        ADVISOR_LIMITS_CONVERSATION_PER_MINUTE="100000",
    )
    return load_settings(None)


@pytest.fixture
def model(openai_fake: FakeOpenAI) -> FakeOpenAI:
    """An answer streaming in pieces of 12 characters, 10 ms apart: many chances to append."""
    openai_fake.default_answer = ANSWER
    openai_fake.chunk_chars = 12
    openai_fake.chunk_delay = 0.01
    return openai_fake


async def door(stack: Stack, settings: Settings, fake: FakeSlack, model: FakeOpenAI, **kwargs: Any) -> SlackDoor:
    """The adapter paced for the fake's scaled minute (`moderated`: the answer checked on the fake)."""
    engine_kwargs = {}
    if kwargs.pop("moderated", False):
        engine_kwargs["moderator"] = build_moderator(settings, openai_client(model))
    engine = stack.engine(settings, stack.chat_model(model), memory=kwargs.pop("memory", None), **engine_kwargs)
    kwargs = {"update_interval": SCALE, "edit_window": 60.0 * SCALE, "bot_user_id": "UBOT", **kwargs}
    return await stack.slack_door(engine, settings, fake, SECRET, **kwargs)


def args_of(fake: FakeSlack, method: str) -> list[dict[str, Any]]:
    return [call["args"] for call in fake.calls_to(method) if not call.get("limited")]


def bot_messages(fake: FakeSlack, body: dict[str, Any]) -> list[dict[str, Any]]:
    event = body["event"]
    return [m for m in fake.thread(event["channel"], event["ts"]) if m.get("bot_id")]


def streamed_text(fake: FakeSlack) -> str:
    """Everything the calls that were served put into streams, in order."""
    served = [c for c in fake.calls if c["method"] in STREAM_METHODS and not c.get("limited")]
    return "".join(str(c["args"].get("markdown_text") or "") for c in served)


async def answered(harness: SlackDoor, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Post `body`, wait until its answer is finished (no stream open, a final with blocks)."""
    status, _ = await harness.post(body)
    assert status == 200
    slack = harness.slack

    def done() -> list[dict[str, Any]]:
        mine = bot_messages(slack, body)
        open_streams = [m for m in mine if slack.streaming.streaming(body["event"]["channel"], m["ts"])]
        return mine if mine and mine[-1].get("blocks") and not open_streams and not harness.adapter._working else []

    return await until(done, 15)


async def assistant_text(stack_engine: Any, body: dict[str, Any]) -> str:
    event = body["event"]
    conversation = f"slack:{body['team_id']}:{event['channel']}:{event['ts']}"
    turns = await stack_engine.memory.history(conversation)
    return [t.content for t in turns if t.role == "assistant"][-1]


# -- the streamed answer ---------------------------------------------------------------------------------


async def test_a_mention_is_streamed_natively_with_sources_and_feedback_buttons(
    stack: Stack, settings: Settings, fake: FakeSlack, model: FakeOpenAI
) -> None:
    harness = await door(stack, settings, fake, model)
    mention = sp.app_mention(QUESTION)
    (message,) = await answered(harness, mention)
    (start,) = args_of(fake, "chat.startStream")
    assert start["thread_ts"] == mention["event"]["ts"] and start["channel"] == "C1"
    assert (start["recipient_user_id"], start["recipient_team_id"]) == ("U1", "T1")
    assert len(args_of(fake, "chat.appendStream")) >= 2  # streamed, not posted at the end
    (stop,) = args_of(fake, "chat.stopStream")
    assert not fake.calls_to("chat.postMessage") and not fake.calls_to("chat.update")  # no placeholder, no edits
    final = await assistant_text(harness.adapter.engine, mention)
    assert message["text"] == streamed_text(fake) == safe_markdown(final)  # all of it, once, in order
    assert "three to six months" in message["text"]
    sources, feedback = stop["blocks"]
    assert sources["type"] == "context" and "Emergency fund" in sources["elements"][0]["text"]
    assert feedback["type"] == "context_actions"
    (buttons,) = feedback["elements"]
    assert buttons["type"] == "feedback_buttons" and buttons["action_id"] == "advisor_feedback"
    assert buttons["positive_button"]["value"].startswith("up:") and buttons["negative_button"]["value"].startswith("down:")
    assert message["blocks"] == stop["blocks"]


def feedback_click(value: str, response_url: str, message_ts: str) -> bytes:
    """The block_actions body Slack sends for a click on a feedback_buttons element."""
    payload = sp.block_actions_payload("advisor_feedback", value, message_ts=message_ts, response_url=response_url)
    payload["actions"] = [
        {
            "type": "feedback_buttons", "action_id": "advisor_feedback", "block_id": "advisor_feedback_1",
            "value": value, "text": {"type": "plain_text", "text": "👍"}, "action_ts": sp.new_ts(),
        }
    ]  # fmt: skip
    return urlencode({"payload": json.dumps(payload)}).encode()


@pytest.mark.parametrize(("button", "stored"), [("positive_button", 1), ("negative_button", -1)])
async def test_a_feedback_buttons_click_is_stored_with_the_turn(
    stack: Stack, settings: Settings, fake: FakeSlack, model: FakeOpenAI, button: str, stored: int
) -> None:
    harness = await door(stack, settings, fake, model)
    mention = sp.app_mention(QUESTION)
    (message,) = await answered(harness, mention)
    value = message["blocks"][-1]["elements"][0][button]["value"]
    url = fake.response_url()
    status, _ = await harness.post(feedback_click(value, url, message["ts"]))
    assert status == 200
    await until(lambda: fake.screen(url))
    assert fake.screen(url) == ["Thanks for the feedback."]
    event = mention["event"]
    turns = await harness.adapter.engine.memory.history(f"slack:T1:C1:{event['ts']}")
    assert [(t.role, t.feedback) for t in turns] == [("user", None), ("assistant", stored)]


@pytest.mark.parametrize("piece", [400, 1_000, 3_000, 30_000], ids=["in-pieces", "in-1k", "in-3k", "in-one-piece"])
async def test_a_long_answer_goes_on_in_new_streams_under_the_first(
    stack: Stack, setenv: Callable[..., None], settings: Settings, fake: FakeSlack, model: FakeOpenAI, piece: int
) -> None:
    """Bigger pieces: the text a slow reader gets at once under load (CI saw a 12,000-character part
    followed by a 1-character stop, msg_too_long, when the first preview held more than two parts, and a
    part that ended inside a paragraph where an append had left it)."""
    setenv(ADVISOR_ANSWER_MAX_TOKENS="32000")
    settings = load_settings(None)
    model.default_answer = "\n\n".join(f"{n}. {PARAGRAPH}" for n in range(300))  # about 27,000 characters
    model.chunk_chars = piece
    model.chunk_delay = 0.0
    harness = await door(stack, settings, fake, model)
    mention = sp.app_mention(QUESTION)
    messages = await answered(harness, mention)
    final = await assistant_text(harness.adapter.engine, mention)
    assert len(final) > 2 * MARKDOWN_TEXT_LIMIT
    assert len(messages) == len(args_of(fake, "chat.startStream")) == len(args_of(fake, "chat.stopStream")) >= 3
    assert all(len(m["text"]) <= MARKDOWN_TEXT_LIMIT for m in messages)
    assert "".join(m["text"] for m in messages) == safe_markdown(final)  # cut where it was, nothing lost or twice
    assert all(m["text"].endswith("\n\n") for m in messages[:-1])  # cut at paragraph breaks
    assert [bool(m.get("blocks")) for m in messages] == [False] * (len(messages) - 1) + [True]  # buttons once, last
    assert not fake.calls_to("chat.update") and not fake.calls_to("chat.postMessage")


async def test_a_top_level_dm_is_answered_inline_with_chat_update(
    stack: Stack, settings: Settings, fake: FakeSlack, model: FakeOpenAI
) -> None:
    """chat.startStream needs a thread_ts: a DM written outside a thread is answered in the DM, as before."""
    harness = await door(stack, settings, fake, model)
    await harness.post(sp.dm_message(QUESTION))
    (final,) = await until(harness.finals, 15)
    assert not fake.calls_to("chat.startStream")
    assert harness.posts()[0]["channel"] == "D1" and not harness.posts()[0].get("thread_ts")
    assert final["blocks"][-1]["type"] == "actions"  # our own buttons on the chat.update path


# -- the chat.update fallback ----------------------------------------------------------------------------


@pytest.mark.parametrize("refusal", ["unknown_method", "not_allowed", "method_deprecated", "missing_scope"])
async def test_a_workspace_that_cannot_stream_gets_chat_update_and_is_remembered(
    stack: Stack, settings: Settings, fake: FakeSlack, model: FakeOpenAI, refusal: str
) -> None:
    if refusal == "missing_scope":  # the fake checks the scope on the streaming methods only
        fake.scopes.discard("chat:write")
    else:
        fake.refuse_streaming("T1", refusal)
    harness = await door(stack, settings, fake, model)
    first = sp.app_mention(QUESTION)
    (message,) = await answered(harness, first)
    (attempt,) = fake.calls_to("chat.startStream")
    assert attempt["args"]["thread_ts"] == first["event"]["ts"]
    assert not args_of(fake, "chat.appendStream") and not args_of(fake, "chat.stopStream")
    assert "three to six months" in message["text"] and message["blocks"][-1]["type"] == "actions"
    assert message["blocks"][-2]["type"] == "context"  # sources on the fallback path too
    second = sp.app_mention("and which debt first?")
    await answered(harness, second)
    assert len(fake.calls_to("chat.startStream")) == 1  # remembered: not asked again in this workspace
    other = {**sp.app_mention("credit scores?"), "team_id": "T2"}
    await answered(harness, other)
    assert len(fake.calls_to("chat.startStream")) == 2  # another workspace is asked for itself


async def test_retraction_replaces_the_streamed_text(
    stack: Stack, settings: Settings, fake: FakeSlack, model: FakeOpenAI
) -> None:
    """The flagged text was on screen while streaming; it is gone from every message afterwards."""
    flagged = "Now the dangerous part. " * 20
    model.script_chat("Some harmless advice about saving. " * 12 + flagged)
    model.script_moderation({}, {}, {"categories": {"illicit": True}})
    harness = await door(stack, settings, fake, model, moderated=True)
    mention = sp.app_mention(QUESTION)
    (message,) = await answered(harness, mention)
    assert "harmless advice" in streamed_text(fake)  # it had been streamed
    assert message["text"] == RETRACTION and "harmless" not in json.dumps(message["blocks"])
    (update,) = args_of(fake, "chat.update")  # the stopped stream rewritten in place
    assert update["ts"] == message["ts"] and update["text"] == RETRACTION
    assert not fake.streaming.streaming("C1", message["ts"])


# -- faults mid-stream -----------------------------------------------------------------------------------


async def test_a_429_on_an_append_loses_nothing_and_doubles_nothing(
    stack: Stack, settings: Settings, fake: FakeSlack, model: FakeOpenAI
) -> None:
    model.chunk_delay = 0.08  # about 2.5 s of streaming: appends go on after the hold
    fake.fail_next("chat.appendStream", "rate_limited", retry_after=1)
    harness = await door(stack, settings, fake, model)
    mention = sp.app_mention(QUESTION)
    (message,) = await answered(harness, mention)
    refused, *later = fake.calls_to("chat.appendStream")
    assert later and later[0]["at"] - refused["at"] >= 1.0  # the workspace's appends held for Retry-After
    final = await assistant_text(harness.adapter.engine, mention)
    assert message["text"] == safe_markdown(final) and message["text"].count(PARAGRAPH) == ANSWER.count(PARAGRAPH)
    assert not fake.calls_to("chat.update") and not fake.calls_to("chat.postMessage")


@pytest.mark.parametrize("applied", [False, True], ids=["not-applied", "applied"])
@pytest.mark.parametrize("method", ["chat.appendStream", "chat.stopStream"])
async def test_a_5xx_mid_stream_leaves_the_answer_once(
    stack: Stack, settings: Settings, fake: FakeSlack, model: FakeOpenAI, method: str, applied: bool
) -> None:
    """A 5xx leaves unknown whether the call took: the stream is stopped and rewritten with the final."""
    fake.fail_next(method, "server_error", applied=applied)
    harness = await door(stack, settings, fake, model)
    mention = sp.app_mention(QUESTION)
    (message,) = await answered(harness, mention)
    assert message["text"].count("three to six months") == ANSWER.count("three to six months")
    assert message["blocks"][-1]["type"] == "context_actions" and message["blocks"][-2]["type"] == "context"
    (update,) = args_of(fake, "chat.update")
    assert update["ts"] == message["ts"]
    assert len(bot_messages(fake, mention)) == 1 and not fake.streaming.streaming("C1", message["ts"])


# -- takeover --------------------------------------------------------------------------------------------


async def test_a_stream_left_by_a_process_that_died_is_stopped_and_finished_by_another(
    stack: Stack, settings: Settings, fake: FakeSlack, model: FakeOpenAI, shared: Callable[[], Any]
) -> None:
    """Two processes on one real Redis (the work journal's lease is 1 s): the second takes over."""
    model.chunk_delay = 0.05  # about two seconds of streaming: the crash comes mid-answer
    first_state, second_state = await shared(), await shared()
    first = await door(stack, settings, fake, model, dedupe=first_state.dedupe, journal=first_state.journal("slack"))
    mention = sp.app_mention(QUESTION)
    await first.post(mention)
    await until(lambda: args_of(fake, "chat.appendStream"))
    (task,) = [t for t in asyncio.all_tasks() if _runs_work(t)]
    task.cancel()  # the crash: the stream is left open, half an answer in it
    await asyncio.gather(task, return_exceptions=True)
    (ts,) = [m["ts"] for m in bot_messages(fake, mention)]
    assert fake.streaming.streaming("C1", ts)

    journal = second_state.journal("slack")
    assert await journal.pending() == 1  # left unfinished
    second = await door(stack, settings, fake, model, dedupe=second_state.dedupe, journal=journal)
    recovery = asyncio.create_task(second.adapter.recover(interval=0.05))
    try:
        await until(lambda: second.adapter._working == set() and len(args_of(fake, "chat.stopStream")) == 1, 15)
        await until(lambda: [u for u in args_of(fake, "chat.update") if u.get("blocks")], 15)
        await until(lambda: not second.adapter._working, 15)
        assert await journal.pending() == 0
    finally:
        recovery.cancel()
        await asyncio.gather(recovery, return_exceptions=True)
    (message,) = bot_messages(fake, mention)  # one answer on screen: the stream, stopped and rewritten
    assert message["ts"] == ts and not fake.streaming.streaming("C1", ts)
    assert message["text"].count("three to six months") == ANSWER.count("three to six months")
    assert [b["type"] for b in message["blocks"]][-2:] == ["context", "context_actions"]
    stops = args_of(fake, "chat.stopStream")
    assert [s["ts"] for s in stops] == [ts] and "blocks" not in stops[0]  # stopped first, empty-handed
    updates = args_of(fake, "chat.update")  # previews, then the final, all in the stopped stream
    assert {u["ts"] for u in updates} == {ts} and updates[-1]["blocks"] == message["blocks"]


def _runs_work(task: asyncio.Task[Any]) -> bool:
    from adapters.slack.app import SlackAdapter

    coro: Any = task.get_coro()
    while coro is not None:
        if getattr(coro, "cr_code", None) is SlackAdapter._work.__code__:
            return True
        coro = getattr(coro, "cr_await", None)
    return False


# -- the fake itself -------------------------------------------------------------------------------------


async def test_the_fake_refuses_streams_as_slack_documents(fake: FakeSlack) -> None:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(token="xoxb-test", base_url=fake.base_url, retry_handlers=[])

    async def refused(call: Awaitable[Any]) -> str:
        with pytest.raises(SlackApiError) as info:
            await call
        return str(info.value.response["error"])

    raw = client.api_call
    assert await refused(raw("chat.startStream", json={"channel": "C1", "recipient_user_id": "U1"})) == "invalid_arguments"
    assert await refused(client.chat_startStream(channel="C1", thread_ts="1.1")) == "missing_recipient_user_id"
    assert await refused(client.chat_startStream(channel="C1", thread_ts="1.1", recipient_user_id="U1")) == (
        "missing_recipient_team_id"
    )
    assert (await client.chat_startStream(channel="D1", thread_ts="1.1"))["ok"]  # a DM needs no recipient
    too_long = "x" * (MARKDOWN_TEXT_LIMIT + 1)
    where = {"channel": "C1", "thread_ts": "1.1", "recipient_user_id": "U1", "recipient_team_id": "T1"}
    assert await refused(client.chat_startStream(**where, markdown_text=too_long)) == "msg_too_long"
    ts = (await client.chat_startStream(**where, markdown_text="a"))["ts"]
    assert await refused(client.chat_appendStream(channel="C1", ts=ts, markdown_text="")) == "no_text"
    assert await refused(client.chat_update(channel="C1", ts=ts, text="edit")) == "streaming_state_conflict"
    bad = [{"type": "context_actions", "elements": [{"type": "feedback_buttons", "positive_button": {}}]}]
    assert await refused(client.chat_stopStream(channel="C1", ts=ts, blocks=bad)) == "invalid_blocks"
    assert (await client.chat_stopStream(channel="C1", ts=ts, markdown_text="b"))["ok"]
    assert await refused(client.chat_appendStream(channel="C1", ts=ts, markdown_text="c")) == "message_not_in_streaming_state"
    assert await refused(client.chat_stopStream(channel="C1", ts=ts)) == "message_not_in_streaming_state"
    posted = (await client.chat_postMessage(channel="C1", text="not a stream"))["ts"]
    assert await refused(client.chat_appendStream(channel="C1", ts=posted, markdown_text="c")) == (
        "message_not_in_streaming_state"
    )
    assert await refused(client.chat_appendStream(channel="C1", ts="9.9", markdown_text="c")) == "message_not_found"
    while not fake.limited_calls("chat.startStream"):  # Tier 2: 20 a minute per workspace
        try:
            await client.chat_startStream(**where)
        except SlackApiError as exc:
            assert exc.response.status_code == 429 and int(exc.response.headers["Retry-After"]) >= 1
    assert len(args_of(fake, "chat.startStream")) == 20
    fake.refuse_streaming("T1", "not_allowed")
    assert await refused(client.chat_appendStream(channel="C1", ts=ts, markdown_text="c")) == "not_allowed"


async def test_a_stream_slack_ended_mid_answer_is_rewritten_with_the_whole_answer(
    stack: Stack, settings: Settings, fake: FakeSlack, model: FakeOpenAI
) -> None:
    """Slack ends a stream nobody stopped in time: appends answer message_not_in_streaming_state."""
    model.chunk_delay = 0.05
    harness = await door(stack, settings, fake, model)
    mention = sp.app_mention(QUESTION)
    await harness.post(mention)
    (started,) = await until(lambda: bot_messages(fake, mention))
    fake.streaming.expire("C1", started["ts"])
    (message,) = await answered(harness, mention)
    assert any(c["method"] == "chat.appendStream" for c in fake.calls)
    assert message["ts"] == started["ts"] and message["text"].count(PARAGRAPH[:40]) == ANSWER.count(PARAGRAPH[:40])
    assert [b["type"] for b in message["blocks"]][-2:] == ["context", "context_actions"]
    assert len(args_of(fake, "chat.update")) == 1 and not fake.calls_to("chat.postMessage")


async def test_answers_past_the_stream_budget_go_through_chat_update_without_a_429(
    stack: Stack, settings: Settings, fake: FakeSlack, model: FakeOpenAI
) -> None:
    """chat.startStream is Tier 2 (20 a minute): 18 streams open, the other answers take chat.update."""
    harness = await door(stack, settings, fake, model)
    bodies = [sp.app_mention(f"{QUESTION} ({n})", channel=f"C{n:02d}") for n in range(22)]
    await asyncio.gather(*(harness.post(body) for body in bodies))

    def finals() -> list[dict[str, Any]]:
        done = [bot_messages(fake, b) for b in bodies]
        return done if all(m and m[-1].get("blocks") for m in done) and not harness.adapter._working else []

    done = await until(finals, 30)
    assert not fake.limited  # no 429 anywhere
    assert len(args_of(fake, "chat.startStream")) == 18
    kinds = sorted(messages[-1]["blocks"][-1]["type"] for messages in done)
    assert kinds == ["actions"] * 4 + ["context_actions"] * 18  # our own buttons on the chat.update path
    assert all(len(messages) == 1 for messages in done)
