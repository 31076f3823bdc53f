"""Step `compose`: the prompt (persona, history, numbered passages, voice examples, a care
instruction when moderation asked for one) and, with the tone pass on, a first grounded draft
whose voice the streamed call then rewrites. Nothing to compose without a model."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bot.engine import prompts
from bot.engine.answer import Answer
from bot.engine.replies import NOT_IN_KNOWLEDGE_BASE, model_failed
from bot.engine.small_prompt import small_model_messages
from bot.models import Exemplar, ReplyEvent, TextDelta
from bot.ports import ModelError
from bot.safety.crisis import CONCERN_INSTRUCTION
from bot.safety.moderation import CARE_INSTRUCTION

if TYPE_CHECKING:
    from bot.engine.pipeline import Engine

log = logging.getLogger(__name__)


async def voice_examples(engine: Engine, text: str) -> list[Exemplar]:
    """The exemplar pairs most like the question; none when disabled or unavailable."""
    k = engine.settings.retrieval.exemplars_k
    if engine.exemplars is None or k <= 0:
        return []
    try:
        return await engine.exemplars.similar(text, k)
    except Exception:  # examples of voice are a nicety: never a reason to fail an answer
        log.warning("exemplar search failed; answering without voice examples", exc_info=True)
        return []


def with_care(messages: list[dict[str, str]], categories: tuple[str, ...], concern: bool = False) -> list[dict[str, str]]:
    """The prompt with a care instruction added to the system message when moderation asked for care,
    and a gentle check-in on a concern turn."""
    notes = [CARE_INSTRUCTION.format(categories=", ".join(categories))] if categories else []
    if concern:
        notes.append(CONCERN_INSTRUCTION)
    if not notes:
        return messages
    note = "\n\n".join(notes)
    if messages and messages[0].get("role") == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{note}"}, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


def answer_prompt(engine: Engine, answer: Answer) -> list[dict[str, str]]:
    """The messages that ask for the answer, from what the earlier steps found."""
    persona = answer.channel.persona or engine.settings.core.persona
    if engine.settings.local.enabled:  # a small model follows a short prompt better (step vet checks it did)
        messages = small_model_messages(persona, answer.history, answer.hits, answer.text)
    else:
        messages = prompts.build_messages(persona, answer.history, answer.hits, answer.text, answer.examples)
    return with_care(messages, answer.care, answer.concern)


async def compose(engine: Engine, answer: Answer) -> AsyncIterator[ReplyEvent]:
    if engine.model is None:
        return
    if not answer.hits:
        answer.parts.append(NOT_IN_KNOWLEDGE_BASE)
        yield TextDelta(NOT_IN_KNOWLEDGE_BASE)
    answer.examples = await voice_examples(engine, answer.text)
    answer.messages = answer_prompt(engine, answer)
    if not engine.settings.core.tone_pass:
        return
    failure = await write_draft(engine, answer)
    if failure is not None:
        async for event in model_failed(answer, failure):
            yield event


async def write_draft(engine: Engine, answer: Answer) -> ModelError | None:
    """Call one of the tone pass: the grounded draft, within the answer's token budget and deadline,
    and the messages with which step `speak` rewrites its voice; the failure, if the call failed."""
    core = engine.settings.core
    started = time.perf_counter()
    failure: ModelError | None = None
    try:
        call = engine.model.complete(answer.messages, max_tokens=core.answer_max_tokens)
        answer.draft, spent = await asyncio.wait_for(call, max(0.0, answer.seconds_left(core.answer_deadline_seconds)))
        answer.usage.append(spent)
        answer.messages = prompts.tone_messages(answer.channel.persona or core.persona, answer.draft, answer.examples)
    except TimeoutError:
        failure = ModelError("unavailable", "the draft was not written within the deadline")
    except ModelError as exc:
        failure = exc
    answer.draft_ms = (time.perf_counter() - started) * 1000
    log.info("tone pass: the draft call added %.0f ms before the first token", answer.draft_ms)
    return failure
