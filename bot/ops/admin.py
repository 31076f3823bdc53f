"""What admins can do from any platform: reindex (one at a time) and status.

Permission checks belong to the adapters (each platform knows its admins); this module
keeps the rules that hold everywhere: one reindex at a time, only configured paths.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bot.ports import Indexer, IndexReport


MAX_PATH_CHARS = 1024


class AdminError(Exception):
    """A refused admin request; the message is safe to show the admin."""


def advisor_version() -> str:
    try:
        return version("advisor")
    except PackageNotFoundError:
        return "unknown"


class Admin:
    def __init__(
        self, engine: Any, indexer: Indexer | None, store: Any, knowledge_paths: list[str], shared_lock: Any = None
    ) -> None:
        self.engine = engine
        self.indexer = indexer
        self.store = store
        self.roots = [Path(p).expanduser().resolve() for p in knowledge_paths]
        self.started = time.time()
        self._reindexing = asyncio.Lock()
        self.shared_lock = shared_lock  # with Redis: one reindex at a time across every process

    @property
    def reindexing(self) -> bool:
        return self._reindexing.locked()

    async def reindex_running(self) -> bool:
        if self._reindexing.locked():
            return True
        return bool(self.shared_lock is not None and await self.shared_lock.locked())

    def resolve(self, path: str | None) -> list[Path]:
        """The paths to index: the configured ones, or one inside them (never elsewhere on the server)."""
        if not self.roots:
            raise AdminError("No knowledge paths are configured (set ADVISOR_KNOWLEDGE_PATHS).")
        if not path:
            return self.roots
        if "\x00" in path or len(path) > MAX_PATH_CHARS:
            raise AdminError(f"That is not a usable path (a NUL byte, or longer than {MAX_PATH_CHARS} characters).")
        try:
            wanted = Path(path).expanduser()
            candidates = [wanted.resolve()] if wanted.is_absolute() else [(root / wanted).resolve() for root in self.roots]
            for candidate in candidates:
                if any(candidate == root or root in candidate.parents for root in self.roots) and candidate.exists():
                    return [candidate]
        except (OSError, RuntimeError, ValueError) as exc:  # too long a name, a link loop, an odd character
            raise AdminError(f"That path can't be read here ({type(exc).__name__}).") from exc
        raise AdminError(f"'{path}' is not inside the configured knowledge paths.")

    async def reindex(self, path: str | None, progress: Callable[[str, int], None] | None = None) -> IndexReport:
        """A full rebuild switched in at the end; a second request while one runs is refused."""
        if self.indexer is None:
            raise AdminError("Reindexing is not available in this process.")
        paths = self.resolve(path)
        if self._reindexing.locked():
            raise AdminError("A reindex is already running; wait for it to finish.")
        async with self._reindexing:
            if self.shared_lock is not None and not await self.shared_lock.acquire():
                raise AdminError("A reindex is already running in another process; wait for it to finish.")
            try:
                return await self.indexer.run(paths, full=True, progress=progress)
            finally:
                if self.shared_lock is not None:
                    await self.shared_lock.release()

    async def status(self) -> dict[str, Any]:
        uptime = int(time.time() - self.started)
        try:
            passages: int | str = await self.store.count()
        except Exception:  # the status command reports a broken store instead of failing
            passages = "unavailable"
        model = getattr(self.engine.model, "name", None)
        return {
            "version": advisor_version(),
            "mode": self.engine.mode,
            "model": model or "none (offline mode)",
            "indexed_passages": passages,
            "reindexing": await self.reindex_running(),
            "uptime": f"{uptime // 3600}h {uptime % 3600 // 60}m {uptime % 60}s",
        }
