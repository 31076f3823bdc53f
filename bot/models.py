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
    """A chunk found by a search, with the score of the mode that found it."""

    chunk: Chunk
    score: float
