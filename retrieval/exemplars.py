"""The exemplar collection: question/answer pairs retrieved as examples of voice.

A second Qdrant collection beside the knowledge base (`<collection>-exemplars`). Each
point is a question's embedding with the pair in its payload. `advisor ingest
--exemplars FILE` replaces the whole collection; the engine asks for the k pairs whose
questions are most like the user's and shows them to the model as examples of tone,
never as facts or sources.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.models import Chunk, Exemplar
from bot.ports import Embedder, SparseEncoder

COLLECTION_SUFFIX = "-exemplars"
MAX_QUESTION_CHARS = 2000
MAX_ANSWER_CHARS = 4000
QUESTION_KEYS = ("question", "questionText", "prompt", "input")
ANSWER_KEYS = ("answer", "answerText", "completion", "output", "response")


class ExemplarFileError(ValueError):
    """An exemplar file that cannot be used at all; the message says why."""


@dataclass
class LoadReport:
    exemplars: list[Exemplar] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "line 12: no assistant message", ...


def _pick(record: dict[str, Any], keys: Sequence[str]) -> str:
    for key in keys:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _from_record(record: Any) -> tuple[Exemplar | None, str]:
    """An exemplar from one record (chat fine-tuning format or question/answer fields), or why not."""
    if not isinstance(record, dict):
        return None, "not a JSON object"
    messages = record.get("messages")
    if isinstance(messages, list):
        question = answer = ""
        for message in messages:  # the last user turn and the assistant turn after it
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                continue
            if message.get("role") == "user":
                question, answer = message["content"].strip(), ""
            elif message.get("role") == "assistant" and question:
                answer = message["content"].strip()
        if not question or not answer:
            return None, "no user message followed by an assistant message"
    else:
        question, answer = _pick(record, QUESTION_KEYS), _pick(record, ANSWER_KEYS)
        if not question or not answer:
            return None, f"needs 'messages', or a question ({'/'.join(QUESTION_KEYS)}) and an answer ({'/'.join(ANSWER_KEYS)})"
    if len(question) > MAX_QUESTION_CHARS:
        return None, f"question longer than {MAX_QUESTION_CHARS} characters"
    return Exemplar(question, answer[:MAX_ANSWER_CHARS]), ""


def load_exemplars(path: Path) -> LoadReport:
    """Pairs from a JSONL file (OpenAI chat fine-tuning lines, or question/answer fields) or a CSV
    with question and answer columns. Bad rows are skipped with a reason; no usable row is an error."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExemplarFileError(f"cannot read {path}: {exc}") from exc
    report = LoadReport()
    seen: set[tuple[str, str]] = set()
    if path.suffix.lower() == ".csv":
        rows: list[tuple[int, Any]] = [(n, row) for n, row in enumerate(csv.DictReader(io.StringIO(text)), start=2)]
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                report.skipped.append(f"line {number}: not valid JSON ({exc.msg})")
    for number, record in rows:
        exemplar, why = _from_record(record)
        if exemplar is None:
            report.skipped.append(f"line {number}: {why}")
        elif (exemplar.question, exemplar.answer) not in seen:
            seen.add((exemplar.question, exemplar.answer))
            report.exemplars.append(exemplar)
    if not report.exemplars:
        reasons = "; ".join(report.skipped[:3]) or "the file is empty"
        raise ExemplarFileError(f"no usable question/answer pair in {path} ({reasons})")
    return report


def _chunk(exemplar: Exemplar, source: str) -> Chunk:
    digest = hashlib.sha256(f"{exemplar.question}\x00{exemplar.answer}".encode()).hexdigest()
    point_id = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
    return Chunk(point_id, exemplar.question, source, "exemplar", extra={"answer": exemplar.answer})


class ExemplarIndex:
    """The `ExemplarSource` port over its own collection."""

    def __init__(self, store: Any, embedder: Embedder, sparse: SparseEncoder) -> None:
        self.store = store
        self.embedder = embedder
        self.sparse = sparse

    async def replace(self, exemplars: Sequence[Exemplar], source: str, batch: int = 64) -> int:
        """Index `exemplars` into a fresh collection and switch to it; the old set is gone."""
        fresh = await self.store.begin_rebuild()
        try:
            for start in range(0, len(exemplars), batch):
                chunks = [_chunk(e, source) for e in exemplars[start : start + batch]]
                dense = await self.embedder.embed_documents([c.text for c in chunks])
                await fresh.upsert(chunks, dense, [self.sparse.encode_document(c.text) for c in chunks])
        except BaseException:
            await self.store.abort_rebuild(fresh)
            raise
        await self.store.commit_rebuild(fresh)
        return await self.store.count()

    async def similar(self, question: str, k: int) -> list[Exemplar]:
        if k <= 0:
            return []
        dense = await self.embedder.embed_query(question)
        hits = await self.store.search(dense, None, "dense", limit=k, prefetch=k)
        return [Exemplar(hit.chunk.text, str(hit.chunk.extra.get("answer", ""))) for hit in hits]

    async def count(self) -> int:
        return await self.store.count()

    async def close(self) -> None:
        await self.store.close()
