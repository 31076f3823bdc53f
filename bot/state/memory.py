"""Conversation memory, the interface: a turn, the budget rule, and what every memory does.

`SqliteMemory` (memory_sqlite, one process) and `RedisMemory` (memory_redis, every process
of a deployment) implement it with the same results; tests/test_memory*.py hold both to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

ROLES = frozenset({"user", "assistant", "summary"})


@dataclass(frozen=True)
class Turn:
    id: int
    conversation: str
    role: str
    content: str
    created_at: float
    tokens: int
    meta: dict[str, Any]
    feedback: int | None


def split_to_budget(turns: list[Turn], budget_tokens: int) -> tuple[list[Turn], list[Turn]]:
    """(kept, overflow): the newest turns within the budget (the newest even alone over it), and the rest."""
    start = len(turns)
    used = 0
    for index in range(len(turns) - 1, -1, -1):
        used += turns[index].tokens
        if used > budget_tokens and index < len(turns) - 1:
            break
        start = index
    return turns[start:], turns[:start]


class Memory(Protocol):
    """Every turn of every conversation, oldest first with its summary (if any) at the front."""

    async def add(
        self, conversation: str, role: str, content: str, meta: dict[str, Any] | None = None, at: float | None = None
    ) -> Turn: ...

    async def history(self, conversation: str) -> list[Turn]: ...

    async def fit(self, conversation: str, budget_tokens: int) -> tuple[list[Turn], list[Turn]]:
        """(kept, overflow) as `split_to_budget` cuts the history."""
        ...

    async def summarise(self, conversation: str, replaced: list[Turn], summary: str) -> Turn: ...

    async def drop(self, conversation: str, turns: list[Turn]) -> None: ...

    async def forget(self, conversation: str) -> int: ...

    async def purge_older_than(self, max_age_seconds: float, now: float | None = None) -> int: ...

    async def set_feedback(self, turn_id: int, value: int) -> bool: ...

    async def find_by_meta(self, conversation: str, key: str, value: str) -> Turn | None: ...

    async def conversations_of(self, prefix: str, author: str) -> list[str]: ...

    async def conversations(self) -> int: ...

    async def close(self) -> None: ...
