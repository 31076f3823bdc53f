"""Rate limits and turn-taking, the interface.

`limits_local` keeps them in this process (plain objects, `try_take` answers at once);
`limits_redis` shares them across every process (`try_take` is awaited). Callers await
`taken(...)` so either works.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class RateLimit(Protocol):
    """A token bucket per key."""

    def try_take(self, key: str, cost: float = 1.0) -> float | Awaitable[float]:
        """0.0 if `cost` tokens were taken, else the seconds until they could be."""
        ...


class TurnTaking(Protocol):
    """One answer at a time per conversation, in arrival order."""

    def hold(self, key: str) -> AbstractAsyncContextManager[None]: ...


async def taken(result: float | Awaitable[float]) -> float:
    """A rate limiter's answer, whether it is in-process (a number) or shared (awaited)."""
    return await result if inspect.isawaitable(result) else result  # type: ignore[return-value]
