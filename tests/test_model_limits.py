"""What a real model server showed (issue: bounded answers, checked rewrites, strict chat
templates, honest truncation), each defect first on the fake OpenAI server made strict enough
to show it: a stream that never stops, `finish_reason: length`, a rewrite that echoes its
instructions, a template that refuses roles that do not alternate, a server without /embeddings."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from bot.cli import main
from bot.engine.pipeline import Engine
from bot.llm.layout import strict_roles
from bot.llm.openai_model import OpenAIChatModel
from bot.models import Final, IncomingMessage, Notice, ReplyEvent, TextDelta
from bot.state.memory_sqlite import SqliteMemory
from config.settings import load_settings
from retrieval.retriever import HybridRetriever
from tests.conftest import serving_in_thread
from tests.harness.loopback import LoopbackServer
from tests.harness.openai_server import FakeOpenAI


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def model_for(fake: FakeOpenAI, layout: Any = "strict") -> OpenAIChatModel:
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0)
    return OpenAIChatModel(client, "gpt-4o-mini", timeout=5.0, retry_budget=0.5, base_delay=0.01, layout=layout)


def engine(tmp_path: Path, retriever: HybridRetriever, model: Any) -> Engine:
    return Engine(load_settings(None), retriever, SqliteMemory(tmp_path / "m.sqlite3"), model)


async def ask(engine: Engine, text: str, thread: str = "t1") -> tuple[list[ReplyEvent], Final]:
    message = IncomingMessage("test", "w1", "c1", thread, "u1", text, time.time(), f"m-{time.time_ns()}")
    events = [event async for event in engine.answer(message)]
    assert isinstance(events[-1], Final)
    return events, events[-1]


def streamed(events: list[ReplyEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def stored_meta(subject: Engine, thread: str = "t1") -> dict[str, Any]:
    turns = await subject.memory.history(f"test:w1:c1:{thread}")
    return turns[-1].meta


def chat_bodies(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r["json"] for r in fake.requests if r["path"].endswith("/chat/completions")]


# --- 1. nothing bounded an answer ----------------------------------------------------------------


async def test_an_endless_stream_stops_at_the_token_budget_and_says_so(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, setenv: Any
) -> None:
    setenv(ADVISOR_ANSWER_MAX_TOKENS="40")
    fake.endless = True
    subject = engine(tmp_path, retriever, model_for(fake))
    events, final = await ask(subject, "How big should my emergency fund be?")
    assert chat_bodies(fake)[-1]["max_tokens"] == 40
    assert final.mode == "model" and "cut this answer short: it reached my length limit" in final.text
    assert [n.kind for n in final.notices].count("truncated") == 1
    assert streamed(events) == final.text
    assert (await stored_meta(subject))["truncated"] == "length"


async def test_a_stream_that_never_ends_is_cut_at_the_deadline(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, setenv: Any
) -> None:
    setenv(ADVISOR_ANSWER_MAX_TOKENS="32000", ADVISOR_ANSWER_DEADLINE_SECONDS="1.0")
    fake.endless, fake.chunk_delay = True, 0.01
    subject = engine(tmp_path, retriever, model_for(fake))
    started = time.monotonic()
    _, final = await ask(subject, "How big should my emergency fund be?")
    assert time.monotonic() - started < 5
    assert "it was taking too long" in final.text and final.usage.completion_tokens > 0  # what arrived is counted
    assert (await stored_meta(subject))["truncated"] == "deadline"


async def test_the_tone_pass_draft_has_the_budget_too(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, setenv: Any
) -> None:
    setenv(ADVISOR_TONE_PASS="true", ADVISOR_ANSWER_MAX_TOKENS="64")
    fake.script_chat("Three to six months [1].", "Three to six months of expenses [1].")
    subject = engine(tmp_path, retriever, model_for(fake))
    _, final = await ask(subject, "How big should my emergency fund be?")
    assert final.mode == "model"
    assert [body.get("max_tokens") for body in chat_bodies(fake)] == [64, 64]


# --- 4. truncation told honestly ---------------------------------------------------------------------


@pytest.mark.parametrize(("reason", "said"), [("length", "length limit")])  # content_filter: test_openai_strict.py
async def test_a_finish_reason_other_than_stop_is_shown_and_stored(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, reason: str, said: str
) -> None:
    fake.finish_reason = reason
    subject = engine(tmp_path, retriever, model_for(fake))
    _, final = await ask(subject, "How big should my emergency fund be?")
    assert said in final.text and any(n.kind == "truncated" for n in final.notices)
    assert (await stored_meta(subject))["truncated"] == reason
    _, normal = await ask(subject, "And where should I keep it?", thread="t2")  # the next answer is whole again
    assert not any(n.kind == "truncated" for n in normal.notices)


async def test_a_stream_cut_mid_answer_keeps_the_usage_of_what_arrived(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI
) -> None:
    fake.default_answer = "Keep three to six months of essential expenses in an easy-access account [1]."
    fake.fail_next("/chat/completions", "midstream_error", after_chunks=3)
    subject = engine(tmp_path, retriever, model_for(fake))
    _, final = await ask(subject, "How big should my emergency fund be?")
    assert final.mode == "error" and "stopped responding" in final.text
    assert final.usage.completion_tokens > 0 and final.usage.prompt_tokens > 0


# --- 2. the follow-up rewrite is checked ------------------------------------------------------------


@pytest.mark.parametrize(
    "rewrite",
    [
        "Rewrite the user's latest message as one standalone search query for a knowledge base",
        "Sure! Here is the query you asked for.",
        "",
    ],
)
async def test_a_rewrite_that_is_not_a_query_falls_back_to_the_rule(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, rewrite: str, caplog: pytest.LogCaptureFixture
) -> None:
    subject = engine(tmp_path, retriever, model_for(fake))
    fake.script_chat("Three to six months of expenses [1].")
    await ask(subject, "How much should I keep in an emergency fund?")
    fake.script_chat(rewrite, "In an easy-access savings account [1].")
    with caplog.at_level(logging.INFO, logger="bot.engine.search"):
        _, final = await ask(subject, "and where should I keep it?")
    meta = await stored_meta(subject)
    assert meta["query"] == "How much should I keep in an emergency fund? and where should I keep it?"
    assert final.citations  # the fallback query found the guide
    assert "the model's rewrite was not used" in caplog.text


async def test_a_good_rewrite_is_used(tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI) -> None:
    subject = engine(tmp_path, retriever, model_for(fake))
    fake.script_chat("Three to six months of expenses [1].")
    await ask(subject, "How much should I keep in an emergency fund?")
    fake.script_chat("Where should I keep my emergency fund?", "In an easy-access savings account [1].")
    await ask(subject, "and where should I keep it?")
    assert (await stored_meta(subject))["query"] == "Where should I keep my emergency fund?"


# --- 3. prompts that strict chat templates refuse ------------------------------------------------------


def test_strict_roles_merges_systems_and_alternates() -> None:
    laid = strict_roles([
        {"role": "system", "content": "persona"},
        {"role": "system", "content": "examples"},
        {"role": "assistant", "content": "an orphan answer"},
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second (the first failed)"},
        {"role": "assistant", "content": "answer"},
        {"role": "system", "content": "summary"},
        {"role": "user", "content": "latest"},
    ])
    assert laid == [
        {"role": "system", "content": "persona\n\nexamples\n\nsummary"},
        {"role": "user", "content": "first\n\nsecond (the first failed)"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "latest"},
    ]


async def test_a_strict_template_accepts_every_request_after_a_failed_turn(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI
) -> None:
    fake.strict_template = True
    old = engine(tmp_path / "old", retriever, model_for(fake, layout="multi_system"))
    fake.fail_next("/chat/completions", "server_error", times=20)
    _, failed = await ask(old, "How big should my emergency fund be?")
    assert failed.mode == "error"  # the user's turn stays in memory
    fake._faults.clear()
    _, broken = await ask(old, "And where should I keep it?")
    assert broken.mode == "error"  # today's layout: two user turns in a row, and a 400 from the template

    new = engine(tmp_path / "new", retriever, model_for(fake, layout="strict"))
    fake.fail_next("/chat/completions", "server_error", times=20)
    await ask(new, "How big should my emergency fund be?")
    fake._faults.clear()
    fake.script_chat("Where to keep an emergency fund", "In an easy-access savings account [1].")
    _, fixed = await ask(new, "And where should I keep it?")
    assert fixed.mode == "model" and fixed.citations


# --- 5. smaller -------------------------------------------------------------------------------------


async def test_advisors_own_prompt_tags_never_reach_users(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI
) -> None:
    fake.chunk_chars = 3  # tags split across pieces
    fake.script_chat("Keep three months [1].</user_message>\n<reference_passages> more <passage id=\"1\">")
    subject = engine(tmp_path, retriever, model_for(fake))
    events, final = await ask(subject, "How big should my emergency fund be?")
    assert "<" not in final.text and "user_message" not in final.text
    assert streamed(events) == final.text and final.text.startswith("Keep three months [1].")


async def test_a_model_failure_is_a_warning_with_its_kind_and_status(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("/chat/completions", "server_error", times=20)
    subject = engine(tmp_path, retriever, model_for(fake))
    with caplog.at_level(logging.WARNING):
        await ask(subject, "How big should my emergency fund be?")
    failures = [r for r in caplog.records if "the language model failed" in r.getMessage()]
    assert failures and failures[0].levelno == logging.WARNING
    assert "unavailable (HTTP 500)" in failures[0].getMessage()


def test_config_check_says_ready_only_when_the_model_server_answers(
    openai_in_thread: FakeOpenAI, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert main(["config", "check"]) == 0
    assert "language model: ready (it answered GET /models)" in capsys.readouterr().out
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens on the discard port
    main(["config", "check"])
    out = capsys.readouterr()
    assert "language model: not answering: cannot connect to http://127.0.0.1:9/v1" in out.out
    monkeypatch.setenv("ADVISOR_KNOWLEDGE_PATHS", str(tmp_path / "nowhere"))
    main(["config", "check"])
    assert f"warning: ADVISOR_KNOWLEDGE_PATHS: {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err


class NoEmbeddings(LoopbackServer):
    """llama.cpp's server without --embeddings: 501 on /v1/embeddings."""

    async def __aenter__(self) -> NoEmbeddings:
        async def embeddings(_: web.Request) -> web.Response:
            error = {"code": 501, "message": "This server does not support embeddings.", "type": "not_supported_error"}
            return web.json_response({"error": error}, status=501)

        app = web.Application()
        app.router.add_post("/v1/embeddings", embeddings)
        port = await self._serve(app)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self


def test_ingest_against_a_server_without_embeddings_is_one_clear_line(
    tmp_path: Path, kb_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving_in_thread(NoEmbeddings()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("ADVISOR_EMBEDDINGS_PROVIDER", "openai")
        assert main(["ingest", str(kb_dir)]) == 1
    err = capsys.readouterr().err
    assert "has no embeddings endpoint (HTTP 501)" in err and "ADVISOR_EMBEDDINGS_PROVIDER=onnx" in err
    assert [line for line in err.splitlines() if not line.startswith("{")] == [err.strip().splitlines()[-1]]  # one line


@pytest.mark.parametrize("platform", ["web", "discord"])
def test_run_with_redis_down_is_one_clear_line(
    platform: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")  # nothing listens on the discard port
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
    monkeypatch.setenv("DISCORD_TOKEN", "token")
    assert main(["run", platform, *(["--port", "0"] if platform == "web" else [])]) == 1
    err = capsys.readouterr().err
    assert "error: Redis at 127.0.0.1:9 is unavailable" in err and "Traceback" not in err
