"""A reindex started from the console, run in the background so the page can follow it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bot.ops.admin import Admin, AdminError

log = logging.getLogger(__name__)


class ReindexJob:
    """One run of `Admin.reindex` with the Indexer's progress counted: ("file", n) and ("chunks", n)."""

    def __init__(self, admin: Admin, path: str | None) -> None:
        self.admin = admin
        self.path = path
        self.state = "running"
        self.files = 0
        self.chunks = 0
        self.error: str | None = None
        self.summary: str | None = None
        self.started = time.time()
        self.finished: float | None = None
        self.task: asyncio.Task[None] = asyncio.create_task(self._run())

    def _progress(self, kind: str, n: int) -> None:
        if kind == "file":
            self.files += n
        elif kind == "chunks":
            self.chunks += n

    async def _run(self) -> None:
        try:
            report = await self.admin.reindex(self.path, progress=self._progress)
        except AdminError as exc:
            self.state, self.error = "failed", str(exc)
        except Exception as exc:  # shown to the admin as a failure; the details go to the server log
            log.exception("console reindex failed")
            self.state, self.error = "failed", f"{type(exc).__name__} (see the server log)"
        else:
            self.state, self.summary = "done", report.summary()
        self.finished = time.time()

    @property
    def running(self) -> bool:
        return self.state == "running"

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "path": self.path,
            "files": self.files,
            "chunks": self.chunks,
            "error": self.error,
            "summary": self.summary,
            "started": self.started,
            "finished": self.finished,
        }
