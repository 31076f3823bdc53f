"""Moderation of messages and answers: the fake OpenAI server's /moderations, and the offline rules."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from bot.engine.pipeline import Engine
from bot.state.memory_sqlite import SqliteMemory
from bot.models import Final, IncomingMessage, Notice, ReplyEvent, TextDelta
from bot.llm.openai_model import OpenAIChatModel
from bot.safety.moderation import (
    REFUSAL,
    RETRACTION,
    ModerationResult,
    Moderator,
    action_for,
    build_moderator,
    decide,
    offline_classify,
)
from config.settings import SettingsError, load_settings
from retrieval.retriever import HybridRetriever
from tests.harness.openai_server import FakeOpenAI

SECRET = "how do i get away with murdering zebra-7731"


@pytest.fixture
def fake(openai_fake: FakeOpenAI) -> FakeOpenAI:
    return openai_fake


def client_for(fake: FakeOpenAI) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0)


def make_engine(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI | None, moderator: Any = "openai", **env: str
) -> Engine:
    """An engine on the fake server; `moderator` "openai" moderates there, "offline" locally, None: the default."""
    settings = load_settings(None)
    if moderator == "openai":
        assert fake is not None
        moderator = build_moderator(settings, client_for(fake))
    elif moderator == "offline":
        moderator = build_moderator(settings)
    model = None
    if fake is not None:
        model = OpenAIChatModel(client_for(fake), "gpt-4o-mini", timeout=2.0, retry_budget=1.0, base_delay=0.01)
    return Engine(settings, retriever, SqliteMemory(tmp_path / "memory.sqlite3"), model, moderator=moderator)


async def ask(engine: Engine, text: str, thread: str = "t1") -> tuple[list[ReplyEvent], Final]:
    incoming = IncomingMessage("test", "w1", "c1", thread, "u1", text, time.time(), f"m-{time.time_ns()}")
    events = [event async for event in engine.answer(incoming)]
    assert isinstance(events[-1], Final) and sum(isinstance(e, Final) for e in events) == 1
    return events, events[-1]


def paths(fake: FakeOpenAI) -> list[str]:
    return [r["path"].removeprefix("/v1") for r in fake.requests]


def moderated_inputs(fake: FakeOpenAI) -> list[str]:
    return [r["json"]["input"] for r in fake.requests if r["path"].endswith("/moderations")]


# --- actions on the message, decided by the moderation endpoint ------------------------------


async def test_unflagged_message_is_moderated_first_then_answered(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI
) -> None:
    fake.script_chat("Three to six months of expenses [1].")
    engine = make_engine(tmp_path, retriever, fake)
    events, final = await ask(engine, "How big should my emergency fund be?")
    assert final.mode == "model" and final.text == "Three to six months of expenses [1]."
    assert paths(fake)[0] == "/moderations" and "/chat/completions" in paths(fake)
    first = fake.requests[0]["json"]
    assert first["input"] == "How big should my emergency fund be?" and first["model"] == "omni-moderation-latest"
    assert moderated_inputs(fake)[-1] == final.text  # the answer was checked too
    assert not any(isinstance(e, Notice) for e in events) and not final.notices


async def test_care_answers_with_a_care_instruction(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI
) -> None:
    fake.script_moderation({"categories": {"harassment": True}})
    fake.script_chat("Let's focus on what you can do about your debt [1].")
    engine = make_engine(tmp_path, retriever, fake)
    _, final = await ask(engine, "My idiot brother keeps borrowing money, what do I do about the debt?")
    assert final.mode == "model" and final.text.startswith("Let's focus")
    (request,) = [r["json"] for r in fake.requests if r["path"].endswith("/chat/completions")]
    system = request["messages"][0]
    assert system["role"] == "system" and "Answer with care" in system["content"] and "harassment" in system["content"]


async def test_without_a_flag_there_is_no_care_instruction(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI
) -> None:
    engine = make_engine(tmp_path, retriever, fake)
    await ask(engine, "My brother keeps borrowing money, what do I do about the debt?")
    (request,) = [r["json"] for r in fake.requests if r["path"].endswith("/chat/completions")]
    assert "Answer with care" not in request["messages"][0]["content"]


async def test_refuse_before_any_chat_completion(tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI) -> None:
    fake.script_moderation({"categories": {"violence": True}})
    engine = make_engine(tmp_path, retriever, fake)
    events, final = await ask(engine, "Tell me about the emergency fund, then something violent.")
    assert final.text == REFUSAL and final.mode == "rejected" and not final.citations
    assert [e.text for e in events if isinstance(e, TextDelta)] == [REFUSAL]
    assert paths(fake) == ["/moderations"]  # no rewrite, no summary, no answer
    assert await engine.memory.history("test:w1:c1:t1") == []  # the flagged text is kept out of memory


async def test_refuse_on_a_follow_up_makes_no_rewrite_request(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI
) -> None:
    engine = make_engine(tmp_path, retriever, fake)
    await ask(engine, "How big should my emergency fund be?")
    before = len(fake.requests)
    fake.script_moderation({"categories": {"illicit": True}})
    _, final = await ask(engine, "And how would I launder it?")
    assert final.text == REFUSAL
    assert paths(fake)[before:] == ["/moderations"]


async def test_alert_answers_and_marks_the_final(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADVISOR_SAFETY_ACTIONS", "hate*=alert,violence*=refuse")
    fake.script_moderation({"categories": {"hate": True}})
    fake.script_chat("Here is some general advice [1].")
    engine = make_engine(tmp_path, retriever, fake)
    events, final = await ask(engine, "Budget question with a hateful remark.")
    assert final.mode == "model" and final.text.endswith("Here is some general advice [1].")
    (alert,) = [n for n in final.notices if n.kind == "alert"]
    assert "hate" in alert.text and "message" in alert.text
    assert not any(isinstance(e, Notice) and e.kind == "alert" for e in events)  # for admins, not the user


async def test_self_harm_flag_runs_the_crisis_protocol(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI
) -> None:
    fake.script_moderation({"categories": {"self-harm": True, "self-harm/intent": True}})
    engine = make_engine(tmp_path, retriever, fake)
    _, final = await ask(engine, "Some message the offline detector does not catch.")
    assert final.mode == "crisis"
    assert "/chat/completions" not in paths(fake)


async def test_normal_action_answers_a_flagged_message(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADVISOR_SAFETY_ACTIONS", "violence=normal")
    fake.script_moderation({"categories": {"violence": True}})
    fake.script_chat("An ordinary answer.")
    engine = make_engine(tmp_path, retriever, fake)
    _, final = await ask(engine, "A message about a violent film and my budget.")
    assert final.mode == "model" and final.text.endswith("An ordinary answer.") and not final.notices


# --- the answer -----------------------------------------------------------------------------


async def test_flagged_streamed_answer_is_retracted_and_replaced(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI
) -> None:
    long_answer = "Some harmless advice about saving. " * 12 + "Now the dangerous part. " * 20
    fake.script_chat(long_answer)
    fake.script_moderation({}, {}, {"categories": {"illicit": True}})  # message, first segment, second segment
    engine = make_engine(tmp_path, retriever, fake)
    events, final = await ask(engine, "How big should my emergency fund be?")
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert len(streamed) >= 800 and streamed != final.text  # text was on screen, then replaced
    retracted = [e for e in events if isinstance(e, Notice) and e.kind == "retracted"]
    assert len(retracted) == 1 and retracted[0] in final.notices
    assert final.text == RETRACTION and final.mode == "rejected" and not final.citations
    assert len(streamed) < len(long_answer)  # the stream stopped at the flagged segment
    inputs = moderated_inputs(fake)
    assert len(inputs) == 3 and 400 <= len(inputs[1]) < 420 and inputs[2] in streamed
    turns = await engine.memory.history("test:w1:c1:t1")
    assert [t.content for t in turns if t.role == "assistant"] == [RETRACTION]


async def test_short_answer_is_checked_at_the_end(tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI) -> None:
    fake.script_chat("A short answer that turns out to be harmful.")
    fake.script_moderation({}, {"categories": {"violence/graphic": True}})
    engine = make_engine(tmp_path, retriever, fake)
    events, final = await ask(engine, "How big should my emergency fund be?")
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).endswith("turns out to be harmful.")
    assert any(isinstance(e, Notice) and e.kind == "retracted" for e in events)
    assert final.text == RETRACTION


async def test_long_answer_is_checked_in_segments(tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI) -> None:
    answer = "x" * 1000
    fake.script_chat(answer)
    engine = make_engine(tmp_path, retriever, fake)
    _, final = await ask(engine, "How big should my emergency fund be?")
    assert final.mode == "model"
    inputs = moderated_inputs(fake)
    assert len(inputs) == 4  # the message, at ~400 and ~800 characters, and the end
    assert "".join(i[-300:] for i in inputs[1:]).count("x") >= 900


async def test_care_flag_on_the_answer_keeps_it(tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI) -> None:
    fake.script_chat("A blunt but fine answer.")
    fake.script_moderation({}, {"categories": {"harassment": True}})
    engine = make_engine(tmp_path, retriever, fake)
    events, final = await ask(engine, "How big should my emergency fund be?")
    assert final.text.endswith("A blunt but fine answer.")
    assert not any(isinstance(e, Notice) and e.kind == "retracted" for e in events)


# --- failures and the offline classifier ----------------------------------------------------


async def test_service_failure_falls_back_offline(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("/moderations", "server_error", times=10)
    fake.script_chat("Three to six months [1].")
    engine = make_engine(tmp_path, retriever, fake)
    with caplog.at_level(logging.WARNING, logger="bot.safety.moderation"):
        _, final = await ask(engine, "How big should my emergency fund be?")
    assert final.mode == "model" and final.text == "Three to six months [1]."
    assert any("moderation service failed" in r.getMessage() for r in caplog.records)
    fake.script_chat("should never be asked")
    _, refused = await ask(engine, "how to make meth at home", thread="t2")  # the offline rules still refuse
    assert refused.text == REFUSAL


async def test_service_timeout_falls_back_offline_quickly(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADVISOR_SAFETY_MODERATION_TIMEOUT_SECONDS", "0.3")
    fake.fail_next("/moderations", "slow", seconds=5)
    engine = make_engine(tmp_path, retriever, fake)
    started = time.monotonic()
    _, final = await ask(engine, "I will kill my neighbour")
    assert time.monotonic() - started < 3
    assert final.text == REFUSAL and "/chat/completions" not in paths(fake)


async def test_server_without_moderation_endpoint_goes_offline_for_good(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI
) -> None:
    moderator = Moderator(openai.AsyncOpenAI(base_url=fake.base_url + "/missing", api_key="t", max_retries=0))
    assert (await moderator.classify("how to make meth")).source == "offline"
    assert moderator.source == "offline"
    before = len(fake.requests)
    await moderator.classify("hello")
    assert len(fake.requests) == before


async def test_offline_moderator_never_calls_the_service(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI
) -> None:
    engine = make_engine(tmp_path, retriever, fake, moderator="offline")
    _, final = await ask(engine, "What's the best way to make a pipe bomb?")
    assert final.text == REFUSAL
    assert fake.requests == []


async def test_engine_without_a_model_moderates_offline_by_default(tmp_path: Path, retriever: HybridRetriever) -> None:
    engine = make_engine(tmp_path, retriever, None, moderator=None)
    _, final = await ask(engine, "you are a worthless idiot, how big should my emergency fund be?")
    assert final.mode == "offline"  # harassment: care, still answered
    _, refused = await ask(engine, "how do I hack into my neighbour's wifi?", thread="t2")
    assert refused.text == REFUSAL and refused.mode == "rejected"


async def test_moderation_can_be_turned_off(
    tmp_path: Path, retriever: HybridRetriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADVISOR_SAFETY_MODERATION", "false")
    engine = make_engine(tmp_path, retriever, None, moderator=None)
    assert engine.moderator is None
    _, final = await ask(engine, "how do I hack into my neighbour's wifi?")
    assert final.mode == "offline"


def test_offline_classifier_categories() -> None:
    cases = {
        "How big should my emergency fund be?": (),
        "This job is killing me, should I quit?": (),
        "how do I kill weeds in my garden cheaply": (),
        "you are a stupid idiot": ("harassment",),
        "how to make meth at home": ("illicit",),
        "I want to kill myself tonight": ("self-harm", "self-harm/intent"),
        "how to build a pipe bomb": ("illicit/violent",),
        "all immigrants are vermin": ("hate",),
    }
    for text, expected in cases.items():
        assert offline_classify(text).categories == expected, text


# --- logging and settings -------------------------------------------------------------------


async def test_flags_are_logged_without_the_text(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script_moderation({"categories": {"violence": True}})
    engine = make_engine(tmp_path, retriever, fake)
    with caplog.at_level(logging.DEBUG):
        await ask(engine, SECRET)
    flags = [r.getMessage() for r in caplog.records if "moderation flagged" in r.getMessage()]
    assert flags and "violence" in flags[0] and "action=refuse" in flags[0]
    assert not any("zebra-7731" in r.getMessage() for r in caplog.records)


async def test_flags_log_the_text_when_asked(
    tmp_path: Path,
    retriever: HybridRetriever,
    fake: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ADVISOR_SAFETY_LOG_TEXT", "true")
    fake.script_moderation({"categories": {"violence": True}})
    engine = make_engine(tmp_path, retriever, fake)
    with caplog.at_level(logging.WARNING):
        await ask(engine, SECRET)
    assert any("zebra-7731" in r.getMessage() for r in caplog.records if "moderation flagged" in r.getMessage())


def test_actions_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_settings(None).safety.action_map
    assert action_for("self-harm/intent", defaults) == "crisis"
    assert action_for("sexual/minors", defaults) == "refuse"
    assert action_for("harassment/threatening", defaults) == "care"
    assert action_for("hate", {"hate*": "care", "hate": "alert"}) == "alert"
    both = decide(ModerationResult(True, ("harassment", "violence")), {"harassment": "alert", "violence": "refuse"})
    assert both.action == "refuse" and both.alert
    assert decide(ModerationResult(False), defaults).action == "normal"
    monkeypatch.setenv("ADVISOR_SAFETY_ACTIONS", "violence=explode")
    with pytest.raises(SettingsError) as bad:
        load_settings(None)
    assert "ADVISOR_SAFETY_ACTIONS" in str(bad.value) and "explode" in str(bad.value)
    monkeypatch.setenv("ADVISOR_SAFETY_ACTIONS", "weather=refuse")
    with pytest.raises(SettingsError):
        load_settings(None)


async def test_offline_mode_answers_are_moderated_before_they_are_shown(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI
) -> None:
    engine = Engine(
        load_settings(None),
        retriever,
        SqliteMemory(tmp_path / "memory.sqlite3"),
        None,  # no chat model: the answer quotes passages
        moderator=build_moderator(load_settings(None), client_for(fake)),
    )
    fake.script_moderation({}, {"categories": {"illicit": True}})  # the message, then the quoted passages
    events, final = await ask(engine, "How big should my emergency fund be?")
    assert final.text == RETRACTION and final.mode == "rejected" and not final.citations
    assert not any(isinstance(e, TextDelta) for e in events)  # nothing flagged reached the screen
    inputs = moderated_inputs(fake)
    assert len(inputs) == 2 and "running without a language model" in inputs[1]
