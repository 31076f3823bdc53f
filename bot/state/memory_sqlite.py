"""Conversation memory on SQLite: every turn of every conversation, kept across restarts.

One connection, guarded by a lock and used from worker threads, so no call blocks the
event loop. Turns are ordered by their time (then id); a conversation's summary, which
stands for its oldest turns, always comes first.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bot.state.memory import (
    FLAGGED_MODES,
    ROLES,
    AnsweredTurn,
    Review,
    Turn,
    TurnFilters,
    checked_review,
    split_to_budget,
)
from bot.tokens import estimate_tokens

T = TypeVar("T")

# AUTOINCREMENT: ids are never reused, so a feedback button on an old message cannot
# land on a newer turn after the old one was forgotten.
SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at REAL NOT NULL,
    tokens INTEGER NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    feedback INTEGER
);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns (conversation, id);
CREATE INDEX IF NOT EXISTS turns_by_time ON turns (created_at);
"""
# Added to databases made before the console's reviews (ALTER TABLE at start-up; the turns stay).
REVIEW_COLUMNS = {"review_status": "TEXT", "review_correction": "TEXT", "reviewed_at": "REAL"}
COLUMNS = "id, conversation, role, content, created_at, tokens, meta, feedback"
IN_ORDER = "ORDER BY role != 'summary', created_at, id"
REVIEWED = "review_status, review_correction, reviewed_at"
# the turn right before an answer in its conversation (summaries aside)
BEFORE = (
    f"SELECT {COLUMNS} FROM turns WHERE conversation = ? AND role != 'summary' "
    "AND (created_at < ? OR (created_at = ? AND id < ?)) ORDER BY created_at DESC, id DESC LIMIT 1"
)


def _turn(row: tuple[Any, ...]) -> Turn:
    id_, conversation, role, content, created_at, tokens, meta, feedback = row
    return Turn(id_, conversation, role, content, created_at, tokens, json.loads(meta), feedback)


def _placeholders(items: list[Any]) -> str:
    return ",".join("?" * len(items))


def migrate(conn: sqlite3.Connection) -> None:
    """The schema, and the review columns on a database made before them (its turns are kept)."""
    conn.executescript(SCHEMA)
    have = {row[1] for row in conn.execute("PRAGMA table_info(turns)")}
    for name, kind in REVIEW_COLUMNS.items():
        if name in have:
            continue
        try:
            with conn:
                conn.execute(f"ALTER TABLE turns ADD COLUMN {name} {kind}")
        except sqlite3.OperationalError as exc:  # another process (a web worker) added it first
            if "duplicate column" not in str(exc):
                raise


def _answered(conn: sqlite3.Connection, row: tuple[Any, ...]) -> AnsweredTurn:
    """A row of COLUMNS + REVIEWED, with the question found."""
    answer = _turn(row[:8])
    status, correction, reviewed_at = row[8:]
    before = conn.execute(
        BEFORE, (answer.conversation, answer.created_at, answer.created_at, answer.id)
    ).fetchone()
    question = _turn(before) if before is not None and before[2] == "user" else None
    review = None if status is None else Review(status, correction, reviewed_at)
    return AnsweredTurn(answer, question, review)


class SqliteMemory:
    def __init__(self, path: Path, count_tokens: Callable[[str], int] = estimate_tokens) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.count_tokens = count_tokens
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: survives a process crash, no fsync per commit
        migrate(self._conn)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in a worker thread, alone on the connection, in one transaction."""

        def locked() -> T:
            with self._lock, self._conn:
                return work(self._conn)

        return await asyncio.to_thread(locked)

    async def add(
        self, conversation: str, role: str, content: str, meta: dict[str, Any] | None = None, at: float | None = None
    ) -> Turn:
        if role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}, not {role!r}")
        # The time is taken here, in call order, not when a worker thread gets the lock.
        created_at = time.time() if at is None else at
        meta = meta or {}
        tokens = self.count_tokens(content)

        def insert(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO turns (conversation, role, content, created_at, tokens, meta) VALUES (?, ?, ?, ?, ?, ?)",
                (conversation, role, content, created_at, tokens, json.dumps(meta)),
            )
            return int(cursor.lastrowid or 0)

        turn_id = await self._run(insert)
        return Turn(turn_id, conversation, role, content, created_at, tokens, meta, None)

    async def history(self, conversation: str) -> list[Turn]:
        """Oldest first, the summary (if any) before everything."""
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT {COLUMNS} FROM turns WHERE conversation = ? {IN_ORDER}", (conversation,)
            ).fetchall()
        )
        return [_turn(row) for row in rows]

    async def fit(self, conversation: str, budget_tokens: int) -> tuple[list[Turn], list[Turn]]:
        """(kept, overflow): the newest turns within the budget, and the older ones before them.

        The newest turn is kept even alone over the budget. The summary is the oldest turn:
        kept only when everything after it fits too, so whenever there is overflow the old
        summary is part of it and a new summary of the overflow carries its content on.
        """
        return split_to_budget(await self.history(conversation), budget_tokens)

    async def summarise(self, conversation: str, replaced: list[Turn], summary: str) -> Turn:
        """Replace `replaced` (and any earlier summary) by one summary turn, atomically."""
        if not replaced:
            raise ValueError("nothing to summarise")
        created_at = max(turn.created_at for turn in replaced)
        ids = [turn.id for turn in replaced]
        tokens = self.count_tokens(summary)

        def swap(conn: sqlite3.Connection) -> int:
            conn.execute(
                f"DELETE FROM turns WHERE conversation = ? AND (role = 'summary' OR id IN ({_placeholders(ids)}))",
                (conversation, *ids),
            )
            cursor = conn.execute(
                "INSERT INTO turns (conversation, role, content, created_at, tokens) VALUES (?, 'summary', ?, ?, ?)",
                (conversation, summary, created_at, tokens),
            )
            return int(cursor.lastrowid or 0)

        turn_id = await self._run(swap)
        return Turn(turn_id, conversation, "summary", summary, created_at, tokens, {}, None)

    async def drop(self, conversation: str, turns: list[Turn]) -> None:
        ids = [turn.id for turn in turns]
        if ids:
            await self._run(
                lambda conn: conn.execute(
                    f"DELETE FROM turns WHERE conversation = ? AND id IN ({_placeholders(ids)})", (conversation, *ids)
                )
            )

    async def forget(self, conversation: str) -> int:
        """Delete the whole conversation; how many turns it had."""
        return await self._run(
            lambda conn: conn.execute("DELETE FROM turns WHERE conversation = ?", (conversation,)).rowcount
        )

    async def purge_older_than(self, max_age_seconds: float, now: float | None = None) -> int:
        """Retention: delete every turn, in every conversation, older than `max_age_seconds`."""
        cutoff = (time.time() if now is None else now) - max_age_seconds
        return await self._run(lambda conn: conn.execute("DELETE FROM turns WHERE created_at < ?", (cutoff,)).rowcount)

    async def set_feedback(self, turn_id: int, value: int) -> bool:
        """Record +1 or -1 on a turn; False when there is no such turn."""
        if value not in (1, -1):
            raise ValueError(f"feedback must be +1 or -1, not {value!r}")
        updated = await self._run(
            lambda conn: conn.execute("UPDATE turns SET feedback = ? WHERE id = ?", (value, turn_id)).rowcount
        )
        return updated > 0

    async def find_by_meta(self, conversation: str, key: str, value: str) -> Turn | None:
        """The newest turn of the conversation whose `meta[key] == value`."""
        if '"' in key:
            raise ValueError(f"meta key cannot contain a double quote: {key!r}")
        row = await self._run(
            lambda conn: conn.execute(
                f"SELECT {COLUMNS} FROM turns WHERE conversation = ? AND json_extract(meta, ?) = ? "
                "ORDER BY id DESC LIMIT 1",
                (conversation, f'$."{key}"', value),
            ).fetchone()
        )
        return None if row is None else _turn(row)

    async def conversations_of(self, prefix: str, author: str) -> list[str]:
        """Conversations whose key starts with `prefix` in which `author` wrote (for /forget)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT DISTINCT conversation FROM turns WHERE conversation LIKE ? ESCAPE '\\' "
                "AND role = 'user' AND json_extract(meta, '$.author') = ?",
                (escaped + "%", author),
            ).fetchall()
        )
        return sorted(row[0] for row in rows)

    async def conversations(self) -> int:
        """How many conversations have at least one turn."""
        return await self._run(lambda conn: conn.execute("SELECT COUNT(DISTINCT conversation) FROM turns").fetchone()[0])

    async def answered_turns(
        self, filters: TurnFilters | None = None, limit: int = 50, offset: int = 0
    ) -> list[AnsweredTurn]:
        """Assistant turns passing `filters`, newest first (time, then id), `limit` from `offset`."""
        filters = filters or TurnFilters()
        where = ["role = 'assistant'"]
        args: list[Any] = []
        if filters.disliked:
            where.append("feedback = -1")
        if filters.prefix:
            where.append("substr(conversation, 1, ?) = ?")  # a plain, case-sensitive prefix
            args.extend((len(filters.prefix), filters.prefix))
        if filters.flagged:
            where.append(
                f"(json_extract(meta, '$.mode') IN ({_placeholders(list(FLAGGED_MODES))}) "
                "OR json_type(meta, '$.flagged') = 'true')"
            )
            args.extend(FLAGGED_MODES)
        sql = (
            f"SELECT {COLUMNS}, {REVIEWED} FROM turns WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
        )

        def read(conn: sqlite3.Connection) -> list[AnsweredTurn]:
            rows = conn.execute(sql, (*args, max(0, limit), max(0, offset))).fetchall()
            return [_answered(conn, row) for row in rows]

        return await self._run(read)

    async def set_review(self, turn_id: int, status: str, correction: str | None = None, at: float | None = None) -> bool:
        """Review an assistant turn; False when there is no such assistant turn."""
        stored = checked_review(status, correction)
        reviewed_at = time.time() if at is None else at
        updated = await self._run(
            lambda conn: conn.execute(
                "UPDATE turns SET review_status = ?, review_correction = ?, reviewed_at = ? "
                "WHERE id = ? AND role = 'assistant'",
                (status, stored, reviewed_at, turn_id),
            ).rowcount
        )
        return updated > 0

    async def reviewed_turns(self) -> list[AnsweredTurn]:
        """Every reviewed answer with its question, oldest first."""

        def read(conn: sqlite3.Connection) -> list[AnsweredTurn]:
            rows = conn.execute(
                f"SELECT {COLUMNS}, {REVIEWED} FROM turns WHERE role = 'assistant' AND review_status IS NOT NULL "
                "ORDER BY created_at, id"
            ).fetchall()
            return [_answered(conn, row) for row in rows]

        return await self._run(read)

    async def close(self) -> None:
        def close() -> None:
            with self._lock:  # after any call in flight
                self._conn.close()

        await asyncio.to_thread(close)
