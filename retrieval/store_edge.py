"""The embedded default store: Qdrant Edge, Qdrant's own engine running in this process.

A collection is a folder holding shard folders and a `CURRENT` file naming the live one.
A full reindex fills a fresh shard and then replaces `CURRENT` atomically (the
embedded counterpart of a Qdrant alias switch); searches hold a reference to the shard
they started on, so none sees a half-built index.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import qdrant_edge as qe

from bot.models import Chunk, Hit, SearchMode, SparseVector
from retrieval.payload import (
    DENSE,
    FOLDERS,
    SPARSE,
    SourceSummary,
    consistent_hashes,
    from_payload,
    location_payload,
    relevance,
    stored_payload,
    summarise,
)
from retrieval.store_errors import StoreError

CURRENT = "CURRENT"


def _config(dim: int) -> qe.EdgeConfig:
    return qe.EdgeConfig(
        vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
        sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    )


class EdgeStore:
    """A `VectorStore` over a Qdrant Edge shard on disk."""

    def __init__(self, folder: Path, shard_name: str, shard: qe.EdgeShard, dim: int) -> None:
        self.folder = folder
        self.dim = dim
        self._shard_name = shard_name
        self._shard = shard
        self._write_lock = threading.Lock()
        self._readers: dict[str, int] = {}

    @contextmanager
    def _reading(self) -> Iterator[qe.EdgeShard]:
        """The live shard, counted as in use until the read ends."""
        name, shard = self._shard_name, self._shard
        self._readers[name] = self._readers.get(name, 0) + 1
        try:
            yield shard
        finally:
            self._readers[name] -= 1

    @classmethod
    def open(cls, root: Path, collection: str, dim: int) -> EdgeStore:
        """Open (or create) the collection under `root`."""
        folder = root / collection
        folder.mkdir(parents=True, exist_ok=True)
        pointer = folder / CURRENT
        if pointer.exists():
            name = pointer.read_text().strip()
            try:  # passing the config makes the engine check the vector size
                shard = qe.EdgeShard.load(str(folder / name), _config(dim))
            except Exception as exc:  # the engine raises plain exceptions with its reason
                raise StoreError(
                    f"cannot open the index at {folder / name} for {dim}-dimensional vectors: {exc}. "
                    "If the embedding model changed, rebuild with `advisor ingest --full PATH`."
                ) from exc
            for stale in folder.glob("shard-*"):  # left by a rebuild that never finished
                if stale.name != name:
                    shutil.rmtree(stale, ignore_errors=True)
            return cls(folder, name, shard, dim)
        store = cls._fresh(folder, dim)
        store._publish()
        return store

    @classmethod
    def _fresh(cls, folder: Path, dim: int) -> EdgeStore:
        name = f"shard-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        shard = qe.EdgeShard.create(str(folder / name), _config(dim))
        shard.update(qe.UpdateOperation.create_field_index("source", qe.PayloadSchemaType.Keyword))
        return cls(folder, name, shard, dim)

    def _publish(self) -> None:
        tmp = self.folder / f".{CURRENT}.tmp"
        tmp.write_text(self._shard_name)
        os.replace(tmp, self.folder / CURRENT)

    # -- writes -------------------------------------------------------------

    def _update(self, operation: qe.UpdateOperation) -> None:
        with self._write_lock:
            self._shard.update(operation)

    async def upsert(
        self, chunks: Sequence[Chunk], dense: Sequence[Sequence[float]], sparse: Sequence[SparseVector]
    ) -> None:
        now = time.time()
        points = [
            qe.Point(
                chunk.id,
                {DENSE: list(vec), SPARSE: qe.SparseVector(list(sp.indices), list(sp.values))},
                stored_payload(chunk, now),
            )
            for chunk, vec, sp in zip(chunks, dense, sparse, strict=True)
        ]
        if points:
            await asyncio.to_thread(self._update, qe.UpdateOperation.upsert_points(points))

    async def update_locations(self, chunks: Sequence[Chunk]) -> None:
        def run() -> None:
            for chunk in chunks:
                self._update(qe.UpdateOperation.set_payload([chunk.id], location_payload(chunk)))

        await asyncio.to_thread(run)

    async def delete(self, ids: Sequence[str]) -> None:
        if ids:
            await asyncio.to_thread(self._update, qe.UpdateOperation.delete_points(list(ids)))

    # -- reads --------------------------------------------------------------

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        with self._reading() as shard:
            records = await asyncio.to_thread(shard.retrieve, list(ids), False, False)
        return {str(record.id) for record in records}

    def _scroll(self, shard: qe.EdgeShard, fields: list[str] | bool) -> list[qe.Record]:
        records: list[qe.Record] = []
        offset = None
        while True:
            page, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=1000, with_payload=fields))
            records.extend(page)
            if offset is None:
                return records

    async def ids_by_source(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        with self._reading() as shard:
            records = await asyncio.to_thread(self._scroll, shard, ["source"])
        for record in records:
            found.setdefault(str((record.payload or {}).get("source", "")), set()).add(str(record.id))
        return found

    async def file_hashes(self) -> dict[str, str]:
        with self._reading() as shard:
            records = await asyncio.to_thread(self._scroll, shard, ["source", "file_hash"])
        return consistent_hashes(records)

    async def sources(self) -> list[SourceSummary]:
        """Each source with its chunk count, last indexed time and suspicious passages (reads every payload)."""
        with self._reading() as shard:
            records = await asyncio.to_thread(self._scroll, shard, True)
        return summarise(records)

    async def search(
        self,
        dense: Sequence[float] | None,
        sparse: SparseVector | None,
        mode: SearchMode,
        limit: int,
        prefetch: int,
        weights: tuple[float, float] = (1.0, 1.0),
        rrf_k: int = 60,
        fusion: str = "rrf",
        sources: Sequence[str] | None = None,
    ) -> list[Hit]:
        """The best passages; with `sources` (path prefixes), only passages of sources under one of them."""
        dense_query = qe.Query.Nearest(list(dense), using=DENSE) if dense is not None else None
        where = (
            qe.Filter(must=[qe.FieldCondition(FOLDERS, match=qe.MatchAny(list(sources)))]) if sources else None
        )
        sparse_query = (
            qe.Query.Nearest(qe.SparseVector(list(sparse.indices), list(sparse.values)), using=SPARSE)
            if sparse is not None and sparse.indices
            else None
        )
        if mode == "dense" or (mode == "hybrid" and sparse_query is None):
            request = qe.QueryRequest(
                limit=limit, query=dense_query, with_payload=True, with_vector=[DENSE], filter=where
            )
        elif mode == "sparse":
            if sparse_query is None:
                return []
            request = qe.QueryRequest(
                limit=limit, query=sparse_query, with_payload=True, with_vector=[DENSE] if dense is not None else None,
                filter=where,
            )
        else:
            request = qe.QueryRequest(
                limit=limit,
                query=qe.Fusion.Dbsf() if fusion == "dbsf" else qe.Fusion.Rrf(k=rrf_k, weights=list(weights)),
                prefetches=[
                    qe.Prefetch(limit=prefetch, query=dense_query, filter=where),
                    qe.Prefetch(limit=prefetch, query=sparse_query, filter=where),
                ],
                with_payload=True,
                with_vector=[DENSE] if dense is not None else None,
            )
        with self._reading() as shard:
            points = await asyncio.to_thread(shard.query, request)
        return [Hit(from_payload(p.id, p.payload), float(p.score), relevance(dense, p.vector)) for p in points]

    async def count(self) -> int:
        with self._reading() as shard:
            return await asyncio.to_thread(shard.count, qe.CountRequest(exact=True))

    # -- full rebuilds ------------------------------------------------------

    async def begin_rebuild(self) -> EdgeStore:
        """A new, empty shard beside the live one; searches keep using the live one."""
        return await asyncio.to_thread(self._fresh, self.folder, self.dim)

    async def commit_rebuild(self, fresh: EdgeStore) -> None:
        """Make `fresh` the live shard in one step and remove the old one."""
        await asyncio.to_thread(fresh._shard.flush)
        old_name, old_shard = self._shard_name, self._shard
        fresh._publish()
        with self._write_lock:
            self._shard, self._shard_name = fresh._shard, fresh._shard_name
        while self._readers.get(old_name, 0):  # searches that started on the old shard finish on it
            await asyncio.sleep(0.005)
        self._readers.pop(old_name, None)
        await asyncio.to_thread(old_shard.close)
        await asyncio.to_thread(shutil.rmtree, self.folder / old_name, True)

    async def abort_rebuild(self, fresh: EdgeStore) -> None:
        await asyncio.to_thread(fresh._shard.close)
        await asyncio.to_thread(shutil.rmtree, self.folder / fresh._shard_name, True)

    async def close(self) -> None:
        await asyncio.to_thread(self._shard.flush)
        self._shard.close()
