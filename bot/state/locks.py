"""One reindex at a time across processes, the interface (`locks_redis` implements it).

In one process `Admin`'s own asyncio lock is enough; with Redis this one is held too.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol


class ReindexLock(Protocol):
    async def locked(self) -> bool: ...

    def hold(self) -> AbstractAsyncContextManager[None]:
        """Held for the block; raises `LockHeld` when another holder has it."""
        ...
