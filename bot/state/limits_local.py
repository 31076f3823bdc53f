"""Rate limits and per-conversation turn-taking, as plain in-process objects."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


class TokenBucket:
    """`rate_per_minute` tokens refill continuously up to `burst` (default: max(1, rate_per_minute)).

    One bucket per key, at most `max_keys` of them. A full bucket is the same as no bucket,
    so buckets are kept least recently used first and dropped from that end: full ones as
    soon as they get there, the next oldest (nearest to full) when over `max_keys`.
    """

    def __init__(
        self,
        rate_per_minute: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.rate = rate_per_minute
        self.burst = max(1.0, rate_per_minute) if burst is None else burst
        if self.burst <= 0 or max_keys < 1:
            raise ValueError("burst and max_keys must be positive")
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (level, at)

    def __len__(self) -> int:
        """How many keys have a bucket that is not known to be full."""
        return len(self._buckets)

    def _level(self, key: str, now: float) -> float:
        if key not in self._buckets:
            return self.burst
        level, at = self._buckets[key]
        return min(self.burst, level + (now - at) * self.rate / 60)

    def try_take(self, key: str, cost: float = 1.0) -> float:
        """0.0 if `cost` tokens were taken, else the seconds until they could be (nothing taken)."""
        if not 0 < cost <= self.burst:
            raise ValueError(f"cost must be in (0, {self.burst}], not {cost}")
        now = self._clock()
        level = self._level(key, now)
        wait = 0.0 if level >= cost else (cost - level) * 60 / self.rate
        self._buckets[key] = (level - cost if wait == 0 else level, now)
        self._buckets.move_to_end(key)
        self._prune(now)
        return wait

    def _prune(self, now: float) -> None:
        while self._buckets:
            oldest = next(iter(self._buckets))
            if len(self._buckets) <= self.max_keys and self._level(oldest, now) < self.burst:
                return
            del self._buckets[oldest]


@dataclass
class _Turns:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holding or waiting


class ConversationLocks:
    """One answer at a time per conversation: `async with locks.hold(key):` waits its turn (FIFO), never interleaves.

    A key's lock exists only while someone holds or waits for it, so memory stays bounded.
    """

    def __init__(self) -> None:
        self._turns: dict[str, _Turns] = {}

    def __len__(self) -> int:
        """How many conversations are answering or waiting."""
        return len(self._turns)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        turns = self._turns.get(key) or self._turns.setdefault(key, _Turns())
        turns.users += 1
        try:
            async with turns.lock:  # asyncio.Lock wakes its waiters in FIFO order
                yield
        finally:
            turns.users -= 1
            if not turns.users:
                del self._turns[key]

    def busy(self, key: str) -> bool:
        """Whether an answer in this conversation is under way or waiting."""
        return key in self._turns
