"""Answers in progress, written down in Redis so that a process killed mid-answer does not lose them.

An adapter `begin`s an entry when it takes a message (with what it needs to answer it again:
the event, and later the placeholder it posted), keeps its lease alive while it works, and
`finish`es it at the end. A process that dies leaves the entry behind with a lapsing lease;
any live process, a restarted one included, `take_over`s lapsed entries and answers them,
editing the placeholder already on screen. Platforms do not redeliver an acknowledged event,
so without this a crash would leave "Thinking…" up forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio

from bot.ports import StateUnavailable
from bot.state.redis_client import DEFAULT_PREFIX, guarded

log = logging.getLogger(__name__)

# entries: hash key -> JSON work; leases: sorted set key -> lease expiry (ms, server clock)
TAKE_OVER = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[2]))
local taken = {}
for _, key in ipairs(lapsed) do
  local work = redis.call('HGET', KEYS[1], key)
  if work then
    redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[1]), key)
    table.insert(taken, key)
    table.insert(taken, work)
  else
    redis.call('ZREM', KEYS[2], key)
  end
end
return taken
"""
RENEW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for i, key in ipairs(ARGV) do
  if i > 1 and redis.call('HEXISTS', KEYS[1], key) == 1 then
    redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[1]), key)
  end
end
return 1
"""
BEGIN = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[3]), ARGV[1])
return 1
"""


class RedisWorkJournal:
    def __init__(
        self, client: redis.asyncio.Redis, lease_seconds: float = 60.0, name: str = "slack", prefix: str = DEFAULT_PREFIX
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self.client = client
        self.lease_seconds = lease_seconds
        self.entries = f"{prefix}work:{name}:entries"
        self.leases = f"{prefix}work:{name}:leases"
        self.owner = uuid.uuid4().hex  # informational: which process last wrote an entry
        self._begin = client.register_script(BEGIN)
        self._renew = client.register_script(RENEW)
        self._take_over = client.register_script(TAKE_OVER)

    @property
    def _lease_ms(self) -> int:
        return max(1, int(self.lease_seconds * 1000))

    @guarded
    async def begin(self, key: str, work: dict[str, Any]) -> None:
        await self._begin(keys=[self.entries, self.leases], args=[key, json.dumps({**work, "owner": self.owner}), self._lease_ms])

    @guarded
    async def update(self, key: str, work: dict[str, Any]) -> None:
        """Replace an entry's work (e.g. with the placeholder now posted); its lease is unchanged."""
        await self.client.hset(self.entries, key, json.dumps({**work, "owner": self.owner}))

    @guarded
    async def renew(self, keys: list[str]) -> None:
        """Extend the leases of entries still being worked on (finished ones are left alone)."""
        if keys:
            await self._renew(keys=[self.entries, self.leases], args=[self._lease_ms, *keys])

    @guarded
    async def finish(self, key: str) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(self.entries, key)
            pipe.zrem(self.leases, key)
            await pipe.execute()

    @guarded
    async def take_over(self, limit: int = 50) -> list[tuple[str, dict[str, Any]]]:
        """Entries whose lease lapsed (their process died), now leased to this process."""
        flat = await self._take_over(keys=[self.entries, self.leases], args=[self._lease_ms, limit])
        return [(str(flat[i]), json.loads(flat[i + 1])) for i in range(0, len(flat), 2)]

    @guarded
    async def pending(self) -> int:
        return int(await self.client.hlen(self.entries))

    async def watch(
        self,
        working: Callable[[], Iterable[str]],
        resume: Callable[[str, dict[str, Any]], Awaitable[None]],
        paused: Callable[[], bool] = lambda: False,
        interval: float | None = None,
    ) -> None:
        """Forever: renew the leases of this process's `working` keys, and `resume` (in new tasks)
        entries whose process died, unless `paused` (shutting down)."""
        every = interval or self.lease_seconds / 3
        tasks: set[asyncio.Task[None]] = set()
        while True:
            try:
                await self.renew(sorted(working()))
                if not paused():
                    for key, work in await self.take_over():
                        log.warning("answering %s, left unfinished by a process that stopped", key)
                        task = asyncio.create_task(resume(key, work))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
            except StateUnavailable as exc:
                log.error("cannot check for unfinished answers: %s", exc)
            await asyncio.sleep(every)
