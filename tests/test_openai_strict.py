"""The product against a fake OpenAI as strict as the real one (issue 15, sections 1 and 2): a refused key
and an unknown model, an error event inside the stream, streams that end without [DONE], the provider's
content filter, 429s without Retry-After and a used-up quota. Each through the public interfaces: the
Engine's `answer()` with the real OpenAI client, the readiness check, and the `advisor` command."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from bot.cli import main
from bot.engine.pipeline import MODEL_TROUBLE, Engine
from bot.engine.speak import CUT_SHORT
from bot.llm.openai_model import OpenAIChatModel
from bot.models import Final, IncomingMessage, Notice, ReplyEvent, TextDelta
from bot.ops.metrics import REGISTRY
from bot.ops.readiness import check_all, model_check
from bot.safety.moderation import RETRACTION
from bot.state.memory_sqlite import SqliteMemory
from config.settings import load_settings
from retrieval.retriever import HybridRetriever
from tests.conftest import serving_in_thread
from tests.harness.loopback import LoopbackServer
from tests.harness.openai_server import FakeOpenAI

GOOD_KEY = "sk-proj-good0123456789abcdef"
SHORT_BAD_KEY = "badkey42"  # OpenAI's 401 message shows a key this short whole
ANSWER = "Keep three to six months of essential expenses in an easy-access savings account [1]."
QUESTION = "How big should my emergency fund be?"
MAX_ATTEMPTS = 4


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    """The fake, as strict as OpenAI: one key, the models it serves."""
    async with FakeOpenAI(api_keys={GOOD_KEY}, models={"gpt-4o-mini", "omni-moderation-latest"}) as server:
        server.default_answer = ANSWER
        yield server


Models = Callable[..., OpenAIChatModel]


@pytest.fixture
async def model_for(fake: FakeOpenAI) -> AsyncIterator[Models]:
    """OpenAIChatModel(key=..., name=...) on the fake, through the official client (closed at the end)."""
    clients: list[openai.AsyncOpenAI] = []

    def build(*, key: str = GOOD_KEY, name: str = "gpt-4o-mini") -> OpenAIChatModel:
        clients.append(openai.AsyncOpenAI(base_url=fake.base_url, api_key=key, max_retries=0))
        return OpenAIChatModel(
            clients[-1], name, timeout=5.0, retry_budget=5.0, max_attempts=MAX_ATTEMPTS, base_delay=0.01
        )

    yield build
    for client in clients:
        await client.close()


def engine(tmp_path: Path, retriever: HybridRetriever, model: OpenAIChatModel) -> Engine:
    return Engine(load_settings(None), retriever, SqliteMemory(tmp_path / "m.sqlite3"), model)


async def ask(subject: Engine, text: str = QUESTION, thread: str = "t1") -> tuple[list[ReplyEvent], Final]:
    message = IncomingMessage("test", "w1", "c1", thread, "u1", text, time.time(), f"m-{time.time_ns()}")
    events = [event async for event in subject.answer(message)]
    finals = [event for event in events if isinstance(event, Final)]
    assert len(finals) == 1 and events[-1] is finals[0]
    return events, finals[0]


def streamed(events: list[ReplyEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def notices(events: list[ReplyEvent]) -> list[str]:
    return [e.kind for e in events if isinstance(e, Notice)]


async def turns(subject: Engine, thread: str = "t1") -> list[tuple[str, str, dict[str, Any]]]:
    return [(t.role, t.content, t.meta) for t in await subject.memory.history(f"test:w1:c1:{thread}")]


def chats(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r for r in fake.requests if r["path"].endswith("/chat/completions")]


def product_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR records of advisor's own loggers (not asyncio's about another test's unclosed client)."""
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and r.name.startswith("bot.")]


def model_errors(kind: str) -> float:
    return REGISTRY.get_sample_value("advisor_model_errors_total", {"kind": kind}) or 0.0


# --- a refused key, an unknown model ---------------------------------------------------------------


async def test_a_refused_key_is_one_clear_error_for_the_operator_and_a_polite_reply(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture, model_for: Models
) -> None:
    subject = engine(tmp_path, retriever, model_for(key=SHORT_BAD_KEY))
    with caplog.at_level(logging.DEBUG):
        _, final = await ask(subject)
    assert final.mode == "error" and final.text.startswith(MODEL_TROUBLE["auth"])
    assert "three to six months" in final.text  # the knowledge base still helps
    assert len(chats(fake)) == 1  # a refused key is not retried
    errors = product_errors(caplog)
    assert errors == [
        "model 'gpt-4o-mini' unusable (HTTP 401): the model provider refused the API key (invalid_api_key); "
        "an admin must set a valid OPENAI_API_KEY"
    ]
    assert SHORT_BAD_KEY not in caplog.text and "Incorrect API key" not in caplog.text  # nor the provider's words
    ours = [r for r in caplog.records if r.name.startswith(("bot.", "adapters.", "openai"))]  # not another
    assert not any(r.exc_info for r in ours)  # test's client garbage-collected on its closed loop (asyncio's log)
    assert [role for role, _, _ in await turns(subject)] == ["user"]


async def test_an_unknown_model_names_the_model_for_the_operator_and_is_not_retried(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture, model_for: Models
) -> None:
    subject = engine(tmp_path, retriever, model_for(name="gpt-x"))
    before = model_errors("model_not_found")
    with caplog.at_level(logging.WARNING):
        _, final = await ask(subject)
    assert final.mode == "error" and final.text.startswith(MODEL_TROUBLE["model_not_found"])
    assert "couldn't take that request" not in final.text  # not the user's fault
    assert len(chats(fake)) == 1 and chats(fake)[0]["json"]["model"] == "gpt-x"
    errors = product_errors(caplog)
    assert errors == [
        "model 'gpt-x' unusable (HTTP 404): the model server has no such model, or the key may not use it; "
        "an admin must check the model name and OPENAI_BASE_URL"
    ]
    assert model_errors("model_not_found") - before == 1
    assert [role for role, _, _ in await turns(subject)] == ["user"]


class OllamaLike(LoopbackServer):
    """Ollama's answer to a model it has not pulled: 404 with no error code."""

    async def __aenter__(self) -> OllamaLike:
        async def chat(_: web.Request) -> web.Response:
            message = 'model "llama9" not found, try pulling it first'
            error = {"message": message, "type": "api_error", "param": None, "code": None}
            return web.json_response({"error": error}, status=404)

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        self.base_url = f"http://127.0.0.1:{await self._serve(app)}/v1"
        return self


async def test_a_404_without_a_code_is_an_unknown_model_too(
    tmp_path: Path, retriever: HybridRetriever, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        OllamaLike() as server,
        openai.AsyncOpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0) as client,
    ):
        subject = engine(tmp_path, retriever, OpenAIChatModel(client, "llama9", timeout=5.0, base_delay=0.01))
        with caplog.at_level(logging.ERROR):
            _, final = await ask(subject)
    assert final.mode == "error" and final.text.startswith(MODEL_TROUBLE["model_not_found"])
    assert product_errors(caplog) == [
        "model 'llama9' unusable (HTTP 404): the model server answered 404: no such model, or the wrong base URL; "
        "an admin must check the model name and OPENAI_BASE_URL"
    ]


async def test_readiness_names_a_refused_key_and_an_unknown_model(fake: FakeOpenAI) -> None:
    checks = {
        "good": model_check(fake.base_url, GOOD_KEY, model="gpt-4o-mini"),
        "bad key": model_check(fake.base_url, SHORT_BAD_KEY, model="gpt-4o-mini"),
        "unknown model": model_check(fake.base_url, GOOD_KEY, model="gpt-x"),
    }
    ready, report = await check_all(checks, timeout=5)
    assert not ready and report == {
        "good": "ok",
        "bad key": "the model server answered HTTP 401",
        "unknown model": "the model server has no model 'gpt-x' (HTTP 404 model_not_found)",
    }
    assert SHORT_BAD_KEY not in str(report)


class ModelsOnly(LoopbackServer):
    """A llama.cpp-like server: GET /v1/models, and no /v1/models/{id} route."""

    async def __aenter__(self) -> ModelsOnly:
        async def models(_: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [{"id": "local.gguf", "object": "model"}]})

        app = web.Application()
        app.router.add_get("/v1/models", models)
        self.base_url = f"http://127.0.0.1:{await self._serve(app)}/v1"
        return self


async def test_readiness_gives_a_server_without_the_model_route_the_benefit_of_the_doubt() -> None:
    async with ModelsOnly() as server:
        assert await check_all({"model": model_check(server.base_url, None, model="gpt-4o-mini")}) == (
            True,
            {"model": "ok"},
        )


def test_config_check_names_a_refused_key_and_an_unknown_model(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving_in_thread(FakeOpenAI(api_keys={GOOD_KEY}, models={"gpt-4o-mini"})) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", SHORT_BAD_KEY)
        main(["config", "check"])
        bad_key = capsys.readouterr()
        monkeypatch.setenv("OPENAI_API_KEY", GOOD_KEY)
        monkeypatch.setenv("ADVISOR_OPENAI_CHAT_MODEL", "gpt-x")
        main(["config", "check"])
        unknown = capsys.readouterr()
        monkeypatch.setenv("ADVISOR_OPENAI_CHAT_MODEL", "gpt-4o-mini")
        main(["config", "check"])
        good = capsys.readouterr()
    assert "language model: not answering: the key was refused (HTTP 401): set a valid OPENAI_API_KEY" in bad_key.out
    assert SHORT_BAD_KEY not in bad_key.out + bad_key.err
    assert "language model: not answering: it has no model 'gpt-x' (HTTP 404): check ADVISOR_OPENAI_CHAT_MODEL" in (
        unknown.out
    )
    assert "language model: ready (it answered GET /models)" in good.out


def test_ask_with_a_refused_key_answers_politely_and_logs_one_line_without_the_key(
    tmp_path: Path, kb_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["ingest", str(kb_dir)]) == 0
    capsys.readouterr()
    with serving_in_thread(FakeOpenAI(api_keys={GOOD_KEY})) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", SHORT_BAD_KEY)
        assert main(["ask", QUESTION]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(MODEL_TROUBLE["auth"])
    assert "the model provider refused the API key" in err and "set a valid OPENAI_API_KEY" in err
    assert SHORT_BAD_KEY not in out + err and "Traceback" not in err


# --- streams that do not end as they should -----------------------------------------------------------


async def test_an_error_event_mid_stream_keeps_what_arrived_marked_and_stored_as_cut_short(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture, model_for: Models
) -> None:
    fake.fail_next("/chat/completions", "stream_error", after_chunks=3)  # 24 characters, then the error event
    subject = engine(tmp_path, retriever, model_for())
    with caplog.at_level(logging.WARNING):
        events, final = await ask(subject)
    assert final.mode == "model" and final.text.startswith(ANSWER[:24]) and ANSWER not in final.text
    assert f"I had to cut this answer short: {CUT_SHORT['error']}" in final.text
    assert streamed(events) == final.text and notices(events).count("truncated") == 1
    assert len(chats(fake)) == 1  # never retried once text was shown
    (user, assistant) = await turns(subject)
    assert assistant[0] == "assistant" and assistant[1] == final.text and assistant[2]["truncated"] == "error"
    assert final.usage.completion_tokens > 0  # what arrived is counted
    assert "an error event ended the answer part-way" in caplog.text


async def test_an_error_event_before_any_text_is_retried(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, model_for: Models
) -> None:
    fake.fail_next("/chat/completions", "stream_error", after_chunks=0)
    subject = engine(tmp_path, retriever, model_for())
    events, final = await ask(subject)
    assert final.mode == "model" and final.text == ANSWER and "truncated" not in notices(events)
    assert len(chats(fake)) == 2
    assert "truncated" not in (await turns(subject))[-1][2]


async def test_a_stream_that_ends_cleanly_before_its_finish_chunk_is_cut_short(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, model_for: Models
) -> None:
    fake.fail_next("/chat/completions", "stream_cut", after_chunks=2)
    subject = engine(tmp_path, retriever, model_for())
    events, final = await ask(subject)
    assert final.mode == "model" and final.text.startswith(ANSWER[:16]) and ANSWER not in final.text
    assert f"I had to cut this answer short: {CUT_SHORT['incomplete']}" in final.text
    assert notices(events).count("truncated") == 1
    stored = (await turns(subject))[-1]
    assert stored[1] == final.text and stored[2]["truncated"] == "incomplete"


async def test_a_stream_that_ends_after_its_finish_chunk_without_done_is_whole(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, model_for: Models
) -> None:
    """finish_reason "stop" arrived: the answer is complete; only its usage chunk was lost, so it is estimated."""
    fake.fail_next("/chat/completions", "no_done")
    subject = engine(tmp_path, retriever, model_for())
    events, final = await ask(subject)
    assert final.mode == "model" and final.text == ANSWER and "truncated" not in notices(events)
    assert "truncated" not in (await turns(subject))[-1][2]
    assert final.usage.completion_tokens > 0 and final.usage.prompt_tokens > 0


async def test_the_providers_content_filter_retracts_the_partial_answer(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture, model_for: Models
) -> None:
    fake.finish_reason = "content_filter"
    subject = engine(tmp_path, retriever, model_for())
    with caplog.at_level(logging.WARNING):
        events, final = await ask(subject)
    assert ANSWER in streamed(events)  # it was streamed before the filter's verdict ...
    assert final.mode == "rejected" and final.text == RETRACTION  # ... and is replaced, not shown as complete
    assert "retracted" in notices(events) and "truncated" not in notices(events)
    role, content, meta = (await turns(subject))[-1]
    assert (role, content, meta["mode"]) == ("assistant", RETRACTION, "moderated")
    assert meta["categories"] == ["content_filter"]
    assert "content filter stopped the answer" in caplog.text
    _, next_answer = await ask(subject, "And where should I keep it?", thread="t2")
    assert next_answer.mode == "model"  # the next answer is not filtered


# --- 429s ---------------------------------------------------------------------------------------------


def retries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]


async def test_429s_without_retry_after_are_retried_with_backoff(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture, model_for: Models
) -> None:
    fake.fail_next("/chat/completions", "rate_limit", times=2, retry_after=None)  # x-ratelimit-* headers only
    subject = engine(tmp_path, retriever, model_for())
    with caplog.at_level(logging.WARNING):
        _, final = await ask(subject)
    assert final.mode == "model" and final.text == ANSWER
    assert len(chats(fake)) == 3
    waits = retries(caplog)
    assert [w.split("(attempt ")[1] for w in waits] == ["2)", "3)"]
    assert all(w.startswith("model call failed (rate_limited), retrying in") for w in waits)


async def test_429s_that_persist_are_retried_a_bounded_number_of_times(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture, model_for: Models
) -> None:
    fake.fail_next("/chat/completions", "rate_limit", times=50, retry_after=None)
    subject = engine(tmp_path, retriever, model_for())
    with caplog.at_level(logging.WARNING):
        _, final = await ask(subject)
    assert final.mode == "error" and final.text.startswith(MODEL_TROUBLE["rate_limited"])
    assert len(chats(fake)) == MAX_ATTEMPTS and len(retries(caplog)) == MAX_ATTEMPTS - 1
    assert [role for role, _, _ in await turns(subject)] == ["user"]


async def test_insufficient_quota_is_not_retried_and_says_what_to_fix(
    tmp_path: Path, retriever: HybridRetriever, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture, model_for: Models
) -> None:
    fake.fail_next("/chat/completions", "insufficient_quota", times=5)
    subject = engine(tmp_path, retriever, model_for())
    with caplog.at_level(logging.WARNING):
        _, final = await ask(subject)
    assert final.mode == "error" and final.text.startswith(MODEL_TROUBLE["quota"])
    assert len(chats(fake)) == 1 and retries(caplog) == []
    errors = product_errors(caplog)
    assert errors == [
        "model 'gpt-4o-mini' unusable (HTTP 429): the model provider's quota is used up (insufficient_quota); "
        "an admin must check the account's plan and billing"
    ]
