"""Step `speak`: the answer streamed from the model, moderated every few hundred characters
(and at the end) so a bad answer is stopped and replaced; a prompt too long for the model is
retried once with half the history. Without a model: the best passages, quoted and moderated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bot.engine import prompts, replies
from bot.engine.answer import Answer
from bot.engine.checks import check_answer
from bot.engine.compose import answer_prompt
from bot.models import Notice, ReplyEvent, TextDelta, Usage
from bot.ports import ModelError
from bot.safety.moderation import Verdict

if TYPE_CHECKING:
    from bot.engine.pipeline import Engine


async def speak_offline(engine: Engine, answer: Answer) -> AsyncIterator[ReplyEvent]:
    text = prompts.offline_answer(answer.hits)
    flagged, _ = await check_answer(engine, answer.key, text, 0, answer.notices)  # quoted passages are moderated too
    if flagged is not None:
        async for event in replies.retract(engine, answer, flagged):
            yield event
        return
    answer.parts = [text]
    yield TextDelta(text)


async def speak(engine: Engine, answer: Answer) -> AsyncIterator[ReplyEvent]:
    model = engine.model
    if model is None:
        async for event in speak_offline(engine, answer):
            yield event
        return
    flagged: Verdict | None = None
    checked = 0  # characters of the answer already moderated
    written = sum(map(len, answer.parts))  # characters of the answer so far
    every = engine.settings.safety.output_check_chars
    error: ModelError | None = None
    for attempt in range(2):
        stream = model.stream(answer.messages)
        try:
            async for piece in stream:
                if isinstance(piece, Usage):
                    answer.usage.append(piece)
                    continue
                answer.parts.append(piece)
                yield TextDelta(piece)
                written += len(piece)
                if written - checked >= every:
                    flagged, checked = await check_answer(engine, answer.key, "".join(answer.parts), checked, answer.notices)
                    if flagged is not None:
                        break
            error = None
            break
        except ModelError as exc:
            error = exc
            if exc.kind == "context_length" and attempt == 0 and answer.history:
                answer.history = answer.history[len(answer.history) // 2 + 1 :]
                answer.messages = answer_prompt(engine, answer)
                notice = Notice("trimmed", prompts.trimmed_note(summarised=False))
                answer.notices.append(notice)
                yield notice
                continue
            break
        finally:
            closing = getattr(stream, "aclose", None)
            if closing is not None:
                await closing()  # an answer cut short by moderation stops the model's stream too
    if error is not None:
        async for event in replies.model_failed(answer, error):
            yield event
        return
    if flagged is None and written > checked:  # the end of the answer
        flagged, checked = await check_answer(engine, answer.key, "".join(answer.parts), checked, answer.notices)
    if flagged is not None:
        async for event in replies.retract(engine, answer, flagged):
            yield event
