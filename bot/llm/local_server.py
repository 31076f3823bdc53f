"""llama.cpp's `llama-server` as advisor's own child process, on a free loopback port.

`start()` returns once GET /health answers 200 (the model is loaded). A watcher restarts the
server on the same port when it dies, with backoff, at most `max_restarts` times in a row
(a restart that stays up for `settled_seconds` resets the count); past that it gives up,
loudly, and model calls fail as "unavailable" (the engine then answers from its passages).
The server never outlives advisor: `stop()` on the way out, an atexit hook for any exit,
and, on Linux, `setpriv --pdeathsig` so the kernel ends it if advisor is killed outright.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class LocalServerError(RuntimeError):
    """The server could not be started (or would not stay up); the message says why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _orphan_guard() -> list[str]:
    """A prefix that has the kernel send SIGTERM to the child when its parent dies (Linux)."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


class LocalServer:
    """One supervised llama-server. `command` is its argv without --host/--port (added here); `env` holds
    defaults for its environment (advisor's own environment wins)."""

    def __init__(
        self,
        command: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 120.0,
        max_restarts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        settled_seconds: float = 60.0,
        poll_seconds: float = 0.2,
    ) -> None:
        self.command = list(command)
        self.log_path = log_path
        self.env = {**(env or {}), **os.environ}  # advisor's own environment wins
        self.ready_timeout = ready_timeout
        self.max_restarts = max_restarts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.settled_seconds = settled_seconds
        self.poll_seconds = poll_seconds
        self.port = 0
        self.restarts = 0  # in all, for status and tests
        self.gave_up = False
        self._process: subprocess.Popen[bytes] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, for the ordinary OpenAI client."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    async def start(self) -> LocalServer:
        """Start the server on a free port and wait until it is ready; LocalServerError if it is not."""
        self.port = free_port()
        atexit.register(self.stop_now)
        try:
            await self._launch()
        except BaseException:
            self.stop_now()
            raise
        self._watcher = asyncio.create_task(self._watch(), name="llama-server watcher")
        return self

    async def _launch(self) -> None:
        argv = [*_orphan_guard(), *self.command, "--host", HOST, "--port", str(self.port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as output:  # the child keeps its own descriptor
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=self.env
            )
        log.info("llama-server starting on port %d (pid %d, log %s)", self.port, self._process.pid, self.log_path)
        await self._wait_ready(self._process)

    async def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.ready_timeout
        url = f"http://{HOST}:{self.port}/health"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise LocalServerError(f"llama-server exited with code {process.returncode}: {self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(self.poll_seconds)
        raise LocalServerError(f"llama-server was not ready within {self.ready_timeout:.0f} s: {self.log_tail()}")

    async def _watch(self) -> None:
        """Restart the server whenever it dies, until `max_restarts` failures in a row."""
        failures = 0
        while not self._stopping:
            process = self._process
            started = time.monotonic()
            while process is not None and process.poll() is None:
                await asyncio.sleep(self.poll_seconds)
            if self._stopping:
                return
            if time.monotonic() - started >= self.settled_seconds:
                failures = 0
            failures += 1
            code = process.returncode if process is not None else None
            if failures > self.max_restarts:
                self.gave_up = True
                log.error("llama-server died (exit code %s) %d times in a row; not restarting it again: %s",
                          code, failures, self.log_tail())
                return
            delay = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
            log.warning("llama-server died (exit code %s); restarting it in %.1f s (restart %d of at most %d in a row)",
                        code, delay, failures, self.max_restarts)
            await asyncio.sleep(delay)
            try:
                await self._launch()
                self.restarts += 1
                log.info("llama-server is back on port %d (pid %d)", self.port, self.pid)
            except LocalServerError as exc:
                log.warning("llama-server restart failed: %s", exc)

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip()) or "(empty log)"

    def stop_now(self, grace: float = 5.0) -> None:
        """Stop the server and wait for it (SIGTERM, then SIGKILL after `grace` seconds); idempotent."""
        self._stopping = True
        atexit.unregister(self.stop_now)
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.info("llama-server on port %d stopped", self.port)

    async def stop(self) -> None:
        """`stop_now()` from async code: the watcher first, so it does not restart what is being stopped."""
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await asyncio.to_thread(self.stop_now)
