"""Conversation state: memory, rate limits, turn-taking, event de-duplication, the work journal
and the reindex lock. Each concern has an interface module (`memory`, `limits`, `dedupe`,
`journal`, `locks`) with its in-process (`*_local`, `memory_sqlite`) and Redis (`*_redis`)
implementations beside it. Only the composition root (`bot.wiring`) picks implementations;
everything else takes the interfaces, or the in-process defaults below.
"""

from __future__ import annotations

from bot.ports import StateUnavailable
from bot.state.dedupe import EventDedupe
from bot.state.journal import WorkJournal
from bot.state.limits import RateLimit, TurnTaking, taken
from bot.state.locks import ReindexLock
from bot.state.memory import AnsweredTurn, Memory, Review, Turn, TurnFilters


def local_dedupe() -> EventDedupe:
    """In-process de-duplication: enough for one process."""
    from bot.state.dedupe_local import Deduper

    return Deduper()


def local_bucket(per_minute: float) -> RateLimit:
    """One in-process token bucket (a channel's own rate)."""
    from bot.state.limits_local import TokenBucket

    return TokenBucket(per_minute)


def local_limits(user_per_minute: float, conversation_per_minute: float) -> tuple[RateLimit, RateLimit, TurnTaking]:
    """In-process (user bucket, conversation bucket, turn-taking)."""
    from bot.state.limits_local import ConversationLocks, TokenBucket

    return TokenBucket(user_per_minute), TokenBucket(conversation_per_minute), ConversationLocks()


__all__ = [
    "AnsweredTurn",
    "EventDedupe",
    "Memory",
    "RateLimit",
    "ReindexLock",
    "Review",
    "StateUnavailable",
    "Turn",
    "TurnFilters",
    "TurnTaking",
    "WorkJournal",
    "local_bucket",
    "local_dedupe",
    "local_limits",
    "taken",
]
