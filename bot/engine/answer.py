"""One message on its way through the engine's steps, and what the steps learn about it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.models import Exemplar, Hit, IncomingMessage, Notice, ReplyEvent, Usage
from bot.safety.moderation import Verdict
from bot.safety.semantic import SemanticReading
from bot.state.channel_settings import NONE, ChannelSettings

if TYPE_CHECKING:
    from bot.engine.pipeline import Engine


@dataclass
class Answer:
    """The working state of one turn. A step that gives the turn its Final sets `done`, and the
    steps after it are skipped (as a bolt middleware that does not call `next()`)."""

    message: IncomingMessage
    key: str  # the conversation
    text: str  # the message, stripped
    trace: str  # the turn id that links its log records
    earlier: list[str] = field(default_factory=list)  # the conversation's earlier user messages
    reading: SemanticReading | None = None  # the learned detector's (step sense)
    verdict: Verdict | None = None  # input moderation
    concern: bool = False  # a concern turn: answered with a gentle check-in and the care note
    history: list[tuple[str, str]] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    usage: list[Usage] = field(default_factory=list)
    query: str = ""
    hits: list[Hit] = field(default_factory=list)
    examples: list[Exemplar] = field(default_factory=list)
    care: tuple[str, ...] = ()  # moderation categories that ask for a caring answer
    messages: list[dict[str, str]] = field(default_factory=list)  # the prompt
    draft: str | None = None  # the tone pass's first, grounded draft
    draft_ms: float = 0.0
    parts: list[str] = field(default_factory=list)  # the answer as it was streamed
    truncated: str | None = None  # why the answer was cut short: length, deadline, incomplete, error
    fallback: str | None = None  # why step vet replaced the model's answer with the extractive one
    started: float = field(default_factory=time.monotonic)
    done: bool = False
    channel: ChannelSettings = NONE  # the channel's (or workspace's) persona, knowledge scope, rate limits

    def seconds_left(self, budget: float) -> float:
        """What is left of the answer's total deadline (`budget` seconds from its start)."""
        return budget - (time.monotonic() - self.started)

    def elapsed_ms(self) -> float:
        """Milliseconds since the turn started (kept with the answer as `latency_ms`)."""
        return round((time.monotonic() - self.started) * 1000, 1)

    @property
    def total_usage(self) -> Usage:
        return sum(self.usage, Usage())


Step = Callable[["Engine", Answer], AsyncIterator[ReplyEvent]]
"""A step reads and extends the `Answer`, yields the events it produces, and may finish the turn."""

__all__ = ["Answer", "Step"]
