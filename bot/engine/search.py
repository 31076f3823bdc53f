"""Step `search`: a standalone query for the message (a follow-up rewritten with its history),
then the knowledge base's relevant passages. A store outage is a notice, never a failure."""

from __future__ import annotations

import asyncio
import logging
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
        query, spent = await engine.model.complete(prompts.rewrite_messages(history, text), max_tokens=64)
        answer.usage.append(spent)
        return " ".join(query.split()) or text
    except ModelError as exc:
        log.warning("query rewrite failed (%s); using the fallback", exc.kind)
        return fallback_rewrite(history, text)


async def retrieve(engine: Engine, query: str, trace: str = "") -> tuple[list[Hit], Notice | None]:
    """Relevant hits, or none and a notice when the store is down."""
    started = time.perf_counter()
    try:
        hits = await asyncio.wait_for(engine.retriever.search(query), engine.settings.retrieval.timeout_seconds)
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
    answer.hits, outage = await retrieve(engine, answer.query, answer.trace)
    if outage is not None:
        answer.notices.append(outage)
        yield outage
