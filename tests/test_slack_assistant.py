"""The Slack assistant surface (adapters/slack/assistant.py) through its public doors: the real bolt app
served over HTTP with signed requests, the real slack_sdk client against the fake Slack (strict about
assistant.threads.* arguments, scopes and threads), the real engine, and `advisor simulate slack`."""

from __future__ import annotations

import asyncio
import logging
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.assistant import GREETING, LOADING_MESSAGES, PROMPTS_TITLE, STATUS, thread_title
from bot.cli import main
from config.settings import DEFAULT_ASSISTANT_PROMPTS, SettingsError, load_settings, parse_assistant_prompts
from tests.harness import slack_payloads as sp
from tests.harness.openai_server import FakeOpenAI
from tests.harness.slack_api import FakeSlack
from tests.harness.stack import SlackDoor, Stack, until

SECRET = "test-signing-secret"
CASES = Path(__file__).resolve().parents[1] / "adapters" / "simulate" / "cases" / "slack-assistant"


@pytest.fixture
def configure(setenv: Callable[..., None], kb_dir: Path) -> Callable[..., None]:
    def apply(**env: str) -> None:
        setenv(SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET=SECRET, ADVISOR_KNOWLEDGE_PATHS=str(kb_dir))
        setenv(**env)

    apply()
    return apply


@pytest.fixture
def make(stack: Stack, slack: FakeSlack, openai_fake: FakeOpenAI, configure: Any) -> Callable[..., Any]:
    async def build(model: bool = False) -> SlackDoor:
        settings = load_settings(None)
        engine = stack.engine(settings, stack.chat_model(openai_fake) if model else None)
        return await stack.slack_door(engine, settings, slack, SECRET, update_interval=0.05)

    return build


def thread_of(body: dict[str, Any]) -> tuple[str, str]:
    thread = body["event"]["assistant_thread"]
    return thread["channel_id"], thread["thread_ts"]


def calls(slack: FakeSlack, method: str) -> list[dict[str, Any]]:
    return [call["args"] for call in slack.calls_to(method)]


def answers_in(harness: SlackDoor, thread_ts: str) -> list[dict[str, Any]]:
    return [a for a in harness.finals() if a.get("thread_ts", thread_ts) == thread_ts]


# -- greeting ---------------------------------------------------------------------------------------------


async def test_a_new_thread_is_greeted_with_the_configured_prompts(make: Any, configure: Any, slack: FakeSlack) -> None:
    prompts = [{"title": "Emergency fund", "message": "How big should my emergency fund be?"}, "Which debt first?"]
    configure(ADVISOR_SLACK_ASSISTANT_PROMPTS=json.dumps(prompts))
    harness = await make()
    started = slack.open_assistant_thread()
    channel, thread_ts = thread_of(started)
    status, _ = await harness.post(started)
    assert status == 200
    await until(lambda: slack.assistant_thread(channel, thread_ts).prompts)
    seen = slack.assistant_thread(channel, thread_ts)
    assert seen.prompts == [prompts[0], {"title": "Which debt first?", "message": "Which debt first?"}]
    assert seen.prompts_title == PROMPTS_TITLE
    (greeting,) = harness.posts()
    assert (greeting["channel"], greeting["thread_ts"], greeting["text"]) == (channel, thread_ts, GREETING)
    assert seen.statuses == [] and seen.title == ""  # nothing asked yet


async def test_the_default_prompts_are_the_sample_knowledge_base_questions(make: Any, slack: FakeSlack) -> None:
    harness = await make()
    started = slack.open_assistant_thread()
    await harness.post(started)
    (call,) = await until(lambda: calls(slack, "assistant.threads.setSuggestedPrompts"))
    assert call["prompts"] == parse_assistant_prompts(DEFAULT_ASSISTANT_PROMPTS)
    assert len(call["prompts"]) == 4 and call["thread_ts"] == thread_of(started)[1]


async def test_a_redelivered_thread_start_greets_once(make: Any, slack: FakeSlack) -> None:
    harness = await make()
    started = slack.open_assistant_thread()
    await harness.post(started)
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    await harness.post(started, headers=retry)
    await harness.post({**started, "event_id": sp.new_event_id()})  # the same thread, another envelope
    await until(lambda: len(harness.adapter.ignored) == 2)
    assert len(calls(slack, "assistant.threads.setSuggestedPrompts")) == 1 and len(harness.posts()) == 1


# -- answers --------------------------------------------------------------------------------------------------


async def test_a_question_is_answered_in_the_thread_with_status_and_title(make: Any, slack: FakeSlack) -> None:
    harness = await make()
    started = slack.open_assistant_thread()
    channel, thread_ts = thread_of(started)
    await harness.post(started)
    await until(lambda: calls(slack, "assistant.threads.setSuggestedPrompts"))
    question = "How big should my emergency fund be? My token is xoxb-123-456 and card 4111 1111 1111 1111"
    await harness.post(sp.assistant_message(question, thread_ts))
    (answer,) = await until(lambda: answers_in(harness, thread_ts))
    assert "three to six months" in answer["text"] and answer["channel"] == channel
    await until(lambda: len(calls(slack, "assistant.threads.setStatus")) == 2)
    first, last = calls(slack, "assistant.threads.setStatus")
    assert (first["status"], first["loading_messages"], last["status"]) == (STATUS, LOADING_MESSAGES, "")
    assert first["thread_ts"] == last["thread_ts"] == thread_ts and first["channel_id"] == channel
    # the status goes up before the answer's first post and is cleared after its last write
    order = [c["method"] for c in slack.calls if c["method"].startswith(("chat.", "assistant.threads.setStatus"))]
    answer_writes = [i for i, m in enumerate(order) if m.startswith("chat.")][1:]  # [0] is the greeting
    assert order.index("assistant.threads.setStatus") < answer_writes[0]
    assert len(order) - 1 - order[::-1].index("assistant.threads.setStatus") > answer_writes[-1]
    seen = slack.assistant_thread(channel, thread_ts)
    assert seen.status == "" and seen.title == thread_title(question)
    assert seen.title.startswith("How big should my emergency fund be?")
    assert "xoxb" not in seen.title and "4111" not in seen.title


async def test_the_thread_is_one_conversation_across_turns(make: Any, slack: FakeSlack, openai_fake: FakeOpenAI) -> None:
    harness = await make(model=True)
    started = slack.open_assistant_thread()
    channel, thread_ts = thread_of(started)
    await harness.post(started)
    await harness.post(sp.assistant_message("How big should my emergency fund be?", thread_ts))
    await until(lambda: answers_in(harness, thread_ts))
    await harness.post(sp.assistant_message("And where should I keep it?", thread_ts))
    await until(lambda: len(answers_in(harness, thread_ts)) == 2)
    conversation = f"slack:T1:{channel}:{thread_ts}"
    turns = await harness.adapter.engine.memory.history(conversation)
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"]
    chats = [r["json"] for r in openai_fake.requests if r["path"].endswith("/chat/completions")]
    assert "How big should my emergency fund be?" in json.dumps(chats[-1]["messages"])  # the first turn, remembered
    assert len(calls(slack, "assistant.threads.setTitle")) == 1  # titled from the first question only
    assert slack.assistant_thread(channel, thread_ts).title == "How big should my emergency fund be?"
    await until(lambda: len(calls(slack, "assistant.threads.setStatus")) == 4)  # set and cleared each turn
    assert [c["status"] for c in calls(slack, "assistant.threads.setStatus")] == [STATUS, "", STATUS, ""]


async def test_a_redelivered_question_is_answered_once(make: Any, slack: FakeSlack) -> None:
    harness = await make()
    started = slack.open_assistant_thread()
    _, thread_ts = thread_of(started)
    await harness.post(started)
    question = sp.assistant_message("Which debt should I pay off first?", thread_ts)
    await asyncio.gather(*(harness.post(question, headers={"X-Slack-Retry-Num": str(n)}) for n in range(3)))
    await until(lambda: answers_in(harness, thread_ts))
    await asyncio.sleep(0.5)
    assert len(answers_in(harness, thread_ts)) == 1 and len(calls(slack, "assistant.threads.setTitle")) == 1


async def test_an_ordinary_dm_thread_gets_no_assistant_calls(make: Any, slack: FakeSlack) -> None:
    harness = await make()
    await harness.post(sp.dm_message("emergency fund size?", thread_ts="1700000000.000001"))
    await until(harness.finals)
    assert [c for c in slack.calls if c["method"].startswith("assistant.")] == []
    assert harness.posts()[0]["text"] == "_Thinking…_"  # a DM keeps its placeholder


@pytest.mark.parametrize(
    ("kind", "options"),
    [("error", {"error": "invalid_thread_ts"}), ("server_error", {}), ("rate_limited", {"retry_after": 30})],
    ids=["refused", "5xx", "429"],
)
async def test_a_failing_status_never_costs_the_answer(make: Any, slack: FakeSlack, kind: str, options: dict[str, Any]) -> None:
    harness = await make()
    started = slack.open_assistant_thread()
    _, thread_ts = thread_of(started)
    await harness.post(started)
    slack.fail_next("assistant.threads.setStatus", kind, times=2, **options)  # setting it and clearing it
    slack.fail_next("assistant.threads.setTitle", kind, **options)
    began = time.monotonic()
    await harness.post(sp.assistant_message("How big should my emergency fund be?", thread_ts))
    (answer,) = await until(lambda: answers_in(harness, thread_ts))
    assert "three to six months" in answer["text"]
    assert time.monotonic() - began < 10  # a 429 on the status is not waited out (Retry-After 30 s)
    await until(lambda: len(calls(slack, "assistant.threads.setStatus")) == 2)
    assert len(calls(slack, "assistant.threads.setStatus")) == 2  # tried once each: no retries


async def test_without_assistant_write_the_answer_still_comes(make: Any, slack: FakeSlack) -> None:
    slack.scopes.discard("assistant:write")
    harness = await make()
    started = slack.open_assistant_thread()
    channel, thread_ts = thread_of(started)
    await harness.post(started)
    await harness.post(sp.assistant_message("How big should my emergency fund be?", thread_ts))
    await until(lambda: answers_in(harness, thread_ts))
    seen = slack.assistant_thread(channel, thread_ts)
    assert seen.prompts == [] and seen.title == ""  # refused: missing_scope
    assert seen.statuses[0] == STATUS  # setStatus takes chat:write too


async def test_engine_failure_clears_the_status_and_says_sorry(make: Any, slack: FakeSlack) -> None:
    harness = await make()
    started = slack.open_assistant_thread()
    channel, thread_ts = thread_of(started)
    await harness.post(started)
    await until(lambda: calls(slack, "assistant.threads.setSuggestedPrompts"))

    async def broken(message: Any) -> Any:
        raise RuntimeError("boom")
        yield  # pragma: no cover

    harness.adapter.engine.answer = broken  # type: ignore[method-assign]
    await harness.post(sp.assistant_message("emergency fund?", thread_ts))
    sorry = await until(lambda: [p for p in harness.posts() if p["text"].startswith("Sorry, something went wrong")])
    assert sorry[0]["thread_ts"] == thread_ts
    await until(lambda: slack.assistant_thread(channel, thread_ts).statuses[-1:] == [""])


# -- context ----------------------------------------------------------------------------------------------------


async def test_the_channel_the_user_views_is_kept_per_thread(make: Any, configure: Any, slack: FakeSlack) -> None:
    configure(ADVISOR_SAFETY_ALERT_CHANNEL="slack:CALERTS")
    harness = await make()
    started = slack.open_assistant_thread(context_channel="C1")
    channel, thread_ts = thread_of(started)
    other = slack.open_assistant_thread(context_channel="C9")
    await harness.post(started)
    await harness.post(other)
    assert harness.adapter.assistant.contexts.viewing(channel, thread_ts) == "C1"
    status, _ = await harness.post(sp.assistant_thread_context_changed(thread_ts, "C2"))
    assert status == 200
    await until(lambda: harness.adapter.assistant.contexts.viewing(channel, thread_ts) == "C2")
    assert harness.adapter.assistant.contexts.viewing(*thread_of(other)) == "C9"  # the other thread's own
    assert f"assistant thread {thread_ts} context kept: viewing C2" in harness.adapter.ignored
    # it says where an admin alert came from (the user's words stay out of it)
    await harness.post(sp.assistant_message("I want to kill myself tonight", thread_ts))
    (alert,) = await until(lambda: [p for p in harness.posts() if p["channel"] == "CALERTS"])
    assert "viewing <#C2>" in alert["text"] and f"<#{channel}>" in alert["text"] and "kill" not in alert["text"]


# -- settings ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a?|b?|c?|d?|e?", "expected 1 to 4 prompts"),
        (json.dumps(["a?"] * 5), "expected 1 to 4 prompts"),
        ("", "expected 1 to 4 prompts"),
        ("a?||c?", "prompt 2 is empty"),
        ("a?|   ", "prompt 2 is empty"),
        (json.dumps([{"title": "Funds", "message": " "}]), "prompt 1 is empty"),
        (json.dumps([{"title": "Funds", "text": "x"}]), "prompt 1: expected a question or an object"),
        ("[not json", "not a valid JSON list"),
    ],
    ids=["five", "five-json", "none", "empty", "blank", "empty-message", "bad-key", "bad-json"],
)
def test_bad_prompt_settings_are_clear_config_errors(setenv: Callable[..., None], value: str, problem: str) -> None:
    setenv(ADVISOR_SLACK_ASSISTANT_PROMPTS=value)
    with pytest.raises(SettingsError) as caught:
        load_settings(None)
    (found,) = caught.value.problems
    assert found.variable == "ADVISOR_SLACK_ASSISTANT_PROMPTS" and problem in found.message, found


def test_prompt_settings_take_questions_or_titled_objects(setenv: Callable[..., None]) -> None:
    setenv(ADVISOR_SLACK_ASSISTANT_PROMPTS=" Budgets? | Debts, which first? ")
    assert load_settings(None).slack.suggested_prompts == [
        {"title": "Budgets?", "message": "Budgets?"},
        {"title": "Debts, which first?", "message": "Debts, which first?"},
    ]


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("  How big should\nmy emergency fund be?  ", "How big should my emergency fund be?"),
        ("<@UBOT> my key sk-abc123DEF and mail me@example.com, which debt first?", "my key and mail , which debt first?"),
        ("x" * 80, "x" * 59 + "…"),
        ("word " * 20, "word word word word word word word word word word word…"),
        ("xoxb-1-2 https://example.com", ""),
    ],
)
def test_titles_are_trimmed_and_keep_no_secrets(question: str, title: str) -> None:
    assert thread_title(question) == title


# -- the fake's assistant.threads.* (real slack_sdk client) ----------------------------------------------------


async def test_the_fake_checks_assistant_arguments_as_documented(slack: FakeSlack) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
    _, thread_ts = thread_of(slack.open_assistant_thread())

    async def error(call: Any) -> dict[str, Any]:
        with pytest.raises(SlackApiError) as caught:
            await call
        return dict(caught.value.response.data)

    prompt = {"title": "t", "message": "m"}
    five = client.assistant_threads_setSuggestedPrompts(channel_id="D1", thread_ts=thread_ts, prompts=[prompt] * 5)
    assert (await error(five))["error"] == "invalid_arguments"
    shapeless = client.assistant_threads_setSuggestedPrompts(channel_id="D1", thread_ts=thread_ts, prompts=[{"title": "t"}])
    assert (await error(shapeless))["error"] == "invalid_arguments"
    wrong_thread = client.assistant_threads_setStatus(channel_id="D1", thread_ts="1.000001", status=STATUS)
    assert (await error(wrong_thread))["error"] == "invalid_thread_ts"
    wrong_channel = client.assistant_threads_setTitle(channel_id="DNOPE", thread_ts=thread_ts, title="x")
    assert (await error(wrong_channel))["error"] == "channel_not_found"
    no_title = client.assistant_threads_setTitle(channel_id="D1", thread_ts=thread_ts, title="  ")
    assert (await error(no_title))["error"] == "invalid_arguments"
    chatty = client.assistant_threads_setStatus(channel_id="D1", thread_ts=thread_ts, status="s", loading_messages=["x"] * 11)
    assert (await error(chatty))["error"] == "invalid_arguments"
    await client.assistant_threads_setSuggestedPrompts(channel_id="D1", thread_ts=thread_ts, prompts=[prompt] * 4)
    await client.assistant_threads_setStatus(channel_id="D1", thread_ts=thread_ts, status=STATUS, loading_messages=["a"] * 10)
    assert slack.assistant_thread("D1", thread_ts).status == STATUS
    await client.chat_postMessage(channel="D1", thread_ts=thread_ts, text="the answer")
    assert slack.assistant_thread("D1", thread_ts).status == ""  # posting in the thread takes it away
    slack.scopes = {"chat:write"}
    refused = await error(client.assistant_threads_setTitle(channel_id="D1", thread_ts=thread_ts, title="x"))
    assert (refused["error"], refused["needed"]) == ("missing_scope", "assistant:write") and "chat:write" in refused["provided"]
    await client.assistant_threads_setStatus(channel_id="D1", thread_ts=thread_ts, status="")  # chat:write suffices
    slack.scopes = set()
    assert (await error(client.assistant_threads_setStatus(channel_id="D1", thread_ts=thread_ts, status="")))["error"] == "missing_scope"


async def test_the_fake_limits_titles_and_prompts_at_tier_4() -> None:
    async with FakeSlack(strict=True, time_scale=0.02) as slack:  # a minute lasts 1.2 s
        client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
        _, thread_ts = thread_of(slack.open_assistant_thread())
        for _ in range(100):
            await client.assistant_threads_setTitle(channel_id="D1", thread_ts=thread_ts, title="x")
        with pytest.raises(SlackApiError) as caught:
            await client.assistant_threads_setTitle(channel_id="D1", thread_ts=thread_ts, title="x")
        assert caught.value.response.status_code == 429
        assert [e["method"] for e in slack.limited] == ["assistant.threads.setTitle"]


# -- advisor simulate slack --------------------------------------------------------------------------------------


def test_simulate_plays_an_assistant_thread(kb_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The bundled cases: the thread opens (greeting, prompts), the user looks at another channel, asks the
    first default prompt (status, title, answer from the sample knowledge base, status cleared), then again."""
    sample = Path(__file__).resolve().parents[1] / "retrieval" / "sample_kb"
    assert main(["ingest", str(sample)]) == 0
    capsys.readouterr()
    files = sorted(CASES.glob("*.json"))
    assert [f.name for f in files] == ["1-started.json", "2-context-changed.json", "3-question.json", "4-follow-up.json", "5-started-again.json"]
    assert main(["simulate", "slack", *map(str, files)]) == 0
    by_file: dict[str, list[dict[str, Any]]] = {}
    for line in capsys.readouterr().out.splitlines():
        record = json.loads(line)
        by_file.setdefault(Path(record["file"]).name, []).append(record)
    started = by_file["1-started.json"]
    assert [r["method"] for r in started] == ["chat.postMessage", "assistant.threads.setSuggestedPrompts"]
    assert started[1]["prompts"] == parse_assistant_prompts(DEFAULT_ASSISTANT_PROMPTS)
    assert started[1]["channel"] == "D0SIMASSIST"
    (context,) = by_file["2-context-changed.json"]
    assert context["ignored"] is True and "viewing C0SIMBUDGET" in context["reason"]
    question = by_file["3-question.json"]
    methods = [r["method"] for r in question]
    assert methods[:2] == ["assistant.threads.setTitle", "assistant.threads.setStatus"] and methods[-1] == "assistant.threads.setStatus"
    assert question[0]["title"] == "How big should my emergency fund be?"
    assert question[1]["status"] == STATUS and question[-1]["status"] == ""
    writes = [r for r in question if r["method"].startswith("chat.")]  # chat.update or native streaming
    shown = " ".join(str(r.get("text") or r.get("markdown_text") or "") for r in writes)
    assert writes and "month" in shown and "Sources: [1]" in json.dumps(writes[-1].get("blocks"))
    assert all(r["channel"] == "D0SIMASSIST" for r in writes)
    assert all(r["thread_ts"] == "1764770000.000100" for r in writes if r["method"] in {"chat.postMessage", "chat.startStream"})
    follow = [r["method"] for r in by_file["4-follow-up.json"]]
    assert "assistant.threads.setTitle" not in follow and follow.count("assistant.threads.setStatus") == 2
    (again,) = by_file["5-started-again.json"]  # a redelivery of the start: no second greeting
    assert again["ignored"] is True and "duplicate delivery of assistant thread" in again["reason"]


def test_the_manifest_declares_the_assistant_surface() -> None:
    """deploy/slack-manifest.yaml: assistant_view with the default prompts, the scope and the events."""
    import yaml

    manifest = yaml.safe_load((Path(__file__).resolve().parents[1] / "deploy" / "slack-manifest.yaml").read_text())
    view = manifest["features"]["assistant_view"]
    assert view["assistant_description"].strip()
    assert view["suggested_prompts"] == parse_assistant_prompts(DEFAULT_ASSISTANT_PROMPTS)
    assert "assistant:write" in manifest["oauth_config"]["scopes"]["bot"]
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    assert {"assistant_thread_started", "assistant_thread_context_changed", "message.im"} <= set(events)


async def test_a_strict_exchange_acks_in_time_and_logs_no_user_text(
    stack: Stack, configure: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Against the strict fake (rate limits on, Slack's 3 s ack deadline and redeliveries), every logger at
    DEBUG through a thread's start, a context change, two questions (one over Socket Mode) and a
    refused status: each delivery acked in time, once, and the user's words in no record."""
    secret_words = "Quokka-zebra-4711"
    caplog.set_level(logging.DEBUG)
    async with FakeSlack(strict=True) as strict:
        settings = load_settings(None)
        harness = await stack.slack_door(stack.engine(settings), settings, strict, SECRET, update_interval=0.05)
        started = strict.open_assistant_thread()
        channel, thread_ts = thread_of(started)
        assert (await strict.deliver(harness.url, started, SECRET)).acked
        changed = sp.assistant_thread_context_changed(thread_ts, "C2")
        assert (await strict.deliver(harness.url, changed, SECRET)).acked
        strict.fail_next("assistant.threads.setStatus", "error", error="invalid_thread_ts")
        question = sp.assistant_message(f"{secret_words} how big should my emergency fund be?", thread_ts)
        assert (await strict.deliver(harness.url, question, SECRET)).acked
        await until(lambda: answers_in(harness, thread_ts), 20)
        handler = harness.adapter.socket_mode("xapp-1-test")
        await handler.connect_async()
        try:
            follow = sp.socket_envelope(sp.assistant_message(f"{secret_words} and where do I keep it?", thread_ts))
            assert (await strict.deliver_socket(follow)).acked
            await until(lambda: len(answers_in(harness, thread_ts)) == 2, 20)
        finally:
            await handler.close_async()
        assert all(d.retries == 0 for d in strict.deliveries)
        assert strict.assistant_thread(channel, thread_ts).title.startswith(secret_words)  # shown to the user only
        await until(lambda: strict.assistant_thread(channel, thread_ts).statuses[-1:] == [""])
    leaks = [
        (r.name, r.getMessage()[:200])
        for r in caplog.records
        if not r.name.startswith("tests.") and secret_words.lower() in f"{r.getMessage()} {r.exc_text or ''}".lower()
    ]
    assert leaks == []
    assert any(r.name.startswith("slack_bolt") for r in caplog.records)


def test_the_event_builders_have_the_documented_shapes() -> None:
    """The keys of docs.slack.dev/reference/events/assistant_thread_started (and _context_changed, the same
    assistant_thread) and of a message.im in an assistant thread as Slack delivers it."""
    for body in (sp.assistant_thread_started(), sp.assistant_thread_context_changed("1.000001", "C2")):
        event = body["event"]
        assert set(event) == {"type", "assistant_thread", "event_ts"} and body["type"] == "event_callback"
        assert set(event["assistant_thread"]) == {"user_id", "context", "channel_id", "thread_ts"}
        assert set(event["assistant_thread"]["context"]) == {"channel_id", "team_id", "enterprise_id"}
    assert sp.assistant_thread_started(context_channel=None)["event"]["assistant_thread"]["context"] == {}
    message = sp.assistant_message("hi", "1.000001")["event"]
    assert (message["channel_type"], message["thread_ts"], message["parent_user_id"]) == ("im", "1.000001", "UBOT")
    assert set(message["assistant_thread"]) == {"action_token"}
