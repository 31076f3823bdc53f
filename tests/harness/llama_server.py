"""A real llama-server for the tests: the bundled model (SmolLM2-135M-Instruct) under advisor's own
supervisor (bot/llm/local_server.py) on a free loopback port, kept small for CI: a 2,048-token
context, two threads, and at most `PREDICT` tokens for a call that does not say how many
(`advisor finetune compare`'s); the engine's calls ask for ADVISOR_ANSWER_MAX_TOKENS, set low in the tests.

`RealServer` runs the supervisor on a loop of its own in a thread, so its watcher keeps the
server up while tests run on theirs; one is shared by the whole session (tests/test_local_model.py).
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from bot.llm.local_model import SERVER_ENV, LocalModelError, resolve
from bot.llm.local_server import LocalServer
from config.settings import LocalModelSettings

CONTEXT = 2048
THREADS = 2
PREDICT = 64


def missing() -> str | None:
    """Why the real server cannot run here (the `local` extra is not installed), or None."""
    try:
        resolve(LocalModelSettings(model="smollm2"))
    except LocalModelError as exc:
        return str(exc)
    return None


def command(context: int = CONTEXT, predict: int = PREDICT) -> tuple[list[str], str]:
    """llama-server's argv for the tests (without --host/--port), and the model name it answers to."""
    local = resolve(LocalModelSettings(model="smollm2"))
    return local.command(context, THREADS, ("--n-predict", str(predict), "--seed", "7")), local.alias


class RealServer:
    """One supervised llama-server on a background loop; `server` is the LocalServer."""

    def __init__(self, log_path: Path, **supervisor: Any) -> None:
        argv, self.alias = command()
        self.server = LocalServer(argv, log_path, env=SERVER_ENV, **supervisor)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="llama-server loop", daemon=True)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def start(self) -> RealServer:
        self._thread.start()
        self._run(self.server.start())
        return self

    def stop(self) -> None:
        self._run(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def kill(self) -> int:
        """SIGKILL the server (the supervisor should restart it); the pid that was killed."""
        pid = self.server.pid
        assert pid is not None, "the server is not running"
        os.kill(pid, 9)
        return pid

    def _run(self, coroutine: Any, timeout: float = 180.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)
