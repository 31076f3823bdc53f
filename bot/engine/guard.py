"""Step `guard`: the crisis protocol and input moderation, before anything that can fail or be
slow (the model, retrieval, a summary). Also tidies the conversation it reads."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bot.engine import replies
from bot.engine.answer import Answer
from bot.engine.checks import alerts, moderate
from bot.models import Final, ReplyEvent, TextDelta
from bot.safety.semantic import combined_signal
from bot.safety.moderation import REFUSAL

if TYPE_CHECKING:
    from bot.engine.pipeline import Engine

log = logging.getLogger(__name__)
RETENTION_SWEEP_SECONDS = 3600.0


async def sweep_retention(engine: Engine) -> None:
    """At most hourly: turns older than the retention period are deleted."""
    now = engine.clock()
    if now - engine.last_sweep >= RETENTION_SWEEP_SECONDS:
        engine.last_sweep = now
        removed = await engine.memory.purge_older_than(engine.settings.memory.retention_days * 86400, now=now)
        if removed:
            log.info("retention: deleted %d turns older than %d days", removed, engine.settings.memory.retention_days)


async def guard(engine: Engine, answer: Answer) -> AsyncIterator[ReplyEvent]:
    await sweep_retention(engine)
    turns = await engine.memory.history(answer.key)
    message_id = answer.message.message_id
    if turns and turns[-1].role == "user" and message_id and turns[-1].meta.get("message_id") == message_id:
        # answered again after a crash mid-answer: its unanswered turn is replaced, not doubled
        await engine.memory.drop(answer.key, turns[-1:])
        turns = turns[:-1]
    answer.earlier = [turn.content for turn in turns if turn.role == "user"]
    signal = combined_signal(answer.text, answer.earlier, answer.reading)
    if signal.level == "crisis":
        async for event in replies.crisis(engine, answer, signal.reasons):
            yield event
        return
    answer.concern = signal.level == "concern"
    verdict = answer.verdict = await moderate(engine, answer.key, answer.text, "input", answer.reading)
    if verdict is not None and verdict.action == "crisis":
        async for event in replies.crisis(engine, answer, tuple(f"moderation:{c}" for c in verdict.categories)):
            yield event
        return
    if verdict is not None and verdict.action == "refuse":  # the flagged text is kept out of memory
        answer.done = True
        yield TextDelta(REFUSAL)
        yield Final(REFUSAL, (), "rejected", notices=alerts(verdict, "input"))
        return
    if verdict is not None and verdict.action == "care":
        answer.care = verdict.categories
