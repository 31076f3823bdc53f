"""The two-call tone pass: a grounded draft, then a streamed rewrite that must keep its citations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_engine import ask, chat_requests, fake, make_engine, model_for  # noqa: F401  (fixture re-used)

from bot.models import Notice, TextDelta
from config.settings import load_settings

DRAFT = "Keep three to six months of essential expenses [1]. Keep it in easy-access savings [1]."
POLISHED = "A good target is three to six months of essential expenses [1], kept in easy-access savings [1]."


@pytest.fixture
def tone_settings(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("ADVISOR_TONE_PASS", "true")
    return load_settings(None)


async def test_the_rewrite_is_streamed_and_kept(tmp_path: Path, retriever: Any, fake: Any, tone_settings: Any) -> None:
    fake.script_chat(DRAFT, POLISHED)
    engine = make_engine(tmp_path, retriever, model_for(fake), settings=tone_settings)
    events, final = await ask(engine, "How big should my emergency fund be?")
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == POLISHED == final.text
    assert [c.number for c in final.citations] == [1]
    draft_call, rewrite_call = chat_requests(fake)
    assert not draft_call.get("stream") and "<reference_passages>" in draft_call["messages"][-1]["content"]
    assert rewrite_call["stream"] is True and f"<draft>\n{DRAFT}\n</draft>" == rewrite_call["messages"][-1]["content"]
    assert "Keep every fact" in rewrite_call["messages"][0]["content"]
    (turn,) = [t for t in await engine.memory.history("test:w1:c1:t1") if t.role == "assistant"]
    assert turn.content == POLISHED and turn.meta["tone_pass_draft_ms"] > 0
    assert final.usage.completion_tokens > len(POLISHED.split())  # both calls are counted


async def test_a_rewrite_that_drops_a_citation_falls_back_to_the_draft(tmp_path: Path, retriever: Any, fake: Any, tone_settings: Any) -> None:
    fake.script_chat(DRAFT, "Save three to six months of expenses in an easy-access account.")
    engine = make_engine(tmp_path, retriever, model_for(fake), settings=tone_settings)
    events, final = await ask(engine, "How big should my emergency fund be?")
    assert final.text == DRAFT and [c.number for c in final.citations] == [1]
    assert any(isinstance(e, Notice) and e.kind == "tone_fallback" for e in events)


async def test_off_by_default_one_call(tmp_path: Path, retriever: Any, fake: Any) -> None:
    fake.script_chat(DRAFT)
    engine = make_engine(tmp_path, retriever, model_for(fake), settings=load_settings(None))
    _, final = await ask(engine, "How big should my emergency fund be?")
    assert final.text == DRAFT and len(chat_requests(fake)) == 1


async def test_a_failed_draft_call_is_a_clear_error(tmp_path: Path, retriever: Any, fake: Any, tone_settings: Any) -> None:
    fake.fail_next("/chat/completions", "insufficient_quota")
    engine = make_engine(tmp_path, retriever, model_for(fake), settings=tone_settings)
    _, final = await ask(engine, "How big should my emergency fund be?")
    assert final.mode == "error" and len(chat_requests(fake)) == 1
