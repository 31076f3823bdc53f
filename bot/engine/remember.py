"""Step `remember`: the answer's citations, its turn in memory (with mode, query, sources,
usage, cost and latency), and the turn's Final event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Literal

from bot.engine import prompts
from bot.engine.answer import Answer
from bot.llm.pricing import cost_usd
from bot.models import Citations, Final, Notice, ReplyEvent, TextDelta
from bot.safety.crisis import care_note

if TYPE_CHECKING:
    from bot.engine.pipeline import Engine


def final_text(answer: Answer) -> tuple[str, bool]:
    """The streamed answer, or the tone pass's draft (True) when the rewrite lost one of its citations."""
    text = "".join(answer.parts)
    draft = answer.draft
    if draft is None or prompts.citation_numbers(draft) <= prompts.citation_numbers(text):
        return text, False
    return ("".join(answer.parts[:1]) + draft if not answer.hits else draft), True


def with_care_note(engine: Engine, answer: Answer, text: str) -> tuple[str, list[ReplyEvent]]:
    """A concern turn's answer ends with the care note (where support is); admins are alerted
    too when `ADVISOR_SAFETY_ALERT_ON_CONCERN` is on."""
    if not answer.concern:
        return text, []
    if engine.settings.safety.alert_on_concern:
        answer.notices.append(Notice("alert", "a concern turn was answered with the care note"))
    note = "\n\n" + care_note(engine.settings.safety.crisis_locale, engine.crisis_resources)
    return text + note, [TextDelta(note)]


async def remember(engine: Engine, answer: Answer) -> AsyncIterator[ReplyEvent]:
    answer.done = True
    if engine.model is None or answer.fallback is not None:
        async for event in remember_offline(engine, answer):
            yield event
        return
    text, fell_back = final_text(answer)
    if fell_back:
        notice = Notice("tone_fallback", "The polished answer lost a citation, so the draft is shown instead.")
        answer.notices.append(notice)
        yield notice
    citations = prompts.cited(text, answer.hits)
    text, care = with_care_note(engine, answer, text)
    for event in care:
        yield event
    if citations:
        yield Citations(citations)
    total = answer.total_usage
    cost = cost_usd(engine.model.name, total, engine.settings)
    meta: dict[str, Any] = {
        "mode": "model",
        "query": answer.query,
        "sources": [asdict(c) for c in citations],
        "usage": {"prompt_tokens": total.prompt_tokens, "completion_tokens": total.completion_tokens},
        "cost_usd": cost,
        "latency_ms": answer.elapsed_ms(),
    }
    if answer.draft is not None:
        meta["tone_pass_draft_ms"] = round(answer.draft_ms, 1)
    if answer.truncated is not None:
        meta["truncated"] = answer.truncated
    turn = await engine.memory.add(answer.key, "assistant", text, meta)
    yield Final(text, citations, "model", total, cost, tuple(answer.notices), turn.id)


async def remember_offline(engine: Engine, answer: Answer) -> AsyncIterator[ReplyEvent]:
    """An offline answer cites every passage it quoted (never a suspicious one), numbered as quoted.
    So does the extractive answer that replaced a local model's (mode "fallback", step vet)."""
    text, care = with_care_note(engine, answer, "".join(answer.parts))
    for event in care:
        yield event
    citations = prompts.cited("".join(answer.parts), answer.hits)  # the [n] of offline_answer: places in the hits
    if citations:
        yield Citations(citations)
    mode: Literal["offline", "fallback"] = "offline" if answer.fallback is None else "fallback"
    meta: dict[str, Any] = {
        "mode": mode, "query": answer.query, "sources": [asdict(c) for c in citations], "latency_ms": answer.elapsed_ms()
    }
    if answer.fallback is not None:
        meta["fallback"] = answer.fallback
    turn = await engine.memory.add(answer.key, "assistant", text, meta)
    yield Final(text, citations, mode, answer.total_usage, None, tuple(answer.notices), turn.id)
