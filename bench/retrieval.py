"""Retrieval benchmark: quality, latency, engine choice and ingestion throughput, in one run.

    python bench/retrieval.py [--datasets scifact,fiqa] [--shared ../shared]

Prints, for each data set, nDCG@10 / Recall@10 / MRR@10 of hybrid, dense and sparse
search next to a plain BM25 baseline computed in the same run; query latency p50/p95
(query embedding included) on Qdrant Edge and on qdrant-client local mode over the same
vectors; and ingestion throughput against the raw throughput of the embedding model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.models import Chunk
from config.settings import load_settings
from retrieval.chunking import chunk_document, embedding_text
from retrieval.embedders import OnnxMiniLMEmbedder
from retrieval.evaluate import evaluate, load_queries, percentile
from retrieval.loaders import load
from retrieval.sparse import Bm25Encoder
from retrieval.store_edge import EdgeStore
from retrieval.store_qdrant import QdrantClientStore

DATASETS = {
    "scifact": ("scifact/corpus.jsonl", "scifact/queries.jsonl", "scifact/qrels/test.tsv"),
    "fiqa": (
        "fiqa_mtrag_conversational/corpus.jsonl",
        "fiqa_mtrag_conversational/mtragun/queries_lastturn.jsonl",
        "fiqa_mtrag_conversational/mtragun/qrels/test.tsv",
    ),
}


async def quality(name: str, base: Path, embedder: Any, settings: Any) -> dict[str, Any]:
    corpus, queries, qrels = (base / part for part in DATASETS[name])
    results = await evaluate(corpus, queries, qrels, embedder, settings.retrieval, modes=("hybrid", "dense", "sparse"))
    print(f"\n== {name}: {results[0].documents} documents, {results[0].chunks} chunks, {results[0].queries} queries")
    print(f"{'mode':<10}{'nDCG@10':>10}{'R@10':>8}{'MRR@10':>9}{'p50 ms':>9}{'p95 ms':>9}")
    for r in results:
        m = r.metrics
        print(f"{r.mode:<10}{m['ndcg@10']:>10.4f}{m['recall@10']:>8.4f}{m['mrr@10']:>9.4f}{r.latency_ms['p50']:>9.1f}{r.latency_ms['p95']:>9.1f}")
    b = results[0].bm25
    print(f"{'BM25':<10}{b['ndcg@10']:>10.4f}{b['recall@10']:>8.4f}{b['mrr@10']:>9.4f}   (bm25s, k1 0.9, b 0.4, same run)")
    print(f"ingestion: {results[0].index_seconds:.1f} s, {results[0].extra['index_chunks_per_second']:.1f} chunks/s")
    return {"dataset": name, "results": [r.to_json() for r in results]}


async def engines(base: Path, embedder: Any, settings: Any, passages: int) -> dict[str, Any]:
    """Same chunks and vectors in both embedded engines; query latency per mode, embedding included."""
    corpus, queries_path, _ = (base / part for part in DATASETS["scifact"])
    records = [json.loads(line) for line in corpus.read_text().splitlines()][:passages]
    texts = [f"{r['title']}\n{r['text']}" for r in records]
    sparse = Bm25Encoder(avg_len=settings.retrieval.bm25_avg_len)
    chunks = [Chunk(f"00000000-0000-0000-0000-{i:012d}", t, f"scifact/{r['_id']}", r["title"]) for i, (r, t) in enumerate(zip(records, texts))]
    started = time.perf_counter()
    vectors = await embedder.embed_documents(texts)
    embed_rate = len(texts) / (time.perf_counter() - started)
    sparse_vectors = [sparse.encode_document(t) for t in texts]
    queries = list(load_queries(queries_path).values())
    out: dict[str, Any] = {"passages": len(chunks), "raw_embedding_passages_per_second": embed_rate, "engines": {}}
    print(f"\n== query latency on {len(chunks)} passages (query embedding included), {len(queries)} queries")
    print(f"{'engine':<28}{'mode':<8}{'p50 ms':>8}{'p95 ms':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        stores = {
            "qdrant-edge (default)": EdgeStore.open(Path(tmp) / "edge", "bench", embedder.dim),
            "qdrant-client local mode": await QdrantClientStore.open("bench", embedder.dim, path=str(Path(tmp) / "local")),
        }
        for label, store in stores.items():
            for start in range(0, len(chunks), 256):
                await store.upsert(chunks[start : start + 256], vectors[start : start + 256], sparse_vectors[start : start + 256])
            out["engines"][label] = {}
            for mode in ("dense", "sparse", "hybrid"):
                latencies = []
                for query in queries:
                    t0 = time.perf_counter()
                    dense = await embedder.embed_query(query) if mode != "sparse" else None
                    sp = sparse.encode_query(query) if mode != "dense" else None
                    await store.search(dense, sp, mode, limit=10, prefetch=settings.retrieval.prefetch)
                    latencies.append((time.perf_counter() - t0) * 1000)
                p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
                out["engines"][label][mode] = {"p50_ms": p50, "p95_ms": p95}
                print(f"{label:<28}{mode:<8}{p50:>8.1f}{p95:>8.1f}")
            await store.close()
    return out


async def throughput(embedder: Any, settings: Any, base: Path, passages: int) -> dict[str, Any]:
    """Ingestion (files -> index) against raw embedding of the very same chunk texts, one run."""
    from retrieval.ingest import Ingestor
    from retrieval.loaders import FieldMapping

    corpus = base / DATASETS["scifact"][0]
    lines = corpus.read_text().splitlines()
    random.Random(7).shuffle(lines)
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.jsonl"
        sample.write_text("\n".join(lines[:passages]))
        store = EdgeStore.open(Path(tmp) / "index", "bench", embedder.dim)
        ingestor = Ingestor(
            store, embedder, Bm25Encoder(), settings.retrieval.chunk_tokens, settings.retrieval.chunk_overlap,
            FieldMapping(text_fields=("text",), title_field="title", id_field="_id"),
        )
        report = await ingestor.run([sample])
        document = load(sample, ingestor.mapping)
        chunks = chunk_document(document, "", settings.retrieval.chunk_tokens, settings.retrieval.chunk_overlap)
        texts = [embedding_text(chunk) for chunk in chunks]
        started = time.perf_counter()
        await embedder.embed_documents(texts)
        raw = len(texts) / (time.perf_counter() - started)
        await store.close()
    ratio = report.throughput / raw
    print(f"\n== ingestion throughput on {passages} SciFact documents ({report.chunks_embedded} chunks)")
    print(f"raw embedding {raw:.1f} chunks/s; ingestion {report.throughput:.1f} chunks/s; ratio {ratio:.2f}")
    return {"chunks": report.chunks_embedded, "raw_chunks_per_second": raw, "ingest_chunks_per_second": report.throughput, "ratio": ratio}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--datasets", default="fiqa,scifact")
    parser.add_argument("--latency-passages", type=int, default=5000)
    parser.add_argument("--throughput-passages", type=int, default=600)
    parser.add_argument("--skip", default="", help="comma list of: quality, latency, throughput")
    args = parser.parse_args()
    base = args.shared / "datasets" / "retrieval"
    settings = load_settings(None)
    started = time.perf_counter()
    embedder = OnnxMiniLMEmbedder(batch_size=settings.embeddings.batch_size)
    print(f"embedder {embedder.name} loaded in {time.perf_counter() - started:.2f} s")
    skip = set(args.skip.split(","))
    report: dict[str, Any] = {"settings": settings.retrieval.model_dump()}
    if "throughput" not in skip:
        report["throughput"] = await throughput(embedder, settings, base, args.throughput_passages)
    if "latency" not in skip:
        report["latency"] = await engines(base, embedder, settings, args.latency_passages)
    if "quality" not in skip:
        report["quality"] = [await quality(name, base, embedder, settings) for name in args.datasets.split(",") if name]
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "retrieval.json").write_text(json.dumps(report, indent=2))
    print(f"\nfigures written to {out / 'retrieval.json'}")


if __name__ == "__main__":
    asyncio.run(main())
