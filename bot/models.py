"""Plain data types shared by the core and its ports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SearchMode = Literal["dense", "sparse", "hybrid"]


@dataclass(frozen=True)
class SparseVector:
    """A sparse term vector (term ids and weights), as Qdrant stores it."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Chunk:
    """One indexed passage and everything a citation needs."""

    id: str
    text: str
    source: str
    title: str
    headings: tuple[str, ...] = ()
    start: int = 0
    end: int = 0
    file_hash: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def location(self) -> str:
        """Where the passage sits in its source, for people: heading trail, page or row."""
        trail = [h for h in self.headings if h != self.title]
        places = [" > ".join(trail)] if trail else []
        places += [f"{key} {self.extra[key]}" for key in ("page", "row") if key in self.extra]
        return ", ".join(places)


@dataclass(frozen=True)
class Hit:
    """A chunk found by a search, with the score of the mode that found it.

    `relevance` is the cosine similarity of the query and the chunk's dense vector (None
    for a sparse-only search): unlike fused rank scores it means the same in every query,
    so the engine can tell "nothing relevant" from "best of a bad lot".
    """

    chunk: Chunk
    score: float
    relevance: float | None = None


@dataclass(frozen=True)
class ConversationKey:
    """Which conversation a message belongs to: a thread, a reply chain, a DM, a terminal."""

    platform: str
    workspace: str
    channel: str
    thread: str

    def __str__(self) -> str:
        return ":".join((self.platform, self.workspace, self.channel, self.thread))


@dataclass(frozen=True)
class IncomingMessage:
    """A user's message, as any adapter hands it to the engine."""

    platform: str
    workspace: str
    channel: str
    thread: str  # thread ts, reply-chain root id, or the channel itself for a DM without threads
    author: str
    text: str
    sent_at: float
    message_id: str = ""

    @property
    def conversation(self) -> ConversationKey:
        return ConversationKey(self.platform, self.workspace, self.channel, self.thread)


@dataclass(frozen=True)
class Exemplar:
    """A question and a model answer, shown to the model as an example of voice, never as a fact."""

    question: str
    answer: str


@dataclass(frozen=True)
class Citation:
    number: int
    source: str
    title: str
    location: str
    score: float
    excerpt: str
    suspicious: tuple[str, ...] = ()  # why the passage was flagged at ingestion as addressed to an AI


@dataclass(frozen=True)
class Finish:
    """Why a streamed answer ended, when not normally: "length" (the token budget), "content_filter"
    (the provider's moderation), "incomplete" (the stream ended without saying why) or "error"
    (an error event after the answer began)."""

    reason: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer as it streams."""

    text: str


@dataclass(frozen=True)
class Notice:
    """Something the user should know besides the answer (context trimmed, cooling down, ...)."""

    kind: str
    text: str


@dataclass(frozen=True)
class Citations:
    items: tuple[Citation, ...]


@dataclass(frozen=True)
class Final:
    """The whole answer, once: what adapters post last and what memory keeps."""

    text: str
    citations: tuple[Citation, ...]
    mode: Literal["model", "offline", "fallback", "limited", "rejected", "error", "crisis"]  # fallback: see step vet
    usage: Usage = Usage()
    cost_usd: float | None = None
    notices: tuple[Notice, ...] = ()
    turn_id: int | None = None


ReplyEvent = TextDelta | Notice | Citations | Final
