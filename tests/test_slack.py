"""The Slack adapter: the real bolt app served over HTTP, signed requests, the real slack_sdk
client against a fake Slack Web API, the real engine and embedded Qdrant."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from tests.harness import slack_payloads as sp
from tests.harness.openai_server import FakeOpenAI
from tests.harness.slack_api import FakeSlack
from tests.harness.stack import SlackDoor, Stack, until

SECRET = "test-signing-secret"


async def settle(harness: SlackDoor, seconds: float = 0.5) -> None:
    """Give background handlers time to (not) act."""
    await asyncio.sleep(seconds)


@pytest.fixture
def slack(slack: FakeSlack) -> FakeSlack:
    slack.admins = {"UADMIN"}
    return slack


@pytest.fixture
def configure(setenv: Callable[..., None], kb_dir: Path) -> Callable[..., None]:
    def apply(**env: str) -> None:
        setenv(
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_SIGNING_SECRET=SECRET,
            ADVISOR_KNOWLEDGE_PATHS=str(kb_dir),
            ADVISOR_ADMINS_SLACK_USER_IDS="UCONFIGADMIN",
        )
        setenv(**env)

    apply()
    return apply


@pytest.fixture
def make(stack: Stack, slack: FakeSlack, openai_fake: FakeOpenAI, configure: Any) -> Callable[..., Any]:
    async def build(model: bool = False, update_interval: float = 0.05) -> SlackDoor:
        settings = load_settings(None)
        engine = stack.engine(settings, stack.chat_model(openai_fake) if model else None)
        return await stack.slack_door(engine, settings, slack, SECRET, update_interval=update_interval)

    return build


# -- transport and signatures --------------------------------------------------


async def test_url_verification(make: Any) -> None:
    harness = await make()
    status, body = await harness.post(sp.url_verification("abc123"))
    assert status == 200 and json.loads(body) == {"challenge": "abc123"}, body


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Slack-Signature": "v0=" + "0" * 64},
        {"X-Slack-Request-Timestamp": "", "X-Slack-Signature": ""},
        {"X-Slack-Request-Timestamp": "yesterday"},
        "absent",
        "stale",
    ],
    ids=["forged", "empty", "malformed", "absent", "stale"],
)
async def test_bad_signatures_are_401_and_nothing_runs(make: Any, headers: Any) -> None:
    harness = await make()
    body = json.dumps(sp.app_mention("emergency fund?")).encode()
    if headers == "stale":
        headers = sp.sign(body, SECRET, timestamp=int(time.time()) - 6 * 60)
        status, _ = await harness.post(body, headers=headers, sign=False)
    elif headers == "absent":
        status, _ = await harness.post(body, sign=False)
    else:
        status, _ = await harness.post(body, headers={**sp.sign(body, SECRET), **headers}, sign=False)
    assert status == 401
    await settle(harness)
    assert harness.slack.calls == []


# -- conversations ---------------------------------------------------------------


async def test_mention_is_answered_in_a_thread_with_sources_and_buttons(make: Any) -> None:
    harness = await make()
    event = sp.app_mention("How big should my emergency fund be?")
    status, _ = await harness.post(event)
    assert status == 200
    (final,) = await until(harness.finals)
    (placeholder,) = harness.posts()
    ts = event["event"]["ts"]
    assert placeholder["thread_ts"] == ts and placeholder["channel"] == "C1"
    kinds = [block["type"] for block in final["blocks"]]
    assert kinds[0] == "section" and kinds[-2:] == ["context", "actions"]
    assert "Emergency fund" in final["blocks"][-2]["elements"][0]["text"]
    assert "three to six months" in final["text"]
    assert {e["action_id"] for e in final["blocks"][-1]["elements"]} == {"advisor_feedback_up", "advisor_feedback_down"}


async def test_dm_is_answered_in_the_dm_and_in_its_thread(make: Any) -> None:
    harness = await make()
    await harness.post(sp.dm_message("emergency fund size?"))
    await until(harness.finals)
    assert harness.posts()[0]["channel"] == "D1" and not harness.posts()[0].get("thread_ts")
    await harness.post(sp.dm_message("and debts?", thread_ts="1700000000.000001"))
    await until(lambda: len(harness.finals()) == 2)
    assert harness.posts()[1]["thread_ts"] == "1700000000.000001"


async def test_thread_replies_continue_only_where_the_bot_answered(
    make: Any, configure: Any, stack: Stack, slack: FakeSlack
) -> None:
    harness = await make()
    mention = sp.app_mention("emergency fund size?")
    await harness.post(mention)
    await until(harness.finals)
    root = mention["event"]["ts"]
    await harness.post(sp.channel_message("and where do I keep it?", thread_ts=root))
    await until(lambda: len(harness.finals()) == 2)
    assert harness.posts()[1]["thread_ts"] == root
    await harness.post(sp.channel_message("unrelated chatter", thread_ts="1600000000.000001"))
    await until(lambda: harness.adapter.ignored)
    await harness.post(sp.channel_message("top-level chatter"))
    await until(lambda: len(harness.adapter.ignored) == 2)
    assert list(harness.adapter.ignored) == [
        "a reply in a thread the bot has not answered",
        "a channel message that does not mention the bot",
    ]
    assert len(harness.posts()) == 2

    # the same engine (so the same memory: the bot has answered this thread), following threads off
    configure(ADVISOR_SLACK_FOLLOW_THREADS="false")
    quiet = await stack.slack_door(harness.adapter.engine, load_settings(None), slack, SECRET)
    await quiet.post(sp.channel_message("another follow-up", thread_ts=root))
    assert list(await until(lambda: quiet.adapter.ignored)) == [
        "a thread reply without a mention (following threads is off)"
    ]
    assert len(harness.posts()) == 2


def _in_dm(**changes: Any) -> dict[str, Any]:
    message = sp.dm_message("emergency fund?")
    return {**message, "event": {**message["event"], **changes}}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (lambda: sp.dm_message("from myself", user="UBOT"), "the bot's own message"),
        (lambda: sp.bot_message("emergency fund?", channel="D1", channel_type="im"), "message from another bot"),
        (
            lambda: sp.message_changed("emergency fund?", "emergency", sp.new_ts(), channel="D1", channel_type="im"),
            "hidden event",
        ),
        (lambda: sp.message_deleted(sp.new_ts(), "emergency fund?", channel="D1", channel_type="im"), "hidden event"),
        (lambda: _in_dm(hidden=True, subtype="message_replied"), "hidden event"),
        (lambda: _in_dm(subtype="channel_join"), "subtype channel_join"),
        (lambda: _in_dm(user=None), "no author"),
        (lambda: _in_dm(ts=None), "an event without a channel or timestamp"),
    ],
    ids=["own", "bot", "changed", "deleted", "hidden", "join", "no-author", "no-ts"],
)
async def test_ignored_messages(make: Any, payload: Callable[[], dict[str, Any]], reason: str) -> None:
    """Each is not answered for its own reason (another check catching it would pass a no-reply test)."""
    harness = await make()
    status, _ = await harness.post(payload())
    assert status == 200
    assert list(await until(lambda: harness.adapter.ignored)) == [reason]
    assert harness.posts() == []


async def test_allowlisted_bot_is_answered(make: Any, configure: Any) -> None:
    configure(ADVISOR_SLACK_BOT_ALLOWLIST="BHELPER")
    harness = await make()
    message = sp.bot_message("emergency fund size?", channel="D1", bot_id="BHELPER", channel_type="im")
    await harness.post(message)
    await until(harness.finals)


# -- exactly once ------------------------------------------------------------------


async def test_retries_and_duplicate_deliveries_get_one_answer(make: Any) -> None:
    harness = await make()
    event = sp.app_mention("emergency fund size?")
    await harness.post(event)
    await harness.post(event, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    twin = {**event, "event_id": sp.new_event_id()}  # another delivery of the same message
    await harness.post(twin)
    await until(harness.finals)
    await settle(harness)
    assert len(harness.posts()) == 1 and len(harness.finals()) == 1


async def test_thread_broadcast_with_a_mention_is_answered_once(make: Any) -> None:
    harness = await make()
    broadcast = sp.thread_broadcast("<@UBOT> emergency fund size?", thread_ts="1700000000.000001")
    mention = sp.app_mention("<@UBOT> emergency fund size?", ts=broadcast["event"]["ts"], thread_ts="1700000000.000001")
    await harness.post(mention)
    await harness.post(broadcast)
    await until(harness.finals)
    await settle(harness)
    assert len(harness.finals()) == 1


async def test_a_failed_placeholder_still_gets_the_answer_and_a_retry_is_a_duplicate(make: Any) -> None:
    """Slack had its 200, so it sends no retry: the answer is posted anyway, as a new message."""
    harness = await make()
    harness.slack.fail_next("chat.postMessage", "error", error="channel_not_found")
    event = sp.app_mention("emergency fund size?")
    await harness.post(event)
    (final,) = await until(harness.finals)
    assert final["thread_ts"] == event["event"]["ts"] and harness.posts("chat.update") == []
    await harness.post(event, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"})
    await settle(harness, 0.2)
    assert len(harness.finals()) == 1


async def test_ack_comes_before_a_slow_answer(make: Any, openai_fake: FakeOpenAI) -> None:
    """The HTTP response does not wait for the answer: a 4-second answer is acked first."""
    openai_fake.default_answer = "A slow answer. " * 40
    openai_fake.chunk_chars = 20
    openai_fake.chunk_delay = 0.13
    harness = await make(model=True)
    status, _ = await harness.post(sp.app_mention("emergency fund size?"))
    assert status == 200 and harness.finals() == []
    await until(harness.finals, timeout=15)


# -- streaming and limits -----------------------------------------------------------


async def test_streaming_updates_are_throttled_per_channel(make: Any, openai_fake: FakeOpenAI) -> None:
    openai_fake.default_answer = "Streaming words arrive one by one. " * 10
    openai_fake.chunk_delay = 0.02
    harness = await make(model=True, update_interval=0.2)
    await harness.post(sp.app_mention("emergency fund size?"))
    await until(harness.finals, timeout=15)
    edits = [call["at"] for call in harness.slack.calls if call["method"] == "chat.update"]
    assert len(edits) >= 3
    assert all(b - a >= 0.19 for a, b in zip(edits, edits[1:]))  # edits paced per channel


async def test_the_first_text_replaces_the_placeholder_without_waiting(make: Any, openai_fake: FakeOpenAI) -> None:
    """The stream lasts well under the 3-s pacing interval: a first edit that waited for the
    interval would already carry the whole answer (counted, not timed)."""
    openai_fake.default_answer = "Streaming words arrive one by one. " * 10
    openai_fake.chunk_delay = 0.02
    harness = await make(model=True, update_interval=3)
    await harness.post(sp.app_mention("emergency fund size?"))
    await until(harness.finals, timeout=15)
    edits = [call for call in harness.slack.calls if call["method"] == "chat.update"]
    assert len(edits) >= 2  # the first text at once, then (3 s later) the final
    assert edits[0]["args"]["text"] != edits[-1]["args"]["text"]


async def test_a_45000_character_answer_is_split_within_limits(make: Any, openai_fake: FakeOpenAI, setenv: Any) -> None:
    setenv(ADVISOR_ANSWER_MAX_TOKENS="16000")  # far above the default budget, to test the splitting
    paragraph = "Budgeting works best when it is simple and written down. " * 8
    openai_fake.default_answer = "\n\n".join(f"{n}. {paragraph}" for n in range(95))[:45_000] + " [1]"
    openai_fake.chunk_chars = 4000
    harness = await make(model=True, update_interval=0.01)
    await harness.post(sp.app_mention("How do I budget for an emergency fund?"))
    finals = await until(lambda: (f := harness.finals()) and any(b["type"] == "actions" for b in f[-1]["blocks"]) and f, timeout=20)
    assert len(finals) >= 12
    for message in finals:
        assert len(message["text"]) <= 4000
        assert all(len(b["text"]["text"]) <= 3000 for b in message["blocks"] if b["type"] == "section")
    assert [b["type"] for b in finals[-1]["blocks"]][-2:] == ["context", "actions"]
    assert all(b["type"] == "section" for f in finals[:-1] for b in f["blocks"])
    joined = " ".join(" ".join(f["text"].split()) for f in finals)
    assert joined.count("Budgeting works best") == openai_fake.default_answer.count("Budgeting works best")


async def test_web_api_429_is_retried_after_retry_after(make: Any) -> None:
    """The same call again, no sooner than the Retry-After (1 s), on the fake's own clock."""
    harness = await make()
    harness.slack.fail_next("chat.postMessage", "rate_limited", retry_after=1)
    await harness.post(sp.dm_message("emergency fund size?"))
    await until(harness.finals, timeout=15)
    limited, retried = harness.slack.calls_to("chat.postMessage")
    assert retried["args"] == limited["args"]  # the placeholder again, not the answer posted another way
    assert retried["at"] - limited["at"] >= 1.0


# -- /advisor --------------------------------------------------------------------------


def replies(harness: SlackDoor, url: str) -> list[str]:
    """The texts posted to one response_url (commands ack at once and reply there)."""
    return [call["args"]["text"] for call in harness.slack.calls_to("response_url") if call["url"] == url]


async def test_help_status_and_ask(make: Any) -> None:
    harness = await make()
    status, body = await harness.post(sp.slash_command("help"))
    assert status == 200 and "reindex [path]" in json.loads(body)["text"]
    url = harness.slack.response_url()
    await harness.post(sp.slash_command("status", response_url=url))
    (text,) = await until(lambda: replies(harness, url))
    assert "*indexed passages*: 3" in text and "*mode*: offline" in text and "*version*" in text
    url = harness.slack.response_url()
    status, body = await harness.post(sp.slash_command("ask How big should my emergency fund be?", response_url=url))
    assert status == 200 and json.loads(body)["response_type"] == "ephemeral"
    (answer,) = await until(lambda: [c for c in harness.slack.calls_to("response_url") if c["url"] == url])
    assert answer["args"]["response_type"] == "ephemeral" and "three to six months" in answer["args"]["text"]


async def test_forget_clears_the_callers_conversations_in_the_channel(make: Any) -> None:
    harness = await make()
    mention = sp.app_mention("emergency fund size?", user="U1")
    await harness.post(mention)
    await until(harness.finals)
    memory = harness.adapter.engine.memory
    key = f"slack:T1:C1:{mention['event']['ts']}"
    assert len(await memory.history(key)) == 2
    url = harness.slack.response_url()
    await harness.post(sp.slash_command("forget", user="U1", response_url=url))
    (text,) = await until(lambda: replies(harness, url))
    assert "forgot our conversations here (2 messages)" in text
    assert await memory.history(key) == []


async def test_reindex_is_for_admins_only(make: Any) -> None:
    harness = await make()
    url = harness.slack.response_url()
    await harness.post(sp.slash_command("reindex", user="UNOBODY", response_url=url))
    assert await until(lambda: replies(harness, url)) == ["Sorry, only workspace admins can reindex the knowledge base."]
    await settle(harness, 0.2)
    assert len(replies(harness, url)) == 1


@pytest.mark.parametrize("admin", ["UCONFIGADMIN", "UADMIN"], ids=["from-settings", "workspace-admin"])
async def test_admin_reindex_reports_through_response_url_and_refuses_a_second(make: Any, admin: str, kb_dir: Path) -> None:
    harness = await make()
    (kb_dir / "new.md").write_text("# Pensions\n\nA pension is saving for retirement.\n")
    url, again, outside = harness.slack.response_url(), harness.slack.response_url(), harness.slack.response_url()
    await harness.post(sp.slash_command("reindex", user=admin, response_url=url))
    assert (await until(lambda: replies(harness, url)))[0].startswith("Reindexing the knowledge base")
    await harness.post(sp.slash_command("reindex", user=admin, response_url=again))
    assert "already running" in (await until(lambda: replies(harness, again)))[0]
    done = await until(lambda: [text for text in replies(harness, url) if "Reindex finished" in text])
    assert "4 files: 4 indexed" in done[0]
    assert await harness.adapter.admin.store.count() == 4
    await harness.post(sp.slash_command("reindex /etc", user=admin, response_url=outside))
    assert "not inside the configured knowledge paths" in (await until(lambda: replies(harness, outside)))[0]


async def test_feedback_buttons_are_stored_with_the_turn(make: Any) -> None:
    harness = await make()
    await harness.post(sp.dm_message("emergency fund size?"))
    (final,) = await until(harness.finals)
    up = next(e for e in final["blocks"][-1]["elements"] if e["action_id"] == "advisor_feedback_up")
    url = harness.slack.response_url()
    status, _ = await harness.post(sp.block_action("advisor_feedback_up", up["value"], channel="D1", response_url=url))
    assert status == 200
    await until(lambda: harness.slack.calls_to("response_url"))
    turns = await harness.adapter.engine.memory.history("slack:T1:D1:D1")
    assert [(t.role, t.feedback) for t in turns] == [("user", None), ("assistant", 1)]


# -- Socket Mode ------------------------------------------------------------------------


async def test_socket_mode_acks_answers_and_dedupes_retries(make: Any, slack: FakeSlack) -> None:
    harness = await make()
    handler = harness.adapter.socket_mode("xapp-1-test")
    await handler.connect_async()
    try:
        await slack.wait_for_socket()
        mention = sp.app_mention("emergency fund size?")
        ack = await slack.send_socket_envelope(sp.socket_envelope(mention))
        assert ack is not None and "envelope_id" in ack
        await until(harness.finals)
        retry = await slack.send_socket_envelope(sp.socket_envelope(mention, retry_attempt=1, retry_reason="timeout"))
        assert retry is not None
        command = await slack.send_socket_envelope(sp.socket_envelope(sp.slash_command("help")))
        assert command is not None and "reindex [path]" in command["payload"]["text"]
        await settle(harness)
        assert len(harness.finals()) == 1 and len(harness.posts()) == 1
    finally:
        await handler.close_async()


async def test_an_engine_failure_replaces_the_placeholder(make: Any, tmp_path: Path) -> None:
    harness = await make()
    await harness.adapter.engine.memory.close()  # memory unusable: the engine cannot answer
    await harness.post(sp.dm_message("emergency fund size?"))
    (update,) = await until(lambda: harness.posts("chat.update"))
    assert update["text"].startswith("Sorry, something went wrong on my side")


async def test_the_crisis_protocol_alerts_the_admin_channel_without_the_message(make: Any, configure: Any) -> None:
    configure(ADVISOR_SAFETY_ALERT_CHANNEL="discord:123,slack:CALERTS")
    harness = await make()
    await harness.post(sp.app_mention("How big should my emergency fund be?"))
    await until(harness.finals)
    await harness.post(sp.app_mention("I want to kill myself tonight", ts="1700000100.000200"))
    (alert,) = await until(lambda: [p for p in harness.posts() if p["channel"] == "CALERTS"])
    assert "crisis protocol answered" in alert["text"] and "<#C1>" in alert["text"] and "U" in alert["text"]
    assert "kill" not in alert["text"]
    await settle(harness)
    assert len([p for p in harness.posts() if p["channel"] == "CALERTS"]) == 1  # the ordinary question: none


async def test_socket_mode_survives_malformed_envelopes(make: Any, slack: FakeSlack) -> None:
    harness = await make()
    handler = harness.adapter.socket_mode("xapp-1-test")
    await handler.connect_async()
    try:
        await slack.wait_for_socket()
        for frame in (
            {"type": "events_api", "envelope_id": "e1", "payload": "not an object"},
            {"type": "events_api", "envelope_id": "e2", "payload": {"type": "event_callback", "event": "x"}},
            {"type": "something_new", "envelope_id": "e3"},
            {"no": "type"},
        ):
            await slack.send_socket_message(frame)
        assert await slack.send_socket_envelope(sp.socket_envelope(sp.app_mention("emergency fund size?"))) is not None
        await until(harness.finals)  # still connected and answering
        assert len(harness.posts()) == 1
    finally:
        await handler.close_async()
