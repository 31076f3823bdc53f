"""Retrieval evaluation on BEIR-layout files, with a plain BM25 baseline from the same run.

The corpus goes through the product's own ingestion (JSONL loader, chunker, embedder,
store); a document's rank is that of its best chunk. Metrics follow pytrec_eval / BEIR:
nDCG@10 with linear gain, Recall@10, MRR@10, over the queries that have judgements.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.models import SearchMode
from config.settings import RetrievalSettings
from retrieval.ingest import Ingestor
from retrieval.loaders import FieldMapping
from retrieval.retriever import HybridRetriever
from retrieval.sparse import Bm25Encoder

K = 10
Qrels = dict[str, dict[str, int]]
Run = dict[str, list[str]]


class EvalInputError(ValueError):
    """An evaluation file is missing or malformed; the message names the file and line."""


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalInputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    records = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalInputError(f"{path}:{number}: not valid JSON: {exc.msg}") from exc
            if not isinstance(record, dict) or "_id" not in record:
                raise EvalInputError(f"{path}:{number}: expected an object with an '_id'")
            records.append(record)
    return records


def load_queries(path: Path) -> dict[str, str]:
    return {str(r["_id"]): str(r.get("text", "")) for r in _jsonl(path)}


def load_qrels(path: Path) -> Qrels:
    """TSV with a header row: query-id, corpus-id, score."""
    qrels: Qrels = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalInputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise EvalInputError(f"{path}:{number}: expected query-id, corpus-id and score separated by tabs")
        try:
            qrels.setdefault(parts[0], {})[parts[1]] = int(float(parts[2]))
        except ValueError as exc:
            raise EvalInputError(f"{path}:{number}: score '{parts[2]}' is not a number") from exc
    return qrels


def ndcg_at_k(ranked: list[str], relevant: dict[str, int], k: int = K) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_k(ranked: list[str], relevant: dict[str, int], k: int = K) -> float:
    wanted = {doc for doc, grade in relevant.items() if grade > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def mrr_at_k(ranked: list[str], relevant: dict[str, int], k: int = K) -> float:
    return next((1.0 / (i + 1) for i, doc in enumerate(ranked[:k]) if relevant.get(doc, 0) > 0), 0.0)


def score_run(run: Run, qrels: Qrels) -> dict[str, float]:
    judged = [q for q in qrels if q in run]
    if not judged:
        return {"ndcg@10": 0.0, "recall@10": 0.0, "mrr@10": 0.0}
    return {
        "ndcg@10": statistics.fmean(ndcg_at_k(run[q], qrels[q]) for q in judged),
        "recall@10": statistics.fmean(recall_at_k(run[q], qrels[q]) for q in judged),
        "mrr@10": statistics.fmean(mrr_at_k(run[q], qrels[q]) for q in judged),
    }


def bm25_baseline(corpus: Path, queries: dict[str, str], k1: float = 0.9, b: float = 0.4) -> Run:
    """Plain BM25 (bm25s, Lucene variant, English stopwords and Snowball stemming) over whole documents."""
    import bm25s
    import Stemmer

    records = _jsonl(corpus)
    ids = [str(r["_id"]) for r in records]
    texts = [f"{r.get('title', '')} {r.get('text', '')}" for r in records]
    stemmer = Stemmer.Stemmer("english")
    index = bm25s.BM25(k1=k1, b=b, method="lucene")
    index.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    run: Run = {}
    for qid, text in queries.items():
        tokens = bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False)
        if not tokens.vocab:
            run[qid] = []
            continue
        results, _ = index.retrieve(tokens, k=min(K, len(ids)), show_progress=False)
        run[qid] = [ids[i] for i in results[0]]
    return run


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


@dataclass
class EvalResult:
    mode: str
    engine: str
    documents: int
    queries: int
    chunks: int
    metrics: dict[str, float]
    bm25: dict[str, float]
    index_seconds: float
    latency_ms: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        rows = [f"{'metric':<12}{'advisor ' + self.mode:>18}{'BM25 baseline':>16}"]
        for name in ("ndcg@10", "recall@10", "mrr@10"):
            rows.append(f"{name:<12}{self.metrics[name]:>18.4f}{self.bm25[name]:>16.4f}")
        rows.append(
            f"{self.documents} documents ({self.chunks} chunks) indexed in {self.index_seconds:.1f} s on {self.engine}; "
            f"{self.queries} queries, latency p50 {self.latency_ms['p50']:.1f} ms, p95 {self.latency_ms['p95']:.1f} ms"
        )
        return "\n".join(rows)


async def evaluate(
    corpus: Path,
    queries_path: Path,
    qrels_path: Path,
    embedder: Any,
    settings: RetrievalSettings,
    modes: Sequence[SearchMode] = ("hybrid",),
    engine: str = "edge",
    workdir: Path | None = None,
) -> list[EvalResult]:
    """Index `corpus` once into a fresh store; run every judged query in each mode."""
    from retrieval.store_edge import EdgeStore
    from retrieval.store_qdrant import QdrantClientStore

    queries = load_queries(queries_path)
    qrels = load_qrels(qrels_path)
    judged = {qid: queries[qid] for qid in qrels if qid in queries}
    if not judged:
        raise EvalInputError(f"{qrels_path}: no judged query is in {queries_path}")
    documents = len(_jsonl(corpus))
    baseline = score_run(bm25_baseline(corpus, judged), qrels)
    results: list[EvalResult] = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        if engine == "edge":
            store: Any = EdgeStore.open(Path(tmp), "eval", embedder.dim)
        else:
            store = await QdrantClientStore.open("eval", embedder.dim, path=tmp)
        sparse = Bm25Encoder(avg_len=settings.bm25_avg_len)
        ingestor = Ingestor(
            store,
            embedder,
            sparse,
            settings.chunk_tokens,
            settings.chunk_overlap,
            FieldMapping(text_fields=("text",), title_field="title", id_field="_id"),
        )
        try:
            report = await ingestor.run([corpus])
            if report.skipped:
                raise EvalInputError(f"{corpus}: {report.skipped[0][1]}")
            retriever = HybridRetriever(store, embedder, sparse, settings)
            chunks = await store.count()
            for mode in modes:
                run, latencies = await _run_queries(retriever, judged, mode)
                results.append(
                    EvalResult(
                        mode=mode,
                        engine=engine,
                        documents=documents,
                        queries=len(judged),
                        chunks=chunks,
                        metrics=score_run(run, qrels),
                        bm25=baseline,
                        index_seconds=report.seconds,
                        latency_ms={"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
                        extra={"embedder": embedder.name, "index_chunks_per_second": report.throughput},
                    )
                )
        finally:
            await store.close()
    return results


async def _run_queries(retriever: HybridRetriever, queries: dict[str, str], mode: SearchMode) -> tuple[Run, list[float]]:
    """Ranked document ids per query (a document ranks by its best chunk) and latencies in ms."""
    run: Run = {}
    latencies: list[float] = []
    for qid, text in queries.items():
        started = time.perf_counter()
        hits = await retriever.search(text, limit=K * 3, mode=mode)
        latencies.append((time.perf_counter() - started) * 1000)
        ranked: list[str] = []
        for hit in hits:
            doc = str(hit.chunk.extra.get("id", hit.chunk.source))
            if doc not in ranked:
                ranked.append(doc)
        run[qid] = ranked[:K]
    return run, latencies
