"""The fixed replies that end a turn early: the crisis protocol, a retracted answer, a failed
model, unreachable memory. Each yields its events and the turn's Final."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from bot.engine import prompts
from bot.engine.answer import Answer
from bot.engine.checks import alerts
from bot.llm.pricing import cost_usd
from bot.models import Citations, Final, Notice, ReplyEvent, TextDelta
from bot.ops import metrics
from bot.ports import ModelError
from bot.safety.crisis import detect, protocol_message
from bot.safety.moderation import RETRACTED_NOTICE, RETRACTION, Verdict

if TYPE_CHECKING:
    from bot.engine.pipeline import Engine

log = logging.getLogger(__name__)

NOT_IN_KNOWLEDGE_BASE = "I couldn't find this in my knowledge base, so this is general guidance rather than a sourced answer.\n\n"
MODEL_TROUBLE = {
    "rate_limited": "I'm getting more requests than my language model allows right now.",
    "quota": "I can't use my language model right now (an admin has been alerted).",
    "auth": "I can't use my language model right now (an admin has been alerted).",
    "model_not_found": "I can't use my language model right now (an admin has been alerted).",
    "context_length": "Our conversation got too long for my language model.",
    "bad_request": "My language model couldn't take that request.",
}
MEMORY_DOWN = (
    "I can't reach my conversation memory right now, so I can't answer properly. "
    "Please send your message again in a minute."
)


async def crisis(engine: Engine, answer: Answer, reasons: tuple[str, ...]) -> AsyncIterator[ReplyEvent]:
    """The crisis protocol (docs/crisis-protocol.md): a fixed, warm answer with resources."""
    log.warning("crisis protocol: conversation=%s reasons=%s", answer.key, ",".join(reasons))  # never the text
    metrics.crisis()
    message = answer.message
    await engine.memory.add(answer.key, "user", answer.text, {"author": message.author, "message_id": message.message_id})
    reply = protocol_message(engine.settings.safety.crisis_locale, engine.crisis_resources)
    yield TextDelta(reply)
    turn = await engine.memory.add(
        answer.key, "assistant", reply, {"mode": "crisis", "reasons": list(reasons), "latency_ms": answer.elapsed_ms()}
    )
    alert = Notice("alert", f"the crisis protocol answered (signs: {', '.join(reasons)})")
    answer.done = True
    yield Final(reply, (), "crisis", notices=(alert,), turn_id=turn.id)


async def retract(engine: Engine, answer: Answer, verdict: Verdict) -> AsyncIterator[ReplyEvent]:
    """A flagged answer is replaced: a `retracted` notice, then a Final carrying the safe text."""
    if verdict.action == "crisis":
        replacement = protocol_message(engine.settings.safety.crisis_locale, engine.crisis_resources)
    else:
        replacement = RETRACTION
    notice = Notice("retracted", RETRACTED_NOTICE)
    answer.notices.append(notice)
    answer.notices.extend(alerts(verdict, "output"))
    yield notice
    meta = {"mode": "moderated", "query": answer.query, "categories": list(verdict.categories), "latency_ms": answer.elapsed_ms()}
    turn = await engine.memory.add(answer.key, "assistant", replacement, meta)
    usage = answer.total_usage
    cost = cost_usd(engine.model.name, usage, engine.settings) if engine.model is not None else None
    answer.done = True
    yield Final(replacement, (), "rejected", usage, cost, tuple(answer.notices), turn.id)


async def model_failed(answer: Answer, error: ModelError) -> AsyncIterator[ReplyEvent]:
    """A short, clear message; the user's turn stays in memory, the failed reply does not."""
    metrics.model_error(error.kind)
    log.warning(
        "turn %s: the language model failed: %s (HTTP %s): %s", answer.trace, error.kind, error.status or "-", error,
        extra={"turn_id": answer.trace or None, "model_error": error.kind, "status": error.status},
    )
    answer.done = True
    usage, notices, hits = answer.total_usage, tuple(answer.notices), answer.hits
    if error.kind == "interrupted":
        tail = "\n\n(My answer was cut off because my language model stopped responding. Please ask again.)"
        yield TextDelta(tail)
        yield Final("".join(answer.parts) + tail, (), "error", usage, None, notices)
        return
    lead = MODEL_TROUBLE.get(error.kind, "I couldn't reach my language model just now.")
    text = f"{lead} Please try again in a little while."
    citations: tuple[Any, ...] = ()
    if prompts.quotable(hits):  # suspicious passages are never quoted without a model
        text += "\n\nMeanwhile, here is what my knowledge base says:\n" + prompts.quote_passages(hits)
        citations = prompts.quoted_citations(hits)
    yield TextDelta(text)
    if citations:
        yield Citations(citations)
    yield Final(text, citations, "error", usage, None, notices)


async def state_down(engine: Engine, text: str) -> AsyncIterator[ReplyEvent]:
    """Memory or locks cannot be reached: the crisis protocol still holds (on this message alone),
    everything else gets a clear message to send it again."""
    if detect(text, []).level == "crisis":
        metrics.crisis()
        reply = protocol_message(engine.settings.safety.crisis_locale, engine.crisis_resources)
        yield TextDelta(reply)
        yield Final(reply, (), "crisis", notices=(Notice("alert", "the crisis protocol answered (memory down)"),))
        return
    yield TextDelta(MEMORY_DOWN)
    yield Final(MEMORY_DOWN, (), "error")
