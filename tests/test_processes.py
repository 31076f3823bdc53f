"""The production processes as an operator runs them: the real `python -m bot.cli run web` (and
`run slack --http`) as a subprocess, against a real redis-server and the fake Slack and OpenAI
servers (in threads of this process). Ops endpoints, JSON logs without secrets, graceful SIGTERM,
kill -9 and restart with Redis dedupe and memory, Redis going down and coming back, and the
command's refusals of unsafe multi-worker set-ups.

Nothing here waits on a fixed sleep: answers in flight are held at the fake model's gate
(`GatedOpenAI.hold`) until the test has checked what it needs, and "not answered again" is shown
by the duplicates counter in /metrics rather than by waiting to see nothing happen.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import serving_in_thread

from bot.state.redis_client import close, connect
from bot.state.memory_redis import RedisMemory
from tests.harness import slack_payloads as sp
from tests.harness.loopback import free_port
from tests.harness.processes import (
    BOT_TOKEN,
    OPENAI_KEY,
    RETRY_HEADERS,
    SIGNING_SECRET,
    AdvisorProcess,
    GatedOpenAI,
    finals,
    http,
    placeholders,
    process_env,
    run_cli,
    until,
)
from tests.harness.redis_server import RedisServer
from tests.harness.slack_api import FakeSlack

REDIS_PASSWORD = "redis-process-test-pw-81c3"

Fakes = tuple[FakeSlack, GatedOpenAI]
Start = Callable[..., AdvisorProcess]


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    with serving_in_thread(FakeSlack()) as slack, serving_in_thread(GatedOpenAI()) as model:
        try:
            yield slack, model
        finally:
            model.release()  # a stream still held at the gate finishes (or is dropped) at teardown


@pytest.fixture
def redis_state(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of this test alone (append-only, password-protected)."""
    server = RedisServer(tmp_path / "redis", password=REDIS_PASSWORD).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def start(tmp_path: Path, kb_dir: Path, fakes: Fakes, redis_state: RedisServer) -> Iterator[Start]:
    """Starts the command with the production settings pointing at the fakes and Redis; every process
    it started is killed at the end if it still runs."""
    slack, model = fakes
    started: list[AdvisorProcess] = []
    work = tmp_path / "run"
    work.mkdir()

    def launch(*args: str, ingest: bool = False, **settings: str) -> AdvisorProcess:
        env = process_env(
            work,
            {
                "ADVISOR_KNOWLEDGE_PATHS": str(kb_dir),
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "ADVISOR_SLACK_API_URL": slack.base_url,
                "OPENAI_BASE_URL": model.base_url,
                "OPENAI_API_KEY": OPENAI_KEY,
                "REDIS_URL": redis_state.url,
                **settings,
            },
        )
        if ingest:  # `advisor ingest KB` first, as a deployment does (otherwise the index starts empty)
            done = run_cli(["ingest", str(kb_dir)], env, work)
            assert done.returncode == 0, done.stderr[-3000:]
        process = AdvisorProcess(args or ("run", "web"), env, work, free_port())
        started.append(process)
        return process.start()

    try:
        yield launch
    finally:
        for process in started:
            process.stop()


def conversation(thread_ts: str, channel: str = "C1") -> str:
    return f"slack:T1:{channel}:{thread_ts}"


def history(url: str, key: str) -> list[tuple[str, str]]:
    """(role, content) of a conversation, read straight from Redis as another process would."""

    async def read() -> list[tuple[str, str]]:
        client = connect(url)
        try:
            return [(turn.role, turn.content) for turn in await RedisMemory(client).history(key)]
        finally:
            await close(client)

    return asyncio.run(read())


def mention_text(event: dict[str, Any]) -> str:
    return event["event"]["text"].replace("<@UBOT> ", "")


# -- 1. ops endpoints, metrics, logs ------------------------------------------------------------


def test_ops_endpoints_metrics_and_json_logs_without_secrets(start: Start, fakes: Fakes) -> None:
    slack, model = fakes
    web = start(ingest=True)
    assert web.get("/healthz") == (200, {"ok": True})
    status, ready = web.get("/readyz")
    assert status == 200, ready
    assert ready["ready"] is True and ready["draining"] is False
    assert ready["checks"] == {"store": "ok", "redis": "ok", "model": "ok"}

    model.script_chat("Keep three to six months of expenses aside [1]. ANSWER-7c1")
    event = sp.app_mention("How big should my emergency fund be, PRIVATE-QUESTION-3e9?")
    thread = event["event"]["ts"]
    assert web.post_event(event)[0] == 200
    (final,) = until(lambda: finals(slack, thread), what="the final chat.update")
    assert "ANSWER-7c1" in final["text"] and len(placeholders(slack, thread)) == 1
    assert "Emergency fund" in json.dumps(final["blocks"])  # the cited guide, from the ingested knowledge base

    assert web.metric_sum("advisor_events_total", platform="slack") >= 1
    assert web.metric_sum("advisor_answers_total") >= 1
    assert web.metric_sum("advisor_answers_total", platform="slack", mode="model") >= 1

    up = next(e for e in final["blocks"][-1]["elements"] if e["action_id"] == "advisor_feedback_up")
    click = sp.block_action("advisor_feedback_up", up["value"], response_url=slack.response_url())
    headers = {"Content-Type": sp.FORM_CONTENT_TYPE, **sp.sign(click, SIGNING_SECRET)}
    assert http("POST", web.base + "/slack/events", click, headers)[0] == 200
    until(lambda: any(r.get("feedback") == 1 for r in web.records()), what="the feedback record")

    log = web.stderr()
    records = web.records()  # each line that starts with "{" parses
    assert records and all(line.startswith("{") for line in log.splitlines() if line.strip()), log[-2000:]
    turns = [r for r in records if r.get("turn_id") and "mode" in r]
    assert turns and turns[-1]["mode"] == "model" and turns[-1]["conversation"] == conversation(thread)
    assert turns[-1]["sources"] and all("fund.md" in source for source in turns[-1]["sources"])
    # one turn id links the retrieval hits, the usage and (through the memory turn) the feedback
    (retrieval,) = [r for r in records if r.get("hits") and r.get("turn_id") == turns[-1]["turn_id"]]
    assert any("fund.md" in hit["source"] for hit in retrieval["hits"]) and retrieval["retrieval_ms"] >= 0
    assert turns[-1]["prompt_tokens"] > 0 and turns[-1]["completion_tokens"] > 0
    (feedback,) = [r for r in records if r.get("feedback") == 1]
    assert feedback["memory_turn"] == turns[-1]["memory_turn"] == int(up["value"]) and feedback["stored"] is True
    assert web.metric_sum("advisor_feedback_total", value="up") == 1
    for secret in (BOT_TOKEN, SIGNING_SECRET, OPENAI_KEY, REDIS_PASSWORD, "PRIVATE-QUESTION-3e9"):
        assert secret not in log, f"{secret!r} is in the log"


# -- 2. graceful SIGTERM --------------------------------------------------------------------------


def test_sigterm_refuses_new_events_and_finishes_the_answer_in_flight(start: Start, fakes: Fakes) -> None:
    slack, model = fakes
    web = start(ADVISOR_SHUTDOWN_GRACE_SECONDS="10")
    model.chunk_delay = 0.25  # a slow model: about 1 s of streaming once the gate opens
    model.hold()
    event = sp.app_mention("How do I ask for a raise?")
    thread = event["event"]["ts"]
    assert web.post_event(event)[0] == 200
    until(lambda: placeholders(slack, thread), what="the placeholder chat.postMessage")
    until(lambda: model.waiting == 1, what="the model stream in flight")

    web.signal(signal.SIGTERM)
    status, body = until(lambda: (r := web.get("/readyz"))[0] == 503 and r, what="/readyz 503 while draining")
    assert body["draining"] is True and body["ready"] is False
    late = sp.app_mention("Should I pay off my credit card first?")
    status, text = web.post_event(late)
    assert status == 503, text
    assert web.process is not None and web.process.poll() is None  # still waiting for the answer

    model.release()
    (final,) = until(lambda: finals(slack, thread), what="the in-flight answer's final chat.update")
    assert "This is a fake answer." in final["text"]
    assert web.process.wait(30) == 0
    log = web.stderr()
    assert "shutdown: every answer in flight finished" in log  # not cut off by the 10 s grace
    assert placeholders(slack, late["event"]["ts"]) == []


# -- 3. kill -9 and restart -------------------------------------------------------------------------


def test_kill_9_and_restart_keeps_memory_finishes_the_cut_off_answer_and_answers_retries_once(
    start: Start, fakes: Fakes, redis_state: RedisServer
) -> None:
    slack, model = fakes
    web = start(ADVISOR_MEMORY_WORK_LEASE_SECONDS="2")  # a dead process's answers are taken over after 2 s
    model.script_chat("Three to six months of essential expenses. ANSWER-A-51d")
    a = sp.app_mention("How big should my emergency fund be? QUESTION-A-51d")
    t1 = a["event"]["ts"]
    assert web.post_event(a)[0] == 200
    until(lambda: finals(slack, t1), what="A answered")

    model.hold()
    b = sp.app_mention("Should I pay off my credit card or save first? QUESTION-B-51d")
    t2 = b["event"]["ts"]
    assert web.post_event(b)[0] == 200
    until(lambda: placeholders(slack, t2) and model.waiting == 1, what="B in flight at the model")
    web.kill()  # SIGKILL mid-answer: no drain, no clean-up
    assert web.process is not None and web.process.returncode == -signal.SIGKILL
    model.release()
    model.script_chat("Pay the card first, then save. ANSWER-B-51d")

    web.start()  # the same command, environment, data directory and port
    # Slack does not redeliver an acknowledged event; the restarted process finds B unfinished in the
    # journal once its lease lapses and finishes it in the placeholder already on screen
    until(lambda: finals(slack, t2), what="B finished after the restart")
    assert "ANSWER-B-51d" in finals(slack, t2)[0]["text"]
    for event in (a, b):  # retries of both deliveries, had Slack sent any, are dropped
        status, text = web.post_event(event, headers=RETRY_HEADERS)
        assert status == 200, text
    until(
        lambda: web.metric_sum("advisor_duplicates_dropped_total", platform="slack") >= 2, what="both retries dropped"
    )
    assert len(placeholders(slack, t1)) == 1 and len(placeholders(slack, t2)) == 1
    assert len(finals(slack, t1)) == 1 and len(finals(slack, t2)) == 1

    turns_a = history(redis_state.url, conversation(t1))
    assert [role for role, _ in turns_a] == ["user", "assistant"]
    assert turns_a[0][1] == mention_text(a) and "ANSWER-A-51d" in turns_a[1][1]
    turns_b = history(redis_state.url, conversation(t2))
    assert [role for role, _ in turns_b] == ["user", "assistant"]  # the cut-off turn was replaced, not doubled
    assert turns_b[0][1] == mention_text(b) and "ANSWER-B-51d" in turns_b[1][1]

    streams_before = len(model.chat_requests(stream=True))
    follow_up = sp.channel_message("And where should I keep it? QUESTION-C-51d", thread_ts=t1)
    assert web.post_event(follow_up)[0] == 200  # no mention: answered because memory says the bot is in T1
    until(lambda: len(finals(slack, t1)) == 2, what="the follow-up in T1 answered")
    request = model.chat_requests(stream=True)[streams_before]
    messages = request["messages"]
    assert any(m["role"] == "user" and "QUESTION-A-51d" in m["content"] for m in messages[:-1]), messages
    assert any(m["role"] == "assistant" and "ANSWER-A-51d" in m["content"] for m in messages), messages
    assert "QUESTION-C-51d" in messages[-1]["content"]
    assert len(placeholders(slack, t1)) == 2 and len(placeholders(slack, t2)) == 1


# -- 4. Redis down and back ------------------------------------------------------------------------


def test_redis_down_refuses_deliveries_then_answers_the_retry_once(
    start: Start, fakes: Fakes, redis_state: RedisServer
) -> None:
    slack, _ = fakes
    web = start("run", "slack", "--http")
    before = sp.app_mention("How do I ask for a raise? BEFORE-2a0")
    t0 = before["event"]["ts"]
    assert web.post_event(before)[0] == 200
    until(lambda: finals(slack, t0), what="the first answer")

    redis_state.stop()
    status, ready = until(lambda: (r := web.get("/readyz"))[0] == 503 and r, what="/readyz 503 with Redis down")
    assert ready["ready"] is False and ready["draining"] is False
    assert ready["checks"]["redis"] != "ok" and ready["checks"]["store"] == "ok" and ready["checks"]["model"] == "ok"
    assert REDIS_PASSWORD not in json.dumps(ready)
    event = sp.app_mention("Should I pay off my credit card first? DURING-2a0")
    thread = event["event"]["ts"]
    status, text = web.post_event(event)
    assert status == 503, text  # not acknowledged: Slack delivers it again
    assert placeholders(slack, thread) == []

    redis_state.start()
    until(lambda: web.get("/readyz")[0] == 200, what="/readyz 200 with Redis back")
    status, text = web.post_event(event, headers=RETRY_HEADERS)
    assert status == 200, text
    until(lambda: finals(slack, thread), what="the retried delivery answered")
    again = {"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"}
    assert web.post_event(event, headers=again)[0] == 200
    until(
        lambda: web.metric_sum("advisor_duplicates_dropped_total", platform="slack") >= 1,
        what="the second retry dropped",
    )
    assert len(placeholders(slack, thread)) == 1 and len(finals(slack, thread)) == 1

    assert [role for role, _ in history(redis_state.url, conversation(t0))] == ["user", "assistant"]
    assert [role for role, _ in history(redis_state.url, conversation(thread))] == ["user", "assistant"]
    log = web.stderr()
    assert "refusing a delivery while shared state is down" in log
    assert REDIS_PASSWORD not in log and "DURING-2a0" not in log


# -- 5. refusals ---------------------------------------------------------------------------------------


def test_the_command_refuses_unsafe_or_empty_set_ups(tmp_path: Path) -> None:
    slack = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET}
    cases = [
        (["--workers", "2"], slack, "REDIS_URL"),
        (["--workers", "2"], {**slack, "REDIS_URL": "redis://127.0.0.1:1/0"}, "QDRANT_URL"),
        ([], {}, "nothing to serve over HTTP"),
    ]
    for extra, settings, named in cases:
        result = run_cli(["run", "web", "--port", str(free_port()), *extra], process_env(tmp_path, settings), tmp_path)
        assert result.returncode == 2, (extra, settings, result.stderr)
        assert named in result.stderr and result.stderr.startswith("error: "), result.stderr
        assert "Traceback" not in result.stderr
    assert "SLACK_SIGNING_SECRET" in result.stderr and "DISCORD_PUBLIC_KEY" in result.stderr


# -- 6. the Discord interactions endpoint in the web process ----------------------------------------


def test_the_web_process_serves_discord_interactions_signed_with_ed25519(tmp_path: Path) -> None:
    import time

    from nacl.signing import SigningKey

    key = SigningKey.generate()
    settings = {"DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(), "DISCORD_APPLICATION_ID": "123456789012345678"}
    web = AdvisorProcess(["run", "web"], process_env(tmp_path, settings), tmp_path, free_port()).start()
    try:

        def post(body: bytes, signer: SigningKey = key) -> tuple[int, str]:
            stamp = str(int(time.time()))
            signature = signer.sign(stamp.encode() + body).signature.hex()
            headers = {"Content-Type": "application/json", "X-Signature-Ed25519": signature, "X-Signature-Timestamp": stamp}
            return http("POST", web.base + "/discord/interactions", body, headers)

        ping = json.dumps({"id": "1", "application_id": "123456789012345678", "type": 1, "token": "t", "version": 1}).encode()
        status, text = post(ping)
        assert (status, json.loads(text)) == (200, {"type": 1})
        assert post(ping, SigningKey.generate())[0] == 401  # forged
        assert post(b"{not json")[0] == 400
        assert web.get("/readyz")[0] == 200  # no Slack, no Redis, no model: the store alone must be up
        assert "/slack/events" not in web.stderr()
    finally:
        web.kill()


# -- 7. two web workers on one port, over a Qdrant server ---------------------------------------------


def worker_pids(web: AdvisorProcess) -> set[int]:
    """The pids of the children that logged "web process <pid> on port <port>"."""
    import re

    pattern = re.compile(rf"^web process (\d+) on port {web.port}\b")
    return {int(m.group(1)) for r in web.records() if (m := pattern.match(str(r.get("msg", ""))))}


def answers_by_pid(metrics_dir: Path) -> dict[int, float]:
    """advisor_answers_total per worker, from each worker's own file in the multiprocess directory."""
    from prometheus_client.multiprocess import MultiProcessCollector

    counts: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.split("_")[-1])
        for family in MultiProcessCollector._read_metrics([str(path)]).values():
            for sample in family.samples:
                if sample.name == "advisor_answers_total":
                    counts[pid] = counts.get(pid, 0.0) + sample.value
    return counts


def test_two_workers_over_qdrant_server_answer_each_event_once_and_drain_on_sigterm(
    start: Start, fakes: Fakes, tmp_path: Path
) -> None:
    import contextlib
    import os

    from tests.harness.qdrant_api import FakeQdrant

    slack, model = fakes
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    with serving_in_thread(FakeQdrant()) as qdrant:
        web = start(
            "run",
            "web",
            "--workers",
            "2",
            ingest=True,
            QDRANT_URL=qdrant.url,
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
            ADVISOR_SHUTDOWN_GRACE_SECONDS="10",
        )
        pids = until(lambda: len(found := worker_pids(web)) == 2 and found, timeout=60, what="two workers up")
        assert web.process is not None and web.process.pid not in pids
        try:
            until(lambda: web.get("/readyz")[0] == 200, what="ready")

            # one user each: the per-user rate limit (shared in Redis) would otherwise answer most of them "limited"
            events = [sp.app_mention(f"How big should my emergency fund be? Q{n:02d}", user=f"U{n:03d}") for n in range(20)]
            for event in events:
                assert web.post_event(event)[0] == 200
                assert web.post_event(event, headers=RETRY_HEADERS)[0] == 200  # Slack's retry of the same delivery
            threads = [event["event"]["ts"] for event in events]
            assert len(set(threads)) == 20
            until(lambda: all(finals(slack, t) for t in threads), timeout=60, what="all 20 answered")
            until(
                lambda: web.metric_sum("advisor_duplicates_dropped_total", platform="slack") >= 20,
                what="all 20 retries dropped",
            )
            for thread in threads:
                assert len(placeholders(slack, thread)) == 1, thread
                assert len(finals(slack, thread)) == 1, thread
            turns = [r for r in web.records() if r.get("turn_id") and "mode" in r]
            assert len(turns) == 20 and {t["mode"] for t in turns} == {"model"}, [t["mode"] for t in turns]
            retrievals = [r for r in web.records() if r.get("hits")]  # the knowledge base, searched over REST
            assert len(retrievals) >= 20 and all(any("fund.md" in h["source"] for h in r["hits"]) for r in retrievals)
            assert len([r for r in qdrant.requests if r["path"] == "/collections/advisor/points/query"]) >= 20

            # /metrics of whichever worker the kernel picks sums both workers' counters
            for _ in range(6):
                assert web.metric_sum("advisor_answers_total") == 20
                assert web.metric_sum("advisor_duplicates_dropped_total", platform="slack") == 20
            per_worker = answers_by_pid(metrics_dir)
            assert set(per_worker) <= pids and sum(per_worker.values()) == 20
            assert len(per_worker) == 2 and all(per_worker.values()), f"answers all in one worker: {per_worker}"

            # answers in flight at SIGTERM are finished by the worker holding them; then all exit
            model.hold()
            late = [sp.app_mention(f"Should I pay off my credit card first? L{n}", user=f"UL{n}") for n in range(4)]
            for event in late:
                assert web.post_event(event)[0] == 200
            until(lambda: model.waiting == 4, what="four answers held at the model")
            web.signal(signal.SIGTERM)
            until(lambda: web.stderr().count("SIGTERM: draining") == 2, what="both workers draining")
            assert web.process.poll() is None
            model.release()
            assert web.process.wait(30) == 0
            for event in late:
                assert len(finals(slack, event["event"]["ts"])) == 1
            log = web.stderr()
            assert log.count("shutdown: every answer in flight finished") == 2, log[-3000:]
            for pid in pids:  # both children are gone
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    continue
                raise AssertionError(f"worker {pid} still running")
        finally:  # a failed test leaves no worker behind (the fixture stops only the parent)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
