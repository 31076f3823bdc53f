"""Step `sense`: the learned detector reads the message (bot/safety/semantic.py) from the same
embedding retrieval will use. A failure is logged and the rules decide alone: it never
blocks an answer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bot.engine.answer import Answer
from bot.models import ReplyEvent

if TYPE_CHECKING:
    from bot.engine.pipeline import Engine

log = logging.getLogger(__name__)


async def sense(engine: Engine, answer: Answer) -> AsyncIterator[ReplyEvent]:
    """Yields no event: it only reads (a step is an async generator all the same)."""
    if engine.detector is not None:
        try:
            answer.reading = await engine.detector.read(answer.text)
        except Exception:  # noqa: BLE001 -- the rules still run
            log.warning("the learned safety detector failed; the rules decide alone", exc_info=True)
    for event in ():  # makes this an async generator
        yield event
