"""The composition root: settings -> concrete classes. The only core module that names them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.settings import Settings


@dataclass
class RetrievalStack:
    embedder: Any
    sparse: Any
    store: Any
    retriever: Any

    async def close(self) -> None:
        await self.store.close()


async def build_retrieval(settings: Settings) -> RetrievalStack:
    """The embedder, BM25 encoder, store and retriever the settings ask for."""
    from retrieval.embedders import build_embedder
    from retrieval.retriever import HybridRetriever
    from retrieval.sparse import Bm25Encoder
    from retrieval.store import open_store

    embedder = build_embedder(settings)
    if not embedder.dim:  # an OpenAI-compatible model of unknown size: ask it once
        await embedder.embed_query("dimension probe")
    sparse = Bm25Encoder(avg_len=settings.retrieval.bm25_avg_len)
    store = await open_store(settings, embedder.dim)
    return RetrievalStack(embedder, sparse, store, HybridRetriever(store, embedder, sparse, settings.retrieval))
