"""A real redis-server for the tests and the benches: a free loopback port, its own directory,
append-only file.

`RedisServer(directory).start()` / `.stop()` / `.start()` again keeps the port and the data
(appendfsync always by default: every acknowledged write survives a restart; the capacity bench
passes appendfsync="everysec"). Without the binary the tests fail, saying how to get it:
`make test` installs Debian's redis-server itself.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
import redis.asyncio

from tests.harness.loopback import free_port
from tests.harness.processes import terminate

ROOT = Path(__file__).resolve().parents[1]

ClientFactory = Callable[[], redis.asyncio.Redis]  # what the redis_clients fixture gives: one client per "process"


def redis_server_binary() -> str:
    """The redis-server path; fails the test, saying how to install it, when it is not installed."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if found:
        return found
    import pytest  # here, so the benches need no pytest

    pytest.fail("redis-server is not installed: run `make test` (it installs Debian's redis-server) "
                "or `apt-get install redis-server`")


class RedisServer:
    def __init__(self, directory: Path, password: str | None = None, appendfsync: str = "always") -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.appendfsync = appendfsync  # "always", "everysec" or "no" (redis.conf)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
        args += ["--appendfsync", self.appendfsync, "--dir", str(self.directory), "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        with self.admin(timeout=1) as probe:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {(self.directory / 'redis.log').read_text()[-2000:]}")
                try:
                    if probe.ping():
                        return self
                except redis.exceptions.ConnectionError:  # not listening yet, or still loading the AOF
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer PING in time")
                time.sleep(0.02)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): the append-only file is flushed and the port is free again."""
        if self.process is not None:
            terminate(self.process, grace=10)
        self.process = None

    @contextmanager
    def admin(self, timeout: float = 2.0) -> Iterator[redis.Redis]:
        """A plain (synchronous) client of this server, closed afterwards."""
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=timeout)
        try:
            yield client
        finally:
            client.close()

    def flush(self) -> None:
        with self.admin() as client:
            client.flushall()

    # -- what the capacity bench measures ---------------------------------------------------------

    def used_memory(self) -> int:
        with self.admin(5) as client:
            return int(client.info("memory")["used_memory"])

    def key_bytes(self) -> dict[str, int]:
        """MEMORY USAGE of every key, by name."""
        with self.admin(5) as client:
            names = list(client.scan_iter(count=1000))
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.memory_usage(name, samples=0)
            return {name.decode(): int(size or 0) for name, size in zip(names, pipe.execute(), strict=True)}


@contextmanager
def running_redis(directory: Path, password: str | None = None, appendfsync: str = "always") -> Iterator[RedisServer]:
    server = RedisServer(directory, password, appendfsync).start()
    try:
        yield server
    finally:
        server.stop()


# A separate process that takes a lock, says so, then waits to be killed: a crashed holder.
HOLDER = """
import asyncio, sys
from bot.state.redis_client import connect
from bot.state.limits_redis import RedisConversationLocks
from bot.state.locks_redis import RedisReindexLock

async def main(url, kind, key, lease):
    client = connect(url)
    if kind == "conversation":
        async with RedisConversationLocks(client, lease_seconds=lease).hold(key):
            print("held", flush=True)
            await asyncio.sleep(3600)
    else:
        lock = RedisReindexLock(client, name=key, lease_seconds=lease)
        print("held" if await lock.acquire() else "refused", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
"""


@contextmanager
def holder_process(url: str, kind: str, key: str, lease_seconds: float) -> Iterator[subprocess.Popen[str]]:
    """A process holding a `kind` ("conversation" or "reindex") lock on `key`; kill it to simulate a crash."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, kind, key, str(lease_seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline().strip() if ready else "nothing in 30 s"
        assert line == "held", f"the holder process said {line!r}"
        yield process
    finally:
        process.kill()
        process.wait(10)
