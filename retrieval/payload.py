"""How a chunk is stored in a Qdrant point: names of the vectors and the payload layout."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from bot.models import Chunk

DENSE = "dense"
SPARSE = "bm25"
LOCATION_FIELDS = ("title", "headings", "start", "end", "file_hash")
FOLDERS = "folders"  # the source and every folder above it: a knowledge scope matches any of them


def folders(source: str) -> list[str]:
    """A source path and each folder above it, so a path-prefix scope is an exact match on one of them."""
    pure = PurePosixPath(source)
    return [str(pure), *(str(parent) for parent in pure.parents if str(parent) not in (".", ""))]


def to_payload(chunk: Chunk) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "text": chunk.text,
        "source": chunk.source,
        "title": chunk.title,
        "headings": list(chunk.headings),
        "start": chunk.start,
        "end": chunk.end,
        "file_hash": chunk.file_hash,
    }
    if chunk.extra:
        payload["extra"] = dict(chunk.extra)
    return payload


def stored_payload(chunk: Chunk, indexed_at: float | None = None) -> dict[str, Any]:
    """The payload written by `upsert`: the chunk plus when it was indexed (`indexed_at`, Unix seconds)."""
    return {
        **to_payload(chunk),
        FOLDERS: folders(chunk.source),
        "indexed_at": time.time() if indexed_at is None else indexed_at,
    }


def location_payload(chunk: Chunk) -> dict[str, Any]:
    """The part of the payload that may change while the text (and so the id) stays."""
    full = to_payload(chunk)
    located = {key: full[key] for key in LOCATION_FIELDS}
    # `extra` (page, row, the injection flags) is re-derived on every parse, so it is refreshed too.
    located["extra"] = full.get("extra", {})
    return located


def from_payload(point_id: Any, payload: dict[str, Any] | None) -> Chunk:
    payload = payload or {}
    return Chunk(
        id=str(point_id),
        text=str(payload.get("text", "")),
        source=str(payload.get("source", "")),
        title=str(payload.get("title", "")),
        headings=tuple(payload.get("headings") or ()),
        start=int(payload.get("start", 0)),
        end=int(payload.get("end", 0)),
        file_hash=str(payload.get("file_hash", "")),
        extra=dict(payload.get("extra") or {}),
    )


def consistent_hashes(records: Iterable[Any]) -> dict[str, str]:
    """source -> the file hash all its chunks carry ("" where they disagree: a run was cut short)."""
    found: dict[str, str] = {}
    for record in records:
        payload = record.payload or {}
        source, file_hash = str(payload.get("source", "")), str(payload.get("file_hash", ""))
        found[source] = file_hash if found.get(source, file_hash) == file_hash else ""
    return found


def relevance(query: Sequence[float] | None, vector: Any) -> float | None:
    """Cosine of a unit query vector and a stored (unit) dense vector, when both are there."""
    if query is None or vector is None:
        return None
    stored = vector.get(DENSE) if isinstance(vector, dict) else vector
    if not stored:
        return None
    return float(sum(a * b for a, b in zip(query, stored)))


@dataclass
class SourceSummary:
    """One indexed source as the advice console shows it: its chunks, when they were last
    written (None for points indexed before `indexed_at` was stored) and its flagged passages."""

    source: str
    chunks: int = 0
    indexed_at: float | None = None
    suspicious: list[Chunk] = field(default_factory=list)


def summarise(records: Iterable[Any]) -> list[SourceSummary]:
    """Per-source summaries of scrolled records (full payloads), sorted by source."""
    found: dict[str, SourceSummary] = {}
    for record in records:
        payload = record.payload or {}
        source = str(payload.get("source", ""))
        summary = found.setdefault(source, SourceSummary(source))
        summary.chunks += 1
        stamp = payload.get("indexed_at")
        if isinstance(stamp, (int, float)) and (summary.indexed_at is None or stamp > summary.indexed_at):
            summary.indexed_at = float(stamp)
        if (payload.get("extra") or {}).get("suspicious"):
            summary.suspicious.append(from_payload(record.id, payload))
    for summary in found.values():
        summary.suspicious.sort(key=lambda chunk: chunk.start)
    return [found[source] for source in sorted(found)]
