"""Step `recall`: the conversation so far, within its token budget (older turns summarised by
the model, or dropped without one), then the new message written to memory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bot.engine import prompts
from bot.engine.answer import Answer
from bot.engine.checks import alerts
from bot.models import Notice, ReplyEvent
from bot.ports import ModelError

if TYPE_CHECKING:
    from bot.engine.pipeline import Engine

log = logging.getLogger(__name__)


async def load_history(engine: Engine, answer: Answer) -> list[tuple[str, str]]:
    kept, overflow = await engine.memory.fit(answer.key, engine.settings.memory.history_tokens)
    history = [(turn.role, turn.content) for turn in kept]
    if not overflow:
        return history
    summary = None
    if engine.model is not None:
        try:
            previous = [(t.role, t.content) for t in overflow]
            summary, spent = await engine.model.complete(prompts.summary_messages(previous), max_tokens=200)
            answer.usage.append(spent)
        except ModelError as exc:
            log.warning("could not summarise old turns (%s); dropping them", exc.kind)
    if summary:
        await engine.memory.summarise(answer.key, overflow, summary)
        history = [("summary", summary), *[(t.role, t.content) for t in kept if t.role != "summary"]]
    else:
        await engine.memory.drop(answer.key, overflow)
    answer.notices.append(Notice("trimmed", prompts.trimmed_note(summarised=bool(summary))))
    return history


async def recall(engine: Engine, answer: Answer) -> AsyncIterator[ReplyEvent]:
    answer.history = await load_history(engine, answer)
    message = answer.message
    await engine.memory.add(answer.key, "user", answer.text, {"author": message.author, "message_id": message.message_id})
    for notice in answer.notices:
        yield notice
    answer.notices.extend(alerts(answer.verdict, "input"))  # for admins: on the Final only, not shown as events
