"""Step `speak`: the answer streamed from the model, moderated every few hundred characters
(and at the end) so a bad answer is stopped and replaced; the provider's own content filter
stops and replaces it the same way. An answer cut short (the token budget, the deadline, a
stream that ended early or with an error event) keeps what arrived and says so. A prompt too
long for the model is retried once with half the history. Without a model (or when step vet sets
the model's answer aside): up to three cited sentences of the passages, or a decline, moderated."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bot.engine import prompts, replies
from bot.engine.answer import Answer
from bot.engine.checks import check_answer
from bot.engine.compose import answer_prompt
from bot.models import Finish, Notice, ReplyEvent, TextDelta, Usage
from bot.ports import ModelError
from bot.safety.moderation import ModerationResult, Verdict

if TYPE_CHECKING:
    from bot.engine.pipeline import Engine

log = logging.getLogger(__name__)


async def speak_offline(engine: Engine, answer: Answer) -> AsyncIterator[ReplyEvent]:
    # the retriever's embedder scores the sentences; the query's vector is cached from the search
    text = await prompts.offline_answer(answer.hits, answer.query, getattr(engine.retriever, "embedder", None),
                                        with_model=engine.model is not None)
    flagged, _ = await check_answer(engine, answer.key, text, 0, answer.notices)  # quoted sentences are moderated too
    if flagged is not None:
        async for event in replies.retract(engine, answer, flagged):
            yield event
        return
    answer.parts = [text]
    yield TextDelta(text)


CUT_SHORT = {
    "length": "it reached my length limit",
    "deadline": "it was taking too long",
    "incomplete": "my language model stopped without finishing",
    "error": "my language model ran into an error part-way through",
}
# `finish_reason: content_filter`: the provider's moderation stopped the answer, so it is retracted.
CONTENT_FILTERED = Verdict("refuse", False, ModerationResult(True, ("content_filter",), "provider"))
_PROMPT_TAG = re.compile(
    r"</?(?:user_message|reference_passages|passage|draft|voice_examples|examples?|conversation|latest)\b[^<>]{0,200}>"
)


class TagStripper:
    """Copies of advisor's own prompt tags (`</user_message>`, `<reference_passages>`) taken out of a
    streamed answer; a piece that may be the start of a tag is held back until it is known."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        text = _PROMPT_TAG.sub("", self._held + piece)
        start = text.rfind("<")
        if start != -1 and ">" not in text[start:] and len(text) - start <= 200:
            self._held, text = text[start:], text[:start]
        else:
            self._held = ""
        return text

    def flush(self) -> str:
        held, self._held = _PROMPT_TAG.sub("", self._held), ""
        return held


def estimated_usage(engine: Engine, answer: Answer, model_text: str) -> Usage:
    """What a stream that never reported its usage spent: the prompt and the text that arrived."""
    prompt = sum(engine.count_tokens(m.get("content", "")) for m in answer.messages)
    return Usage(prompt, engine.count_tokens(model_text))


async def speak(engine: Engine, answer: Answer) -> AsyncIterator[ReplyEvent]:
    model = engine.model
    if model is None:
        async for event in speak_offline(engine, answer):
            yield event
        return
    flagged: Verdict | None = None
    checked = 0  # characters of the answer already moderated
    written = sum(map(len, answer.parts))  # characters of the answer so far
    lead = written  # the fixed note before the model's text, if any
    every = engine.settings.safety.output_check_chars
    budget, max_tokens = engine.settings.core.answer_deadline_seconds, engine.settings.core.answer_max_tokens
    error: ModelError | None = None
    for attempt in range(2):
        stream = model.stream(answer.messages, max_tokens=max_tokens)
        strip = TagStripper()
        reported = False
        try:
            # the deadline is checked as pieces arrive (a stream that stalls is ended by the client's
            # read timeout): a timer per piece would cost a task each, for every answer in flight
            async for piece in stream:
                if answer.seconds_left(budget) <= 0:
                    if written == lead:
                        raise ModelError("unavailable", "the model did not answer within the deadline")
                    answer.truncated = "deadline"
                    break
                if isinstance(piece, Usage):
                    answer.usage.append(piece)
                    reported = True
                    continue
                if isinstance(piece, Finish) and piece.reason == "content_filter":
                    log.warning("turn %s: the model provider's content filter stopped the answer", answer.trace)
                    flagged = CONTENT_FILTERED
                    break
                if isinstance(piece, Finish):
                    answer.truncated = piece.reason
                    continue
                text = strip.feed(piece)
                if text:
                    answer.parts.append(text)
                    yield TextDelta(text)
                    written += len(text)
                if written - checked >= every:
                    flagged, checked = await check_answer(engine, answer.key, "".join(answer.parts), checked, answer.notices)
                    if flagged is not None:
                        break
            rest = strip.flush() if flagged is None else ""
            if rest:
                answer.parts.append(rest)
                yield TextDelta(rest)
                written += len(rest)
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
                await closing()  # an answer cut short by moderation or the deadline stops the model's stream too
            if not reported and written > lead:  # cut off or timed out: count what arrived
                answer.usage.append(estimated_usage(engine, answer, "".join(answer.parts)[lead:]))
    if error is not None:
        async for event in replies.model_failed(answer, error):
            yield event
        return
    if flagged is None and written > checked:  # the end of the answer
        flagged, checked = await check_answer(engine, answer.key, "".join(answer.parts), checked, answer.notices)
    if flagged is not None:
        async for event in replies.retract(engine, answer, flagged):
            yield event
        return
    if answer.truncated is not None:
        why = CUT_SHORT.get(answer.truncated, CUT_SHORT["incomplete"])
        notice = Notice("truncated", f"The answer was cut short: {why}.")
        answer.notices.append(notice)
        yield notice
        tail = f"\n\n(I had to cut this answer short: {why}. Ask me to go on if you need the rest.)"
        answer.parts.append(tail)
        yield TextDelta(tail)
