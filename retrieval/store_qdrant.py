"""A store over `qdrant-client`: a Qdrant server or cluster (`QDRANT_URL`), or client local mode.

The collection name users see is an alias; the data lives in `<alias>-<timestamp>`
collections. A full reindex fills a new collection and switches the alias in one
request, so searches never see a half-built index.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

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


class QdrantClientStore:
    """A `VectorStore` on one aliased collection of a Qdrant server (or client local mode)."""

    def __init__(
        self, client: AsyncQdrantClient, alias: str, collection: str, dim: int, layout: dict[str, int] | None = None
    ) -> None:
        self._client = client
        self.alias = alias
        self.collection = collection
        self.dim = dim
        self.layout = layout or {}  # shard_number / replication_factor for new collections (server only)

    @classmethod
    async def open(
        cls,
        alias: str,
        dim: int,
        url: str | None = None,
        api_key: str | None = None,
        path: str | None = None,
        layout: dict[str, int] | None = None,
    ) -> QdrantClientStore:
        """Connect to `url` (server) or `path` (local mode) and open or create the aliased collection."""
        client = AsyncQdrantClient(url=url, api_key=api_key, timeout=30) if url else AsyncQdrantClient(path=path)
        try:
            aliases = {a.alias_name: a.collection_name for a in (await client.get_aliases()).aliases}
        except Exception as exc:
            await client.close()
            raise StoreError(f"cannot reach Qdrant at {url or path}: {exc}") from exc
        store = cls(client, alias, aliases.get(alias, ""), dim, layout if url else None)
        if not store.collection:
            if await client.collection_exists(alias):
                store.collection = alias  # a plain collection made by hand or an older version
            else:  # a fixed first name: processes starting together create (or find) the same collection
                store.collection = await store._create(f"{alias}-initial", exist_ok=True)
                await store._point_alias_at(store.collection, old=None)
        await store._check_dim()
        return store

    async def _create(self, name: str | None = None, exist_ok: bool = False) -> str:
        """A new collection (`name`, or a timestamped one for a rebuild); with `exist_ok`, one that
        another process created a moment ago is taken as it is."""
        name = name or f"{self.alias}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        try:
            await self._client.create_collection(
                name,
                vectors_config={DENSE: models.VectorParams(size=self.dim, distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                **self.layout,
            )
        except (UnexpectedResponse, ValueError) as exc:  # server: HTTP 409/400; local mode: ValueError
            if not (exist_ok and "already exists" in str(exc)):
                raise
            return name
        if not self._client.init_options.get("path"):  # local mode has no payload indexes
            await self._client.create_payload_index(name, "source", models.PayloadSchemaType.KEYWORD)
        return name

    async def _point_alias_at(self, collection: str, old: str | None) -> None:
        actions: list[Any] = []
        if old is not None:
            actions.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.alias)))
        actions.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name=self.alias)
            )
        )
        await self._client.update_collection_aliases(change_aliases_operations=actions)

    async def _check_dim(self) -> None:
        info = await self._client.get_collection(self.collection)
        vectors = info.config.params.vectors
        size = vectors[DENSE].size if isinstance(vectors, dict) and DENSE in vectors else None
        if size != self.dim:
            raise StoreError(
                f"collection {self.collection} holds {size}-dimensional '{DENSE}' vectors but the embedder "
                f"makes {self.dim}; rebuild it with `advisor ingest --full PATH`"
            )

    async def upsert(
        self, chunks: Sequence[Chunk], dense: Sequence[Sequence[float]], sparse: Sequence[SparseVector]
    ) -> None:
        now = time.time()
        points = [
            models.PointStruct(
                id=chunk.id,
                vector={
                    DENSE: list(vec),
                    SPARSE: models.SparseVector(indices=list(sp.indices), values=list(sp.values)),
                },
                payload=stored_payload(chunk, now),
            )
            for chunk, vec, sp in zip(chunks, dense, sparse, strict=True)
        ]
        if points:
            await self._client.upsert(self.collection, points=points, wait=True)

    async def update_locations(self, chunks: Sequence[Chunk]) -> None:
        for chunk in chunks:
            await self._client.set_payload(self.collection, payload=location_payload(chunk), points=[chunk.id])

    async def delete(self, ids: Sequence[str]) -> None:
        if ids:
            await self._client.delete(self.collection, points_selector=models.PointIdsList(points=list(ids)))

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        records = await self._client.retrieve(self.collection, ids=list(ids), with_payload=False)
        return {str(r.id) for r in records}

    async def _scroll(self, fields: list[str] | bool) -> list[models.Record]:
        records: list[models.Record] = []
        offset = None
        while True:
            page, offset = await self._client.scroll(
                self.collection, limit=1000, offset=offset, with_payload=fields, with_vectors=False
            )
            records.extend(page)
            if offset is None:
                return records

    async def ids_by_source(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for record in await self._scroll(["source"]):
            found.setdefault(str((record.payload or {}).get("source", "")), set()).add(str(record.id))
        return found

    async def file_hashes(self) -> dict[str, str]:
        records = await self._scroll(["source", "file_hash"])
        return consistent_hashes(records)

    async def sources(self) -> list[SourceSummary]:
        """Each source with its chunk count, last indexed time and suspicious passages (reads every payload)."""
        return summarise(await self._scroll(True))

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
        sparse_query = (
            models.SparseVector(indices=list(sparse.indices), values=list(sparse.values))
            if sparse is not None and sparse.indices
            else None
        )
        where = (
            models.Filter(must=[models.FieldCondition(key=FOLDERS, match=models.MatchAny(any=list(sources)))])
            if sources
            else None
        )
        kwargs: dict[str, Any]
        if mode == "dense" or (mode == "hybrid" and sparse_query is None):
            kwargs = {"query": list(dense or []), "using": DENSE, "query_filter": where}
        elif mode == "sparse":
            if sparse_query is None:
                return []
            kwargs = {"query": sparse_query, "using": SPARSE, "query_filter": where}
        else:
            kwargs = {
                "prefetch": [
                    models.Prefetch(query=list(dense or []), using=DENSE, limit=prefetch, filter=where),
                    models.Prefetch(query=sparse_query, using=SPARSE, limit=prefetch, filter=where),
                ],
                "query": models.FusionQuery(fusion=models.Fusion.DBSF)
                if fusion == "dbsf"
                else models.RrfQuery(rrf=models.Rrf(k=rrf_k, weights=list(weights))),
            }
        response = await self._client.query_points(
            self.alias, limit=limit, with_payload=True, with_vectors=[DENSE] if dense is not None else False, **kwargs
        )
        return [Hit(from_payload(p.id, p.payload), float(p.score), relevance(dense, p.vector)) for p in response.points]

    async def count(self) -> int:
        return (await self._client.count(self.collection, exact=True)).count

    async def begin_rebuild(self) -> QdrantClientStore:
        return QdrantClientStore(self._client, self.alias, await self._create(), self.dim, self.layout)

    async def commit_rebuild(self, fresh: QdrantClientStore) -> None:
        """Switch the alias to `fresh` in one request, then drop the old collection."""
        old = self.collection
        if old == self.alias:  # a plain collection holds the name: it must go before the alias can
            await self._client.delete_collection(old)
            await self._point_alias_at(fresh.collection, old=None)
        else:
            await self._point_alias_at(fresh.collection, old=old)
            await self._client.delete_collection(old)
        self.collection = fresh.collection

    async def abort_rebuild(self, fresh: QdrantClientStore) -> None:
        await self._client.delete_collection(fresh.collection)

    async def close(self) -> None:
        await self._client.close()
