"""Helpers for running the real `advisor` command as a subprocess (tests/test_processes.py, the benches).

`AdvisorProcess` starts `python -m bot.cli run web ...` with its own environment and log files, waits
for /healthz, and stops it the way a platform does (SIGTERM, or SIGKILL). `http` sends plain
requests from the test's thread. `GatedOpenAI` is the fake OpenAI server with GET /v1/models (what
the readiness check calls) and a gate that holds chat streams, so a test decides exactly when an
answer is "in flight" and when it may finish (no timing races).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from config.settings import GROUPS
from tests.harness import slack_payloads as sp
from tests.harness.openai_server import FakeOpenAI
from tests.harness.slack_api import FakeSlack

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")

# Distinctive values, so "never in the logs" cannot pass or fail by accident.
BOT_TOKEN = "xoxb-test-process-token-4d7e"
SIGNING_SECRET = "process-test-signing-secret-9b1f"
OPENAI_KEY = "sk-test-process-key-5c2a"
RETRY_HEADERS = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


def until(check: Callable[[], T], timeout: float = 15.0, what: str = "condition", interval: float = 0.02) -> T:
    """Poll `check` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout:g} s")
        time.sleep(interval)


# -- HTTP from the test's thread ------------------------------------------------


def http(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, str]:
    """(status, body text); HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def get_json(url: str) -> tuple[int, Any]:
    status, text = http("GET", url)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


# -- the fakes ------------------------------------------------------------------


class GatedOpenAI(FakeOpenAI):
    """FakeOpenAI with a gate: while `hold()` is on, chat streams send their headers and then wait
    for `release()` before any content."""

    def __init__(self) -> None:
        super().__init__()
        self._open = threading.Event()
        self._open.set()
        self.waiting = 0  # streams waiting at the gate now

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def _stream_chat(self, request: web.Request, *args: Any, **kwargs: Any) -> web.StreamResponse:
        import asyncio

        if not self._open.is_set():
            self.waiting += 1
            try:
                while not self._open.is_set():
                    await asyncio.sleep(0.01)
            finally:
                self.waiting -= 1
        return await super()._stream_chat(request, *args, **kwargs)  # whatever FakeOpenAI's stream takes

    def chat_requests(self, stream: bool | None = None) -> list[dict[str, Any]]:
        return [
            r["json"]
            for r in list(self.requests)
            if r["path"].endswith("/chat/completions")
            and isinstance(r["json"], dict)
            and (stream is None or bool(r["json"].get("stream")) == stream)
        ]


def placeholders(slack: FakeSlack, thread_ts: str, channel: str = "C1") -> list[dict[str, Any]]:
    """The bot's chat.postMessage calls in one thread (each answer starts with one)."""
    return [
        c["args"]
        for c in slack.calls_to("chat.postMessage")
        if c["args"].get("channel") == channel and c["args"].get("thread_ts") == thread_ts
    ]


def finals(slack: FakeSlack, thread_ts: str, channel: str = "C1") -> list[dict[str, Any]]:
    """Final answers in one thread: chat.update calls with blocks on a message posted in that thread."""
    stored = slack._channels.get(channel, {})  # the fake's own record of where each message is
    out = []
    for call in slack.calls_to("chat.update"):
        args = call["args"]
        message = stored.get(args.get("ts"), {})
        if args.get("channel") == channel and args.get("blocks") and message.get("thread_ts") == thread_ts:
            out.append(args)
    return out


# -- the process ----------------------------------------------------------------


def _is_setting(name: str) -> bool:
    return name.startswith(("ADVISOR_", "PROMETHEUS_")) or any(
        name in cls.env_names(field) for cls in GROUPS.values() for field in cls.model_fields
    )


def env_without_settings(**values: str) -> dict[str, str]:
    """This environment without any advisor setting (like the clean_env fixture), plus `values`."""
    env = {name: value for name, value in os.environ.items() if not _is_setting(name)}
    env.update(values)
    return env


def process_env(tmp: Path, settings: Mapping[str, str]) -> dict[str, str]:
    """`env_without_settings()` with a data directory under `tmp`, JSON logs, and `settings`."""
    env = env_without_settings(ADVISOR_DATA_DIR=str(tmp / "data"), ADVISOR_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    env.update(settings)
    return env


def terminate(process: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it is still running after `grace` seconds; reaped."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def run_cli(
    args: Iterable[str], env: Mapping[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class AdvisorProcess:
    """One `advisor` server process; `start()` again after it ended runs the same command anew
    (logs of each run go to their own files: stderr-1.log, stderr-2.log...)."""

    def __init__(self, args: Iterable[str], env: Mapping[str, str], cwd: Path, port: int) -> None:
        self.args = [*args, "--port", str(port)]
        self.env = dict(env)
        self.cwd = cwd
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def stderr_path(self) -> Path:
        return self.cwd / f"stderr-{self.runs}.log"

    def start(self, ready_timeout: float = 60.0) -> AdvisorProcess:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.runs += 1
        with open(self.cwd / f"stdout-{self.runs}.log", "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", *self.args], cwd=self.cwd, env=self.env, stdout=out, stderr=err
            )
        self.wait_healthy(ready_timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        def healthy() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the process exited with {self.process.returncode}:\n{self.stderr()[-3000:]}")
            try:
                return http("GET", self.base + "/healthz", timeout=1)[0] == 200
            except OSError:
                return False

        until(healthy, timeout, "GET /healthz answers 200", interval=0.05)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def all_stderr(self) -> str:
        return "".join((self.cwd / f"stderr-{n}.log").read_text(errors="replace") for n in range(1, self.runs + 1))

    def records(self) -> list[dict[str, Any]]:
        """This run's JSON log records (lines starting with "{"; each must parse)."""
        return [json.loads(line) for line in self.stderr().splitlines() if line.startswith("{")]

    def signal(self, signum: int) -> None:
        assert self.process is not None and self.process.poll() is None, "not running"
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(10)

    def stop(self) -> None:
        """For finally blocks: SIGKILL if still running, and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    # -- requests -----------------------------------------------------------------

    def get(self, path: str) -> tuple[int, Any]:
        return get_json(self.base + path)

    def post_event(self, payload: dict[str, Any], headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        """A signed Events API delivery, as Slack POSTs it."""
        raw = json.dumps(payload).encode()
        all_headers = {"Content-Type": "application/json", **sp.sign(raw, SIGNING_SECRET), **(headers or {})}
        return http("POST", self.base + "/slack/events", raw, all_headers)

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics as {'name{label="v",...}': value} (labels sorted)."""
        from prometheus_client.parser import text_string_to_metric_families

        status, text = http("GET", self.base + "/metrics")
        assert status == 200, text
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
        return samples

    def metric_sum(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels`."""
        total = 0.0
        for key, value in self.metrics().items():
            sample, _, rest = key.partition("{")
            if sample == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
                total += value
        return total
