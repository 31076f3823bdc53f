"""The small interfaces the core needs; `retrieval/` and others implement them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from bot.models import Chunk, Exemplar, Finish, Hit, SearchMode, SparseVector, Usage


class Embedder(Protocol):
    """Dense text embeddings. The async methods never block the event loop."""

    name: str
    dim: int

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def embed_query(self, text: str) -> list[float]: ...


class SparseEncoder(Protocol):
    """Lexical (BM25-style) sparse vectors; the store applies IDF."""

    def encode_document(self, text: str) -> SparseVector: ...

    def encode_query(self, text: str) -> SparseVector: ...


class VectorStore(Protocol):
    """One collection of chunks with a dense and a sparse vector each."""

    async def upsert(
        self, chunks: Sequence[Chunk], dense: Sequence[Sequence[float]], sparse: Sequence[SparseVector]
    ) -> None: ...

    async def existing_ids(self, ids: Sequence[str]) -> set[str]: ...

    async def update_locations(self, chunks: Sequence[Chunk]) -> None:
        """Refresh the citation payload of chunks whose text (and so id) did not change."""
        ...

    async def delete(self, ids: Sequence[str]) -> None: ...

    async def ids_by_source(self) -> dict[str, set[str]]:
        """Every indexed source with the ids of its chunks."""
        ...

    async def file_hashes(self) -> dict[str, str]:
        """The content hash each indexed source had when it was indexed."""
        ...

    async def sources(self) -> list[Any]:
        """Per source (sorted): `.source`, `.chunks`, `.indexed_at` (Unix seconds or None) and `.suspicious`
        (the flagged chunks); retrieval/payload.py `SourceSummary`. Read by the advice console."""
        ...

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
        """With `sources` (path prefixes): only passages whose source lies under one of them."""
        ...

    async def count(self) -> int: ...

    async def close(self) -> None: ...


class Retriever(Protocol):
    """What the engine asks of retrieval: passages for a standalone query."""

    async def search(
        self, query: str, limit: int | None = None, mode: SearchMode | None = None, sources: Sequence[str] | None = None
    ) -> list[Hit]:
        """With `sources` (path prefixes, a channel's knowledge scope): only passages from under them."""
        ...


class ExemplarSource(Protocol):
    """The exemplar Q&A pairs most like a question (an empty list when there are none)."""

    async def similar(self, question: str, k: int) -> list[Exemplar]: ...


class StateUnavailable(RuntimeError):
    """Shared state (memory, limits, locks) cannot be reached; the message is safe to log."""


class ModelError(Exception):
    """A chat model call failed. `kind`: rate_limited, quota, context_length, unavailable,
    interrupted, auth, model_not_found or bad_request; `retry_after` in seconds when the provider said."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.status = status  # the HTTP status, when there was one


class ChatModel(Protocol):
    """A chat completion model."""

    name: str

    def stream(
        self, messages: list[dict[str, str]], max_tokens: int | None = None
    ) -> AsyncIterator[str | Usage | Finish]:
        """Text pieces as they arrive, then a `Usage`, and a `Finish` when the answer did not end
        normally (cut by `max_tokens`, filtered); raises `ModelError`."""
        ...

    async def complete(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> tuple[str, Usage]: ...


class IndexReport(Protocol):
    files_indexed: int
    chunks_embedded: int

    def summary(self) -> str: ...


class Indexer(Protocol):
    """Ingestion as the admin commands need it."""

    async def run(self, paths: Sequence[Path], full: bool = False, progress: Callable[[str, int], None] | None = None) -> IndexReport: ...
