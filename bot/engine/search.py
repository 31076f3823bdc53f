"""Step `search`: a standalone query for the message (a follow-up rewritten with its history),
then the knowledge base's relevant passages. A store outage is a notice, never a failure."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bot.engine import prompts
from bot.engine.answer import Answer
from bot.models import Hit, Notice, ReplyEvent
from bot.ops import metrics
from bot.ports import ModelError

if TYPE_CHECKING:
    from bot.engine.pipeline import Engine

log = logging.getLogger(__name__)


REWRITE_TOKENS = 64
_LABEL = re.compile(r"^(?:standalone (?:search )?query|search query|query|rewritten(?: query)?|question)\s*[:\-]\s*", re.I)
_ECHO = re.compile(
    r"\b(?:rewrite|rewritten|standalone|search query|knowledge base|the user'?s?|latest message|follow-?up|"
    r"conversation|as an ai|i'?m sorry|i can(?:no|')t|here(?: is|'s) (?:the|a|your)|sure[,!])\b|</?\w+>",
    re.I,
)
_WORD = re.compile(r"[a-z0-9]+")


def checked_rewrite(query: str, history: list[tuple[str, str]], latest: str, cut_off: bool) -> tuple[str | None, str]:
    """The model's rewrite made clean, or None and why it cannot be trusted: empty, cut off, too long,
    an echo of its instructions or chat instead of a query, or sharing no word with the conversation."""
    text = _LABEL.sub("", " ".join(query.split())).strip().strip("\"'`“”")
    if not text:
        return None, "empty"
    if cut_off:
        return None, "cut off"
    previous = next((content for role, content in reversed(history) if role == "user"), "")
    if len(text) > max(300, 2 * (len(latest) + len(previous))) or len(text.split()) > 60:
        return None, "too long"
    if _ECHO.search(text) or "\n" in query.strip():
        return None, "instruction echo or chat"
    if _WORD.findall(text.lower()) == _WORD.findall(latest.lower()) and previous:
        return None, "unchanged"  # nothing resolved: the fallback at least searches with the previous question
    context = set(_WORD.findall(f"{latest} {' '.join(content for _, content in history[-6:])}".lower()))
    if not set(_WORD.findall(text.lower())) & context:
        return None, "unrelated to the conversation"
    return text, "ok"


def fallback_rewrite(history: list[tuple[str, str]], latest: str) -> str:
    """Without a model: a short follow-up is searched together with the previous question."""
    previous = next((content for role, content in reversed(history) if role == "user"), "")
    if previous and len(latest.split()) <= 12:
        return f"{previous} {latest}"
    return latest


async def search_query(engine: Engine, answer: Answer) -> str:
    history, text = answer.history, answer.text
    if not history:
        return text
    if engine.model is None:
        return fallback_rewrite(history, text)
    try:
        query, spent = await engine.model.complete(prompts.rewrite_messages(history, text), max_tokens=REWRITE_TOKENS)
    except ModelError as exc:
        log.warning("query rewrite failed (%s); using the fallback", exc.kind)
        return fallback_rewrite(history, text)
    answer.usage.append(spent)
    checked, why = checked_rewrite(query, history, text, cut_off=spent.completion_tokens >= REWRITE_TOKENS)
    if checked is None:
        log.info("turn %s query: the model's rewrite was not used (%s); the fallback rule instead", answer.trace, why,
                 extra={"turn_id": answer.trace or None, "query_path": "fallback", "rewrite_rejected": why})
        return fallback_rewrite(history, text)
    log.info("turn %s query: the model's rewrite", answer.trace, extra={"turn_id": answer.trace or None, "query_path": "model"})
    return checked


async def retrieve(
    engine: Engine, query: str, trace: str = "", sources: tuple[str, ...] | None = None
) -> tuple[list[Hit], Notice | None]:
    """Relevant hits (with `sources`, a channel's knowledge scope: only from under those paths), or
    none and a notice when the store is down."""
    started = time.perf_counter()
    try:
        search = engine.retriever.search(query, sources=list(sources)) if sources else engine.retriever.search(query)
        hits = await asyncio.wait_for(search, engine.settings.retrieval.timeout_seconds)
        metrics.retrieval_took(time.perf_counter() - started)
    except Exception:  # a store outage or a search slower than the timeout must not stop the answer
        log.exception("retrieval failed; answering without the knowledge base")
        return [], Notice("search_unavailable", "My knowledge base can't be searched right now.")
    floor = engine.settings.retrieval.min_relevance
    kept = [hit for hit in hits if hit.relevance is None or hit.relevance >= floor]
    log.info(
        "turn %s retrieved %d passages (%d above the relevance floor)",
        trace,
        len(hits),
        len(kept),
        extra={
            "turn_id": trace or None,
            "retrieval_ms": round((time.perf_counter() - started) * 1000, 1),
            "hits": [
                {"id": hit.chunk.id, "source": hit.chunk.source, "score": round(hit.score, 4),
                 "relevance": None if hit.relevance is None else round(hit.relevance, 4)}
                for hit in hits
            ],
        },
    )
    return kept, None


async def search(engine: Engine, answer: Answer) -> AsyncIterator[ReplyEvent]:
    answer.query = await search_query(engine, answer)
    answer.hits, outage = await retrieve(engine, answer.query, answer.trace, answer.channel.knowledge_scope)
    if outage is not None:
        answer.notices.append(outage)
        yield outage
