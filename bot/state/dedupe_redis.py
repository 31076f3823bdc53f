"""`Deduper` shared by every process: a platform retry that lands on another process is still answered once."""

from __future__ import annotations

import redis.asyncio

from bot.state.dedupe_local import DEFAULT_TTL
from bot.state.redis_client import DEFAULT_PREFIX, guarded


class RedisDeduper:
    """`claim` is one SET NX PX: exactly one delivery of a key wins, in all processes, for `ttl` seconds."""

    def __init__(self, client: redis.asyncio.Redis, ttl: float = DEFAULT_TTL, prefix: str = DEFAULT_PREFIX) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.client = client
        self.ttl = ttl
        self.prefix = f"{prefix}dedupe:"

    @guarded
    async def claim(self, key: str) -> bool:
        """True for the first delivery of `key` (in flight or done within the window)."""
        return bool(await self.client.set(self.prefix + key, "1", nx=True, px=max(1, int(self.ttl * 1000))))

    @guarded
    async def release(self, key: str) -> None:
        """The claimed work failed before anything was posted: let a retry through."""
        await self.client.delete(self.prefix + key)
