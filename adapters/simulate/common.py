"""What both `advisor simulate` commands share."""

from __future__ import annotations

import asyncio
import time
from typing import Any


async def settle(before: set[asyncio.Task[Any]], timeout: float = 300.0) -> None:
    """Wait for the work one payload started (platform libraries run handlers as tasks)."""
    deadline = time.monotonic() + timeout
    current = asyncio.current_task()
    while time.monotonic() < deadline:
        pending = [t for t in asyncio.all_tasks() if t not in before and t is not current and not t.done()]
        if not pending:
            return
        await asyncio.wait(pending, timeout=0.05)
