"""BM25 sparse vectors with Qdrant's own tokenizer, stemmer and term hashing.

`qdrant_edge.Bm25` is the same model Qdrant's server applies for `qdrant/bm25`
documents: documents get saturated term frequencies (k, b, avg_len), queries get
weight 1 per term, and the collection's IDF modifier supplies the rest.
"""

from __future__ import annotations

from qdrant_edge import Bm25, Bm25Config

from bot.models import SparseVector


class Bm25Encoder:
    """English BM25 term vectors (stopwords removed, Snowball-stemmed)."""

    def __init__(self, avg_len: float = 120.0, k: float = 1.2, b: float = 0.75, language: str = "english") -> None:
        self._model = Bm25(Bm25Config(k=k, b=b, avg_len=avg_len, language=language))

    def encode_document(self, text: str) -> SparseVector:
        vector = self._model.embed_document(text)
        return SparseVector(tuple(vector.indices), tuple(vector.values))

    def encode_query(self, text: str) -> SparseVector:
        vector = self._model.embed_query(text)
        return SparseVector(tuple(vector.indices), tuple(vector.values))
