"""One reindex at a time across every process: a Redis lease lock.

`acquire()` never waits: a second reindex is refused, not queued (as `Admin.reindex`). The
owner's token is the value; a background task renews the lease while held, and only the
owner can release it (compare-and-delete), so a lock that expired and was taken by another
process is never deleted by the first. If the owner dies, the lock frees itself after
`lease_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio

from bot.state.redis_client import DEFAULT_PREFIX, RedisUnavailable, guard, guarded, raise_if_cancelled

log = logging.getLogger(__name__)

# KEYS: lock; ARGV: token -> 1 if it was ours and is gone
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lock; ARGV: token, lease ms -> 0 when it is no longer ours
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class LockHeld(RuntimeError):
    """`hold()` found the lock taken by another process (or by this object already)."""


class RedisReindexLock:
    """Non-blocking, not re-entrant; use `acquire`/`release`, or `async with lock.hold():` (raises `LockHeld`)."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        name: str = "reindex",
        lease_seconds: float = 60.0,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self.client = client
        self.name = name
        self.lease_seconds = lease_seconds
        self.key = f"{prefix}lock:{name}"
        self._lease_ms = max(1, int(lease_seconds * 1000))
        self._token: str | None = None
        self._renewal: asyncio.Task[None] | None = None
        self._release = client.register_script(RELEASE)
        self._renew = client.register_script(RENEW)

    @property
    def held(self) -> bool:
        """Whether this object acquired the lock (and has not released it)."""
        return self._token is not None

    @guarded
    async def acquire(self) -> bool:
        """Take the lock now if it is free; False if anyone (this object included) holds it."""
        if self._token is not None:
            return False
        token = uuid.uuid4().hex
        if not await self.client.set(self.key, token, nx=True, px=self._lease_ms):
            return False
        self._token = token
        self._renewal = asyncio.create_task(self._keep(token))
        return True

    async def _keep(self, token: str) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            ours = True
            try:
                async with guard(self.client):
                    ours = await self._renew(keys=[self.key], args=[token, self._lease_ms])
            except RedisUnavailable as error:
                log.warning("lock %s: could not renew the lease: %s", self.name, error)
            raise_if_cancelled()
            if not ours:
                log.warning("lock %s: the lease lapsed and the lock is no longer ours", self.name)
                return

    async def release(self) -> None:
        """Give the lock up if this object holds it; a no-op otherwise (never frees another owner's lock)."""
        token, self._token = self._token, None
        renewal, self._renewal = self._renewal, None
        if renewal is not None:
            renewal.cancel()
            await asyncio.wait([renewal])
        if token is not None:
            async with guard(self.client):
                await self._release(keys=[self.key], args=[token])

    @guarded
    async def locked(self) -> bool:
        """Whether any process holds the lock."""
        return bool(await self.client.exists(self.key))

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if not await self.acquire():
            raise LockHeld(f"the {self.name} lock is held by another process")
        try:
            yield
        finally:
            try:
                await self.release()
            except RedisUnavailable as error:  # the lease expires on its own
                log.warning("lock %s: could not release: %s", self.name, error)
