"""Reporting a long admin job (a reindex) to the admin who started it, without flooding them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


class ReindexProgress:
    """A reindex's `progress` callback that reports files read through `report` (an edit or a
    post) at most every `every` seconds; `settle()` waits for the reports still on their way."""

    def __init__(self, report: Callable[[str], Awaitable[Any]], every: float = 3.0, template: str = "Reindexing… {files} files read") -> None:
        self.report = report
        self.every = every
        self.template = template
        self.files = 0
        self._last = time.monotonic()
        self._pending: list[asyncio.Task[Any]] = []

    def __call__(self, kind: str, count: int) -> None:
        if kind == "file":
            self.files += count
        if time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            self._pending.append(asyncio.create_task(self.report(self.template.format(files=self.files))))

    async def settle(self) -> None:
        await asyncio.gather(*self._pending, return_exceptions=True)
