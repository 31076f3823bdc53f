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
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._conn:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("CREATE TABLE IF NOT EXISTS channel_settings (scope TEXT PRIMARY KEY, body TEXT NOT NULL)")

    async def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]] | int:
        def run() -> list[tuple[Any, ...]] | int:
            with self._lock, self._conn:
                cursor = self._conn.execute(sql, args)
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
        await asyncio.to_thread(self._conn.close)
