"""Exactly-once handling of platform events that may arrive more than once.

A delivery `claim`s its key before work starts; a finished one is remembered for `ttl`
seconds (longer than any platform's retry schedule), a failed one is `release`d so the
next retry is answered. In-process; `bot.state.dedupe_redis.RedisDeduper` is the shared version
with the same (async) methods.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_TTL = 15 * 60.0  # Slack retries after about 1 s, 1 min and 5 min


class Deduper:
    def __init__(self, ttl: float = DEFAULT_TTL, max_keys: int = 200_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self.clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def _expire(self, now: float) -> None:
        while self._seen and (next(iter(self._seen.values())) <= now or len(self._seen) > self.max_keys):
            self._seen.popitem(last=False)

    async def claim(self, key: str) -> bool:
        """True for the first delivery of `key` (in flight or done within the window)."""
        now = self.clock()
        self._expire(now)
        if key in self._seen:
            return False
        self._seen[key] = now + self.ttl
        return True

    async def release(self, key: str) -> None:
        """The claimed work failed before anything was posted: let a retry through."""
        self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)
