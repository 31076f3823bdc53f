"""Conversation memory, the interface: a turn, the budget rule, and what every memory does,
including the admins' reviews of answers (the console's conversations page) and their filters.

`SqliteMemory` (memory_sqlite, one process) and `RedisMemory` (memory_redis, every process
of a deployment) implement it with the same results; tests/test_memory*.py hold both to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

ROLES = frozenset({"user", "assistant", "summary"})
REVIEWS = frozenset({"good", "corrected"})
MAX_CORRECTION_CHARS = 8000
# the modes of answers that were not ordinary answers: the crisis protocol, a retracted (moderated) answer
FLAGGED_MODES = ("crisis", "moderated", "rejected")


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


@dataclass(frozen=True)
class Review:
    """An admin's verdict on an answer (the console's conversations page): "good", or "corrected"
    with the answer it should have been."""

    status: str
    correction: str | None
    reviewed_at: float


@dataclass(frozen=True)
class AnsweredTurn:
    """An assistant turn with its question (the user turn right before it, None when that turn is
    not a user's or is gone) and its review, if any."""

    answer: Turn
    question: Turn | None
    review: Review | None


@dataclass(frozen=True)
class TurnFilters:
    """Which answered turns `answered_turns` lists: all, or only 👎 ones, one conversation-key prefix
    (a plain, case-sensitive prefix), flagged ones (see `is_flagged`)."""

    disliked: bool = False
    prefix: str = ""
    flagged: bool = False


def is_flagged(meta: dict[str, Any]) -> bool:
    """A crisis, moderated or rejected answer, or one whose meta says `"flagged": true`."""
    return meta.get("mode") in FLAGGED_MODES or meta.get("flagged") is True


def matches(filters: TurnFilters, turn: Turn) -> bool:
    """Whether an assistant turn passes `filters` (what both memories' queries select)."""
    if filters.disliked and turn.feedback != -1:
        return False
    if not turn.conversation.startswith(filters.prefix):
        return False
    return not filters.flagged or is_flagged(turn.meta)


def checked_review(status: str, correction: str | None) -> str | None:
    """The correction to store for a review (None for "good"); ValueError for a bad status or correction."""
    if status not in REVIEWS:
        raise ValueError(f"review status must be one of {sorted(REVIEWS)}, not {status!r}")
    if status == "good":
        if correction:
            raise ValueError("an answer marked good has no correction")
        return None
    text = (correction or "").strip()
    if not text:
        raise ValueError("a corrected answer cannot be empty")
    if len(text) > MAX_CORRECTION_CHARS:
        raise ValueError(f"a corrected answer is at most {MAX_CORRECTION_CHARS:,} characters, not {len(text):,}")
    return text


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

    async def answered_turns(
        self, filters: TurnFilters | None = None, limit: int = 50, offset: int = 0
    ) -> list[AnsweredTurn]:
        """Assistant turns passing `filters`, newest first (time, then id), `limit` from `offset`."""
        ...

    async def set_review(self, turn_id: int, status: str, correction: str | None = None, at: float | None = None) -> bool:
        """Review an assistant turn ("good", or "corrected" with the correction, trimmed, replacing any
        earlier review); False when there is no such assistant turn. ValueError as `checked_review`."""
        ...

    async def reviewed_turns(self) -> list[AnsweredTurn]:
        """Every reviewed answer (good or corrected) with its question, oldest first: the material of a
        fine-tuning set built from feedback."""
        ...

    async def close(self) -> None: ...
