"""The advisor engine: one message in, a stream of reply events out. Knows no platform.

memory -> (trim) -> query rewrite -> hybrid retrieval -> prompt -> streamed answer ->
citations -> memory. One answer at a time per conversation; rate limits per user and
per conversation; with no model configured it answers honestly from the passages alone.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Any

from bot.ops import metrics

from bot.engine import prompts
from bot.ops.logs import current_context, new_turn_id
from bot.state.memory_sqlite import SqliteMemory, Turn
from bot.models import Citations, Exemplar, Final, Hit, IncomingMessage, Notice, ReplyEvent, TextDelta, Usage
from bot.ports import ChatModel, ExemplarSource, ModelError, Retriever, StateUnavailable
from bot.llm.pricing import cost_usd
from bot.state.limits_local import ConversationLocks, TokenBucket
from bot.safety.crisis import detect, protocol_message
from bot.safety.moderation import CARE_INSTRUCTION, REFUSAL, RETRACTED_NOTICE, RETRACTION, Moderator, Stage, Verdict
from bot.safety.resources import load_resources
from bot.tokens import estimate_tokens
from config.settings import Settings

log = logging.getLogger(__name__)

NOT_IN_KNOWLEDGE_BASE = "I couldn't find this in my knowledge base, so this is general guidance rather than a sourced answer.\n\n"
MODEL_TROUBLE = {
    "rate_limited": "I'm getting more requests than my language model allows right now.",
    "quota": "I can't use my language model right now (an admin has been alerted).",
    "auth": "I can't use my language model right now (an admin has been alerted).",
    "context_length": "Our conversation got too long for my language model.",
    "bad_request": "My language model couldn't take that request.",
}
RETENTION_SWEEP_SECONDS = 3600.0
MEMORY_DOWN = (
    "I can't reach my conversation memory right now, so I can't answer properly. "
    "Please send your message again in a minute."
)


async def _taken(result: float | Awaitable[float]) -> float:
    """A rate limiter's answer, whether it is in-process (a number) or shared (awaited)."""
    return await result if inspect.isawaitable(result) else result  # type: ignore[return-value]


def fallback_rewrite(history: list[tuple[str, str]], latest: str) -> str:
    """Without a model: a short follow-up is searched together with the previous question."""
    previous = next((content for role, content in reversed(history) if role == "user"), "")
    if previous and len(latest.split()) <= 12:
        return f"{previous} {latest}"
    return latest


class Engine:
    """`answer()` is all an adapter needs."""

    def __init__(
        self,
        settings: Settings,
        retriever: Retriever,
        memory: SqliteMemory,
        model: ChatModel | None = None,
        count_tokens: Callable[[str], int] = estimate_tokens,
        clock: Callable[[], float] = time.time,
        moderator: Moderator | None = None,
        exemplars: ExemplarSource | None = None,
        shared: Any = None,
    ) -> None:
        self.settings = settings
        self.retriever = retriever
        self.memory = memory
        self.model = model
        self.count_tokens = count_tokens
        self.clock = clock
        # in-process limits and turn-taking, or `shared` ones (Redis) that every process sees
        self.user_limit: Any = shared.user_limit if shared else TokenBucket(settings.limits.user_per_minute)
        self.conversation_limit: Any = (
            shared.conversation_limit if shared else TokenBucket(settings.limits.conversation_per_minute)
        )
        self.locks: Any = shared.locks if shared else ConversationLocks()
        self.crisis_resources = load_resources(settings.safety.crisis_resources_file)  # a bad file fails at start-up
        self._last_sweep = 0.0
        # without a moderator given, the offline rules moderate (unless ADVISOR_SAFETY_MODERATION=false)
        if moderator is None and settings.safety.moderation:
            safety = settings.safety
            moderator = Moderator(None, actions=safety.action_map, log_text=safety.log_text)
        self.moderator = moderator
        self.exemplars = exemplars

    @property
    def mode(self) -> str:
        return "model" if self.model is not None else "offline"

    async def forget(self, conversation: str) -> int:
        return await self.memory.forget(conversation)

    async def record_feedback(self, turn: str | int, value: int) -> bool:
        """A 👍 (+1) or 👎 (-1) on an answer's memory turn id, as its button carries it; False if the
        turn is gone or the id is not one. Logged with the turn id the answer's `turn` record names."""
        try:
            turn_id = int(turn)
        except (TypeError, ValueError):
            return False
        stored = await self.memory.set_feedback(turn_id, value)
        if stored:
            metrics.feedback(value)
        log.info("feedback %+d on memory turn %s", value, turn_id, extra={"memory_turn": turn_id, "feedback": value, "stored": stored})
        return stored

    async def answer(self, message: IncomingMessage) -> AsyncIterator[ReplyEvent]:
        """Reply events for one message: deltas, notices, citations, then exactly one Final.

        Each turn is counted in the metrics and ends with one `turn` log record (mode, timings,
        sources, usage, cost; never the text) under the caller's turn id, or a new one."""
        trace = current_context().get("turn_id") or new_turn_id()
        started = time.perf_counter()
        first_token: float | None = None
        with metrics.in_flight():
            async for event in self._answer(message, trace):
                if first_token is None and isinstance(event, TextDelta):
                    first_token = time.perf_counter() - started
                if isinstance(event, Final):
                    self._record_turn(trace, message, event, first_token, time.perf_counter() - started)
                yield event

    def _record_turn(
        self, trace: str, message: IncomingMessage, final: Final, first_token: float | None, total: float
    ) -> None:
        metrics.answer_out(message.platform, final.mode, first_token, total)
        metrics.model_usage(final.usage.prompt_tokens, final.usage.completion_tokens, final.cost_usd)
        log.info(
            "turn %s answered: %s",
            trace,
            final.mode,
            extra={
                "turn_id": trace,
                "conversation": str(message.conversation),
                "platform": message.platform,
                "memory_turn": final.turn_id,
                "mode": final.mode,
                "first_token_ms": round(first_token * 1000, 1) if first_token is not None else None,
                "total_ms": round(total * 1000, 1),
                "sources": [f"{c.source}#{c.number}" for c in final.citations],
                "notices": [n.kind for n in final.notices],
                "prompt_tokens": final.usage.prompt_tokens,
                "completion_tokens": final.usage.completion_tokens,
                "cost_usd": final.cost_usd,
            },
        )

    async def _answer(self, message: IncomingMessage, trace: str = "") -> AsyncIterator[ReplyEvent]:
        text = message.text.strip()
        limit = self.settings.limits.max_message_chars
        if not text:
            yield Final("Ask me a question and I'll do my best to help.", (), "rejected")
            return
        if len(text) > limit:
            yield Final(
                f"Your message is {len(text):,} characters long; I can read up to {limit:,}. "
                "Could you shorten it, or send it in parts?",
                (),
                "rejected",
            )
            return
        key = str(message.conversation)
        try:
            user_wait = await _taken(self.user_limit.try_take(f"{message.platform}:{message.workspace}:{message.author}"))
            wait = max(user_wait, await _taken(self.conversation_limit.try_take(key)))
        except StateUnavailable as exc:  # limits are a courtesy: fail open, loudly
            log.error("rate limits unavailable, not applied: %s", exc)
            user_wait = wait = 0.0
        if wait > 0:
            metrics.rate_limited("user" if user_wait > 0 else "conversation")
            notice = Notice("rate_limited", f"Please wait about {max(1, round(wait))} seconds.")
            yield notice
            yield Final(
                f"You're sending messages faster than I can answer them well. "
                f"Please try again in about {max(1, round(wait))} seconds.",
                (),
                "limited",
                notices=(notice,),
            )
            return
        finished = False
        try:
            async with self.locks.hold(key):
                async for event in self._answer_in_turn(key, message, text, trace):
                    finished = finished or isinstance(event, Final)
                    yield event
        except StateUnavailable as exc:
            if finished:  # the answer is out; only bookkeeping after it failed
                log.error("shared state failed after the answer: %s", exc)
                return
            log.error("shared state unavailable, the message was not answered: %s", exc)
            async for event in self._state_down(key, text):
                yield event

    async def _state_down(self, key: str, text: str) -> AsyncIterator[ReplyEvent]:
        """Memory or locks cannot be reached: the crisis protocol still holds (on this message alone),
        everything else gets a clear message to send it again."""
        if detect(text, []).level == "crisis":
            metrics.crisis()
            reply = protocol_message(self.settings.safety.crisis_locale, self.crisis_resources)
            yield TextDelta(reply)
            yield Final(reply, (), "crisis", notices=(Notice("alert", "the crisis protocol answered (memory down)"),))
            return
        yield TextDelta(MEMORY_DOWN)
        yield Final(MEMORY_DOWN, (), "error")

    async def _sweep_retention(self) -> None:
        now = self.clock()
        if now - self._last_sweep >= RETENTION_SWEEP_SECONDS:
            self._last_sweep = now
            removed = await self.memory.purge_older_than(self.settings.memory.retention_days * 86400, now=now)
            if removed:
                log.info("retention: deleted %d turns older than %d days", removed, self.settings.memory.retention_days)

    async def _load_history(self, key: str, notices: list[Notice], usage: list[Usage]) -> list[tuple[str, str]]:
        kept, overflow = await self.memory.fit(key, self.settings.memory.history_tokens)
        history = [(turn.role, turn.content) for turn in kept]
        if not overflow:
            return history
        summary = None
        if self.model is not None:
            try:
                previous = [(t.role, t.content) for t in overflow]
                summary, spent = await self.model.complete(prompts.summary_messages(previous), max_tokens=200)
                usage.append(spent)
            except ModelError as exc:
                log.warning("could not summarise old turns (%s); dropping them", exc.kind)
        if summary:
            await self.memory.summarise(key, overflow, summary)
            history = [("summary", summary), *[(t.role, t.content) for t in kept if t.role != "summary"]]
        else:
            await self.memory.drop(key, overflow)
        notices.append(Notice("trimmed", prompts.trimmed_note(summarised=bool(summary))))
        return history

    async def _search_query(self, history: list[tuple[str, str]], text: str, usage: list[Usage]) -> str:
        if not history:
            return text
        if self.model is None:
            return fallback_rewrite(history, text)
        try:
            query, spent = await self.model.complete(prompts.rewrite_messages(history, text), max_tokens=64)
            usage.append(spent)
            return " ".join(query.split()) or text
        except ModelError as exc:
            log.warning("query rewrite failed (%s); using the fallback", exc.kind)
            return fallback_rewrite(history, text)

    async def _retrieve(self, query: str, trace: str = "") -> tuple[list[Hit], Notice | None]:
        """Relevant hits, or none and a notice when the store is down."""
        started = time.perf_counter()
        try:
            hits = await asyncio.wait_for(self.retriever.search(query), self.settings.retrieval.timeout_seconds)
            metrics.retrieval_took(time.perf_counter() - started)
        except Exception:  # a store outage or a search slower than the timeout must not stop the answer
            log.exception("retrieval failed; answering without the knowledge base")
            return [], Notice("search_unavailable", "My knowledge base can't be searched right now.")
        floor = self.settings.retrieval.min_relevance
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

    async def _voice_examples(self, text: str) -> list[Exemplar]:
        """The exemplar pairs most like the question; none when disabled or unavailable."""
        k = self.settings.retrieval.exemplars_k
        if self.exemplars is None or k <= 0:
            return []
        try:
            return await self.exemplars.similar(text, k)
        except Exception:  # examples of voice are a nicety: never a reason to fail an answer
            log.warning("exemplar search failed; answering without voice examples", exc_info=True)
            return []

    async def _answer_in_turn(
        self, key: str, message: IncomingMessage, text: str, trace: str = ""
    ) -> AsyncIterator[ReplyEvent]:
        await self._sweep_retention()
        turns = await self.memory.history(key)
        if turns and turns[-1].role == "user" and message.message_id and turns[-1].meta.get("message_id") == message.message_id:
            # answered again after a crash mid-answer: its unanswered turn is replaced, not doubled
            await self.memory.drop(key, turns[-1:])
            turns = turns[:-1]
        earlier = [turn.content for turn in turns if turn.role == "user"]
        signal = detect(text, earlier)
        if signal.level == "crisis":  # before the model, retrieval or anything else that can fail
            async for event in self._crisis(key, message, text, signal.reasons):
                yield event
            return
        verdict = await self._moderate(key, text, "input")  # before any summary, rewrite or answer
        if verdict is not None and verdict.action == "crisis":
            async for event in self._crisis(key, message, text, tuple(f"moderation:{c}" for c in verdict.categories)):
                yield event
            return
        if verdict is not None and verdict.action == "refuse":  # the flagged text is kept out of memory
            yield TextDelta(REFUSAL)
            yield Final(REFUSAL, (), "rejected", notices=self._alerts(verdict, "input"))
            return
        notices: list[Notice] = []
        usage: list[Usage] = []
        history = await self._load_history(key, notices, usage)
        await self.memory.add(key, "user", text, {"author": message.author, "message_id": message.message_id})
        for notice in notices:
            yield notice
        notices.extend(self._alerts(verdict, "input"))  # for admins: on the Final only, not shown as events
        query = await self._search_query(history, text, usage)
        hits, outage = await self._retrieve(query, trace)
        if outage is not None:
            notices.append(outage)
            yield outage

        if self.model is None:
            async for event in self._offline(key, hits, query, notices):
                yield event
            return

        parts: list[str] = []
        if not hits:
            parts.append(NOT_IN_KNOWLEDGE_BASE)
            yield TextDelta(NOT_IN_KNOWLEDGE_BASE)
        care = verdict.categories if verdict is not None and verdict.action == "care" else ()
        examples = await self._voice_examples(text)
        messages = self._with_care(prompts.build_messages(self.settings.core.persona, history, hits, text, examples), care)
        error: ModelError | None = None
        draft: str | None = None
        draft_ms = 0.0
        if self.settings.core.tone_pass:
            started = time.perf_counter()
            try:  # call one drafts the grounded answer; call two, streamed below, rewrites its voice
                draft, spent = await self.model.complete(messages)
                usage.append(spent)
                messages = prompts.tone_messages(self.settings.core.persona, draft, examples)
            except ModelError as exc:
                error = exc
            draft_ms = (time.perf_counter() - started) * 1000
            log.info("tone pass: the draft call added %.0f ms before the first token", draft_ms)
        flagged: Verdict | None = None
        checked = 0  # characters of the answer already moderated
        written = sum(map(len, parts))  # characters of the answer so far
        every = self.settings.safety.output_check_chars
        for attempt in range(0 if error is not None else 2):
            stream = self.model.stream(messages)
            try:
                async for piece in stream:
                    if isinstance(piece, Usage):
                        usage.append(piece)
                    else:
                        parts.append(piece)
                        yield TextDelta(piece)
                        written += len(piece)
                        if written - checked >= every:
                            flagged, checked = await self._check_answer(key, "".join(parts), checked, notices)
                            if flagged is not None:
                                break
                error = None
                break
            except ModelError as exc:
                error = exc
                if exc.kind == "context_length" and attempt == 0 and history:
                    history = history[len(history) // 2 + 1 :]
                    messages = self._with_care(
                        prompts.build_messages(self.settings.core.persona, history, hits, text, examples), care
                    )
                    notice = Notice("trimmed", prompts.trimmed_note(summarised=False))
                    notices.append(notice)
                    yield notice
                    continue
                break
            finally:
                closing = getattr(stream, "aclose", None)
                if closing is not None:
                    await closing()  # an answer cut short by moderation stops the model's stream too
        total = sum(usage, Usage())
        if error is not None:
            async for event in self._model_failed(error, parts, hits, total, notices):
                yield event
            return
        if flagged is None and written > checked:  # the end of the answer
            flagged, checked = await self._check_answer(key, "".join(parts), checked, notices)
        if flagged is not None:
            async for event in self._retract(key, query, flagged, total, notices):
                yield event
            return
        answer = "".join(parts)
        if draft is not None and not prompts.citation_numbers(draft) <= prompts.citation_numbers(answer):
            notice = Notice("tone_fallback", "The polished answer lost a citation, so the draft is shown instead.")
            notices.append(notice)
            yield notice
            answer = "".join(parts[:1]) + draft if not hits else draft
        citations = prompts.cited(answer, hits)
        if citations:
            yield Citations(citations)
        cost = cost_usd(self.model.name, total, self.settings)
        turn = await self.memory.add(
            key,
            "assistant",
            answer,
            {
                "mode": "model",
                "query": query,
                "sources": [asdict(c) for c in citations],
                "usage": {"prompt_tokens": total.prompt_tokens, "completion_tokens": total.completion_tokens},
                "cost_usd": cost,
                **({"tone_pass_draft_ms": round(draft_ms, 1)} if draft is not None else {}),
            },
        )
        yield Final(answer, citations, "model", total, cost, tuple(notices), turn.id)

    async def _moderate(self, key: str, text: str, stage: Stage) -> Verdict | None:
        """The moderation verdict for `text`, or None when moderation is off."""
        if self.moderator is None:
            return None
        verdict = await self.moderator.check(text, stage, key)
        if verdict is not None and verdict.categories:
            metrics.moderation_flag(stage, verdict.action)
        return verdict

    async def _check_answer(self, key: str, answer: str, checked: int, notices: list[Notice]) -> tuple[Verdict | None, int]:
        """Moderate the answer's unchecked tail (with some overlap, so a phrase split across segments
        is seen whole); a verdict only when the answer must be replaced, and how much is now checked."""
        verdict = await self._moderate(key, answer[max(0, checked - 100) :], "output")
        if verdict is not None and verdict.action in {"refuse", "crisis"}:
            return verdict, len(answer)
        for alert in self._alerts(verdict, "output"):
            if alert not in notices:
                notices.append(alert)
        return None, len(answer)

    @staticmethod
    def _alerts(verdict: Verdict | None, stage: str) -> tuple[Notice, ...]:
        if verdict is None or not verdict.alert:
            return ()
        return (Notice("alert", f"moderation flagged the {'message' if stage == 'input' else 'answer'}: {', '.join(verdict.categories)}"),)

    @staticmethod
    def _with_care(messages: list[dict[str, str]], categories: tuple[str, ...]) -> list[dict[str, str]]:
        """The prompt with a care instruction added to the system message when moderation asked for care."""
        if not categories:
            return messages
        note = CARE_INSTRUCTION.format(categories=", ".join(categories))
        if messages and messages[0].get("role") == "system":
            return [{**messages[0], "content": f"{messages[0]['content']}\n\n{note}"}, *messages[1:]]
        return [{"role": "system", "content": note}, *messages]

    async def _retract(self, key: str, query: str, verdict: Verdict, usage: Usage, notices: list[Notice]) -> AsyncIterator[ReplyEvent]:
        """A flagged answer is replaced: a `retracted` notice, then a Final carrying the safe text."""
        if verdict.action == "crisis":
            replacement = protocol_message(self.settings.safety.crisis_locale, self.crisis_resources)
        else:
            replacement = RETRACTION
        notice = Notice("retracted", RETRACTED_NOTICE)
        notices.append(notice)
        notices.extend(self._alerts(verdict, "output"))
        yield notice
        turn = await self.memory.add(
            key, "assistant", replacement, {"mode": "moderated", "query": query, "categories": list(verdict.categories)}
        )
        cost = cost_usd(self.model.name, usage, self.settings) if self.model is not None else None
        yield Final(replacement, (), "rejected", usage, cost, tuple(notices), turn.id)

    async def _crisis(self, key: str, message: IncomingMessage, text: str, reasons: tuple[str, ...]) -> AsyncIterator[ReplyEvent]:
        """The crisis protocol (docs/crisis-protocol.md): a fixed, warm answer with resources."""
        log.warning("crisis protocol: conversation=%s reasons=%s", key, ",".join(reasons))  # never the text
        metrics.crisis()
        await self.memory.add(key, "user", text, {"author": message.author, "message_id": message.message_id})
        reply = protocol_message(self.settings.safety.crisis_locale, self.crisis_resources)
        yield TextDelta(reply)
        turn = await self.memory.add(key, "assistant", reply, {"mode": "crisis", "reasons": list(reasons)})
        alert = Notice("alert", f"the crisis protocol answered (signs: {', '.join(reasons)})")
        yield Final(reply, (), "crisis", notices=(alert,), turn_id=turn.id)

    async def _offline(self, key: str, hits: list[Hit], query: str, notices: list[Notice]) -> AsyncIterator[ReplyEvent]:
        answer = prompts.offline_answer(hits)
        flagged, _ = await self._check_answer(key, answer, 0, notices)  # quoted passages are moderated too
        if flagged is not None:
            async for event in self._retract(key, query, flagged, Usage(), notices):
                yield event
            return
        yield TextDelta(answer)
        citations = tuple(prompts.citation(n, hit) for n, hit in enumerate(hits, start=1))
        if citations:
            yield Citations(citations)
        turn = await self.memory.add(
            key, "assistant", answer, {"mode": "offline", "query": query, "sources": [asdict(c) for c in citations]}
        )
        yield Final(answer, citations, "offline", Usage(), None, tuple(notices), turn.id)

    async def _model_failed(
        self, error: ModelError, parts: list[str], hits: list[Hit], usage: Usage, notices: list[Notice]
    ) -> AsyncIterator[ReplyEvent]:
        """A short, clear message; the user's turn stays in memory, the failed reply does not."""
        metrics.model_error(error.kind)
        if error.kind == "interrupted":
            tail = "\n\n(My answer was cut off because my language model stopped responding. Please ask again.)"
            yield TextDelta(tail)
            yield Final("".join(parts) + tail, (), "error", usage, None, tuple(notices))
            return
        lead = MODEL_TROUBLE.get(error.kind, "I couldn't reach my language model just now.")
        text = f"{lead} Please try again in a little while."
        citations: tuple[Any, ...] = ()
        if hits:
            text += "\n\nMeanwhile, here is what my knowledge base says:\n" + prompts.quote_passages(hits)
            citations = tuple(prompts.citation(n, hit) for n, hit in enumerate(hits, start=1))
        yield TextDelta(text)
        if citations:
            yield Citations(citations)
        yield Final(text, citations, "error", usage, None, tuple(notices))


__all__ = ["Engine", "Turn", "fallback_rewrite"]
