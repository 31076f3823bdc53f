"""The advisor engine: one message in, a stream of reply events out. Knows no platform.

`answer()` admits a message (length, rate limits), waits its conversation's turn, then runs
it through the steps in `bot.engine.steps`: guard -> recall -> search -> compose -> speak ->
remember (docs/architecture.md). With no model configured it answers honestly from the
passages alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from bot.engine import replies
from bot.engine.answer import Answer, Step
from bot.engine.replies import MEMORY_DOWN, MODEL_TROUBLE, NOT_IN_KNOWLEDGE_BASE
from bot.engine.search import fallback_rewrite
from bot.engine.steps import STEPS
from bot.models import Final, IncomingMessage, Notice, ReplyEvent, TextDelta
from bot.ops import metrics
from bot.ops.logs import current_context, new_turn_id
from bot.ports import ChatModel, ExemplarSource, Retriever
from bot.safety.moderation import Moderator
from bot.safety.resources import load_resources
from bot.safety.semantic import SemanticDetector
from bot.state import Memory, RateLimit, StateUnavailable, Turn, local_bucket, local_limits, taken
from bot.state.channel_settings import NONE, ChannelSettings, ChannelSettingsStore, ChannelView
from bot.tokens import estimate_tokens
from config.settings import Settings

log = logging.getLogger(__name__)


class Engine:
    """`answer()` is all an adapter needs."""

    def __init__(
        self,
        settings: Settings,
        retriever: Retriever,
        memory: Memory,
        model: ChatModel | None = None,
        count_tokens: Callable[[str], int] = estimate_tokens,
        clock: Callable[[], float] = time.time,
        moderator: Moderator | None = None,
        exemplars: ExemplarSource | None = None,
        shared: Any = None,
        steps: tuple[Step, ...] = STEPS,
        detector: SemanticDetector | None = None,
        channels: ChannelSettingsStore | None = None,
    ) -> None:
        self.settings = settings
        self.retriever = retriever
        self.memory = memory
        self.model = model
        self.count_tokens = count_tokens
        self.clock = clock
        # in-process limits and turn-taking, or `shared` ones (Redis) that every process sees
        if shared is not None:
            self.user_limit, self.conversation_limit, self.locks = shared.user_limit, shared.conversation_limit, shared.locks
        else:
            limits = settings.limits
            self.user_limit, self.conversation_limit, self.locks = local_limits(
                limits.user_per_minute, limits.conversation_per_minute
            )
        self.crisis_resources = load_resources(settings.safety.crisis_resources_file)  # a bad file fails at start-up
        self.last_sweep = 0.0  # the last retention sweep (step guard)
        self.steps: tuple[Step, ...] = steps
        # without a moderator given, the offline rules moderate (unless ADVISOR_SAFETY_MODERATION=false)
        if moderator is None and settings.safety.moderation:
            safety = settings.safety
            moderator = Moderator(None, actions=safety.action_map, log_text=safety.log_text)
        self.moderator = moderator
        self.exemplars = exemplars
        self.detector = detector  # the learned safety detector (step sense); the rules alone without it
        # per-channel settings (persona, knowledge scope, rate limits), read on every message
        self.channels = ChannelView(channels) if channels is not None else None
        self._shared = shared
        self._buckets: dict[tuple[str, int], RateLimit] = {}  # (kind, per minute) -> a channel's own bucket

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

    async def channel_settings(self, message: IncomingMessage) -> ChannelSettings:
        """The message's channel and workspace overrides (NONE without a store, or when it fails)."""
        if self.channels is None:
            return NONE
        return await self.channels.for_message(message.platform, message.workspace, message.channel)

    def _bucket(self, kind: str, rate: int | None) -> RateLimit:
        """The default bucket of `kind` ("user", "conversation"), or one at a channel's own rate."""
        if rate is None:
            return self.user_limit if kind == "user" else self.conversation_limit
        bucket = self._buckets.get((kind, rate))
        if bucket is None:
            bucket = self._shared.bucket(kind, rate) if self._shared is not None else local_bucket(rate)
            self._buckets[(kind, rate)] = bucket
        return bucket

    async def _not_admitted(
        self, message: IncomingMessage, text: str, channel: ChannelSettings = NONE
    ) -> list[ReplyEvent]:
        """The reply to a message that is not answered (empty, too long, too fast); [] to go on."""
        limit = self.settings.limits.max_message_chars
        if not text:
            return [Final("Ask me a question and I'll do my best to help.", (), "rejected")]
        if len(text) > limit:
            return [
                Final(
                    f"Your message is {len(text):,} characters long; I can read up to {limit:,}. "
                    "Could you shorten it, or send it in parts?",
                    (),
                    "rejected",
                )
            ]
        try:
            user_limit = self._bucket("user", channel.user_per_minute)
            conversation_limit = self._bucket("conversation", channel.conversation_per_minute)
            user_wait = await taken(user_limit.try_take(f"{message.platform}:{message.workspace}:{message.author}"))
            wait = max(user_wait, await taken(conversation_limit.try_take(str(message.conversation))))
        except StateUnavailable as exc:  # limits are a courtesy: fail open, loudly
            log.error("rate limits unavailable, not applied: %s", exc)
            user_wait = wait = 0.0
        if wait <= 0:
            return []
        metrics.rate_limited("user" if user_wait > 0 else "conversation")
        notice = Notice("rate_limited", f"Please wait about {max(1, round(wait))} seconds.")
        final = Final(
            f"You're sending messages faster than I can answer them well. "
            f"Please try again in about {max(1, round(wait))} seconds.",
            (),
            "limited",
            notices=(notice,),
        )
        return [notice, final]

    async def _answer(self, message: IncomingMessage, trace: str = "") -> AsyncIterator[ReplyEvent]:
        text = message.text.strip()
        channel = await self.channel_settings(message)
        refusal = await self._not_admitted(message, text, channel)
        if refusal:
            for event in refusal:
                yield event
            return
        key = str(message.conversation)
        finished = False
        try:
            async with self.locks.hold(key):
                async for event in self._run_steps(key, message, text, trace, channel):
                    finished = finished or isinstance(event, Final)
                    yield event
        except StateUnavailable as exc:
            if finished:  # the answer is out; only bookkeeping after it failed
                log.error("shared state failed after the answer: %s", exc)
                return
            log.error("shared state unavailable, the message was not answered: %s", exc)
            async for event in replies.state_down(self, text):
                yield event

    async def _run_steps(
        self, key: str, message: IncomingMessage, text: str, trace: str, channel: ChannelSettings = NONE
    ) -> AsyncIterator[ReplyEvent]:
        """The steps in order, until one gives the turn its Final."""
        answer = Answer(message, key, text, trace, channel=channel)
        for step in self.steps:
            async for event in step(self, answer):
                yield event
            if answer.done:
                return


__all__ = ["MEMORY_DOWN", "MODEL_TROUBLE", "NOT_IN_KNOWLEDGE_BASE", "Engine", "Turn", "fallback_rewrite"]
