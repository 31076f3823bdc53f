"""Ingestion: walk -> load -> chunk -> embed only what changed -> upsert; drop what is gone.

A file whose bytes (and chunking settings) are unchanged is skipped without parsing.
A changed file is re-chunked; chunks whose text is unchanged keep their id and are not
embedded again, new ones are embedded, vanished ones are deleted. A file that cannot be
read is reported and skipped, and its chunks already in the index stay. Embedding of one
batch overlaps with parsing and writing of the next.

Every chunk is scanned for text addressed to the model (retrieval/injection.py); the
reasons are stored in its payload as `extra["suspicious"]`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bot.models import Chunk
from bot.ports import Embedder, SparseEncoder
from retrieval import injection
from retrieval.chunking import chunk_document, embedding_text
from retrieval.loaders import SUPPORTED, FieldMapping, LoaderError, load

BATCH = 64


@dataclass
class IngestReport:
    files_seen: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_kept: int = 0
    chunks_removed: int = 0
    sources_removed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def throughput(self) -> float:
        """Chunks embedded and stored per second of the whole run."""
        return self.chunks_embedded / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        lines = [
            f"{self.files_seen} files: {self.files_indexed} indexed, {self.files_unchanged} unchanged, "
            f"{len(self.skipped)} skipped",
            f"chunks: {self.chunks_embedded} embedded, {self.chunks_kept} kept, {self.chunks_removed} removed "
            f"({len(self.sources_removed)} deleted files)",
            f"{self.seconds:.1f} s, {self.throughput:.1f} chunks/s",
        ]
        lines += [f"skipped {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


Progress = Callable[[str, int], None]
"""Called with ("file", 1) per file done and ("chunks", n) per n chunks stored."""


LINK_LEAVES = "a link to a file outside the folder, not followed (ADVISOR_RETRIEVAL_FOLLOW_LINKS=true follows it)"


def discover(
    paths: Sequence[Path], report: IngestReport, follow_links: bool = False
) -> tuple[list[Path], list[Path]]:
    """Files to read (sorted, hidden ones left out) and the folders they came from. A link inside a
    folder that leads out of it (an env file, a home directory) is skipped unless `follow_links`."""
    files: list[Path] = []
    roots: list[Path] = []
    for given in paths:
        path = given.expanduser().resolve()
        if path.is_dir():
            roots.append(path)
            for candidate in sorted(path.rglob("*")):
                relative = candidate.relative_to(path).parts
                if not candidate.is_file() or any(part.startswith(".") for part in relative):
                    continue
                target = candidate.resolve()
                if not follow_links and target != path and path not in target.parents:
                    report.skipped.append((str(candidate), LINK_LEAVES))
                    continue
                files.append(candidate)
        elif path.is_file():
            files.append(path)
        else:
            roots.append(path)  # a file or folder that is gone: its chunks go too
            report.skipped.append((str(given), "no such file or directory"))
    return files, roots


def _under(source: str, roots: list[Path]) -> bool:
    return any(source == str(root) or source.startswith(str(root) + "/") for root in roots)


class Ingestor:
    """Feeds files into one store with one embedder and sparse encoder."""

    def __init__(
        self,
        store: Any,
        embedder: Embedder,
        sparse: SparseEncoder,
        max_tokens: int = 200,
        overlap: int = 40,
        mapping: FieldMapping | None = None,
        follow_links: bool = False,
    ) -> None:
        self.follow_links = follow_links
        self.store = store
        self.embedder = embedder
        self.sparse = sparse
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.mapping = mapping or FieldMapping()

    def _file_hash(self, data: bytes) -> str:
        settings = (
            f"{self.max_tokens}|{self.overlap}|{self.mapping.signature()}|{self.embedder.name}"
            f"|injection-{injection.VERSION}"
        )
        return hashlib.sha256(data + b"\x00" + settings.encode()).hexdigest()[:32]

    async def run(self, paths: Sequence[Path], full: bool = False, progress: Progress | None = None) -> IngestReport:
        """Ingest `paths`. `full` rebuilds a fresh index and switches to it at the end."""
        report = IngestReport()
        started = time.perf_counter()
        files, roots = discover(paths, report, self.follow_links)
        report.files_seen = len(files)
        target = await self.store.begin_rebuild() if full else self.store
        try:
            await self._ingest(target, files, roots, full, report, progress or (lambda kind, n: None))
        except BaseException:
            if full:
                await self.store.abort_rebuild(target)
            raise
        if full:
            await self.store.commit_rebuild(target)
        report.seconds = time.perf_counter() - started
        return report

    async def _ingest(
        self, store: Any, files: list[Path], roots: list[Path], full: bool, report: IngestReport, progress: Progress
    ) -> None:
        known_hashes = {} if full else await store.file_hashes()
        ids_by_source = {} if full else await store.ids_by_source()
        queue: asyncio.Queue[list[Chunk] | None] = asyncio.Queue(maxsize=2)
        writer = asyncio.create_task(self._write(store, queue, report, progress))
        pending: list[Chunk] = []
        try:
            for path in files:
                source = str(path)
                try:
                    data = await asyncio.to_thread(path.read_bytes)
                except OSError as exc:
                    report.skipped.append((source, f"cannot read: {exc.strerror or exc}"))
                    progress("file", 1)
                    continue
                digest = self._file_hash(data)
                old_ids = ids_by_source.get(source, set())
                if known_hashes.get(source) == f"{digest}:{len(old_ids)}":
                    report.files_unchanged += 1
                    progress("file", 1)
                    continue
                try:
                    document = await asyncio.to_thread(load, path, self.mapping)
                    chunks = chunk_document(document, "", self.max_tokens, self.overlap)
                    # The hash carries the chunk count, so a file cut short by a crash is redone.
                    # Passages that address the model are flagged (docs/prompt-injection.md).
                    chunks = [
                        replace(chunk, file_hash=f"{digest}:{len(chunks)}", extra=injection.flag(chunk))
                        for chunk in chunks
                    ]
                except LoaderError as exc:
                    report.skipped.append((source, str(exc)))
                    progress("file", 1)
                    continue
                new_ids = {chunk.id for chunk in chunks}
                kept = [chunk for chunk in chunks if chunk.id in old_ids]
                if kept:
                    await store.update_locations(kept)
                report.chunks_kept += len(kept)
                gone = sorted(old_ids - new_ids)
                await store.delete(gone)
                report.chunks_removed += len(gone)
                report.files_indexed += 1
                pending.extend(chunk for chunk in chunks if chunk.id not in old_ids)
                while len(pending) >= BATCH:
                    await queue.put(pending[:BATCH])
                    pending = pending[BATCH:]
                progress("file", 1)
            if pending:
                await queue.put(pending)
            await queue.put(None)
            await writer
        finally:
            if not writer.done():
                writer.cancel()
        on_disk = {str(path) for path in files}
        for source, ids in ids_by_source.items():
            if _under(source, roots) and source not in on_disk:
                await store.delete(sorted(ids))
                report.chunks_removed += len(ids)
                report.sources_removed.append(source)

    async def _write(
        self, store: Any, queue: asyncio.Queue[list[Chunk] | None], report: IngestReport, progress: Progress
    ) -> None:
        while (batch := await queue.get()) is not None:
            texts = [embedding_text(chunk) for chunk in batch]
            started = time.perf_counter()
            dense = await self.embedder.embed_documents(texts)
            report.embed_seconds += time.perf_counter() - started
            sparse = [self.sparse.encode_document(text) for text in texts]
            await store.upsert(batch, dense, sparse)
            report.chunks_embedded += len(batch)
            progress("chunks", len(batch))


__all__ = ["SUPPORTED", "FieldMapping", "IngestReport", "Ingestor"]
