"""Answers in progress, the interface: what a process writes down so another can finish them.

Only `journal_redis` implements it: with one process and no Redis there is no other
process to take an answer over, so adapters are given `None`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol


class WorkJournal(Protocol):
    async def begin(self, key: str, work: dict[str, Any]) -> None: ...

    async def update(self, key: str, work: dict[str, Any]) -> None: ...

    async def finish(self, key: str) -> None: ...

    async def pending(self) -> int: ...

    async def watch(
        self,
        working: Callable[[], Iterable[str]],
        resume: Callable[[str, dict[str, Any]], Awaitable[None]],
        paused: Callable[[], bool] = lambda: False,
        interval: float | None = None,
    ) -> None: ...
