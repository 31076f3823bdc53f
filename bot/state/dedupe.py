"""Exactly-once handling of platform events, the interface.

A delivery `claim`s its key before work starts; a failed one is `release`d so the next
retry is answered. `dedupe_local` remembers keys in this process, `dedupe_redis` in Redis
for every process.
"""

from __future__ import annotations

from typing import Protocol


class EventDedupe(Protocol):
    async def claim(self, key: str) -> bool:
        """True for the first delivery of `key` within the window."""
        ...

    async def release(self, key: str) -> None: ...
