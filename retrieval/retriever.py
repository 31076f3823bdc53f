"""Hybrid retrieval: the query embedded densely and as BM25 terms, fused by the store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.models import Hit, SearchMode
from bot.ports import Embedder, SparseEncoder
from config.settings import RetrievalSettings


class HybridRetriever:
    """The `Retriever` port over one store, embedder and sparse encoder."""

    def __init__(self, store: Any, embedder: Embedder, sparse: SparseEncoder, settings: RetrievalSettings) -> None:
        self.store = store
        self.embedder = embedder
        self.sparse = sparse
        self.settings = settings

    async def search(
        self, query: str, limit: int | None = None, mode: SearchMode | None = None, sources: Sequence[str] | None = None
    ) -> list[Hit]:
        """The passages for `query`; with `sources` (path prefixes), only from sources under them."""
        mode = mode or self.settings.mode
        dense = await self.embedder.embed_query(query) if mode != "sparse" else None
        sparse = self.sparse.encode_query(query) if mode != "dense" else None
        return await self.store.search(
            dense,
            sparse,
            mode,
            limit=limit or self.settings.top_k,
            prefetch=self.settings.prefetch,
            weights=(self.settings.dense_weight, self.settings.sparse_weight),
            rrf_k=self.settings.rrf_k,
            fusion=self.settings.fusion,
            **({"sources": list(sources)} if sources else {}),
        )
