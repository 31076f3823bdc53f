"""The llama-server supervisor (bot/llm/local_server.py) with a stand-in child: a few lines of Python
that take --host/--port like llama-server, answer GET /health, and die when told. The real
server under the same supervisor is in tests/test_local_model.py."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest

from bot.llm.local_server import LocalServer, LocalServerError
from tests.harness.stack import until

CHILD = textwrap.dedent(
    """
    import http.server, os, sys, threading, time
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    life = float(os.environ.get("CHILD_LIFE", "0"))
    if os.environ.get("CHILD_FAIL"):
        print("error: cannot load the model", flush=True)
        sys.exit(1)
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
        def log_message(self, *args):
            pass
    if life:
        threading.Thread(target=lambda: (time.sleep(life), os._exit(3)), daemon=True).start()
    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
    """
)


@pytest.fixture
def child(tmp_path: Path) -> list[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return [sys.executable, str(script)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split()[2] != "Z"


async def health(server: LocalServer) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{server.port}/health") as response:
        return response.status


async def test_starts_on_a_free_loopback_port_and_stops(child: list[str], tmp_path: Path) -> None:
    server = await LocalServer(child, tmp_path / "server.log").start()
    pid = server.pid
    assert pid is not None and server.base_url == f"http://127.0.0.1:{server.port}/v1"
    assert await health(server) == 200
    await server.stop()
    assert not alive(pid) and server.pid is None


async def test_a_dead_server_is_restarted_on_the_same_port(
    child: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await LocalServer(child, tmp_path / "server.log", backoff=0.01, poll_seconds=0.02).start()
    first, port = server.pid, server.port
    assert first is not None
    os.kill(first, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, "bot.llm.local_server"):
        await until(lambda: server.restarts == 1)
    assert server.pid not in (None, first) and server.port == port and await health(server) == 200
    assert any("restarting it in" in r.getMessage() for r in caplog.records)
    await server.stop()


async def test_restarts_are_bounded(
    child: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that keeps dying soon after it is ready is restarted twice, then given up on, loudly."""
    monkeypatch.setenv("CHILD_LIFE", "0.3")
    server = LocalServer(child, tmp_path / "server.log", max_restarts=2, backoff=0.01, poll_seconds=0.02)
    with caplog.at_level(logging.WARNING, "bot.llm.local_server"):
        await server.start()
        await until(lambda: server.gave_up)
    assert server.restarts == 2 and server.pid is None
    assert [r.levelname for r in caplog.records if "not restarting it again" in r.getMessage()] == ["ERROR"]
    await server.stop()


async def test_a_server_that_cannot_start_says_why(child: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHILD_FAIL", "1")
    with pytest.raises(LocalServerError, match="exited with code 1: error: cannot load the model"):
        await LocalServer(child, tmp_path / "server.log").start()


PARENT = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from bot.llm.local_server import LocalServer

    async def main():
        server = await LocalServer(sys.argv[2:], Path(sys.argv[1])).start()
        print(server.pid, flush=True)
        if "--hang" in sys.argv[2:]:
            time.sleep(600)

    asyncio.run(main())  # returns with the server running: only the exit can stop it
    """
)


@pytest.mark.parametrize("how", ["exits", "is killed"])
def test_the_server_never_outlives_advisor(child: list[str], tmp_path: Path, how: str) -> None:
    """On a normal exit the atexit hook stops it; when advisor is SIGKILLed, the kernel does (pdeathsig)."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    argv = [sys.executable, str(script), str(tmp_path / "server.log"), *child, *(["--hang"] if how == "is killed" else [])]
    parent = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    assert alive(pid)
    if how == "is killed":
        parent.kill()
    assert parent.wait(30) in (0, -signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)

