"""Per-channel settings in SQLite under the data directory (one process, or several on one host)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from bot.state.channel_settings import ChannelSettings, check_scope, check_settings


class SqliteChannelSettings:
    """The file is opened on first use, so a process that never reads settings (`advisor chat`)
    never opens or creates it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise sqlite3.ProgrammingError("the channel settings store is closed")
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False)
            with conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS channel_settings (scope TEXT PRIMARY KEY, body TEXT NOT NULL)")
            self._conn = conn
        return self._conn

    async def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]] | int:
        def run() -> list[tuple[Any, ...]] | int:
            with self._lock:
                conn = self._connection()
                with conn:
                    cursor = conn.execute(sql, args)
                    return cursor.fetchall() if sql.lstrip().upper().startswith("SELECT") else cursor.rowcount

        return await asyncio.to_thread(run)

    async def get(self, scope: str) -> ChannelSettings | None:
        rows = await self._run("SELECT body FROM channel_settings WHERE scope = ?", (check_scope(scope),))
        assert isinstance(rows, list)
        return ChannelSettings.from_dict(json.loads(rows[0][0])) if rows else None

    async def put(self, scope: str, settings: ChannelSettings) -> ChannelSettings:
        scope, checked = check_scope(scope), check_settings(settings)
        await self._run(
            "INSERT INTO channel_settings (scope, body) VALUES (?, ?) ON CONFLICT(scope) DO UPDATE SET body = excluded.body",
            (scope, json.dumps(checked.to_dict())),
        )
        return checked

    async def delete(self, scope: str) -> bool:
        return bool(await self._run("DELETE FROM channel_settings WHERE scope = ?", (check_scope(scope),)))

    async def all(self) -> dict[str, ChannelSettings]:
        rows = await self._run("SELECT scope, body FROM channel_settings ORDER BY scope")
        assert isinstance(rows, list)
        return {scope: ChannelSettings.from_dict(json.loads(body)) for scope, body in rows}

    async def close(self) -> None:
        def run() -> None:
            with self._lock:
                self._closed = True
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(run)
