"""Exact and near-duplicate detection: normalised text, then word-shingle Jaccard similarity."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Literal

_WORD = re.compile(r"\w+")

Duplicate = Literal["duplicate", "near_duplicate"]


def normalise(text: str) -> str:
    """Lower-case words only: the key under which two texts are exact duplicates."""
    return " ".join(_WORD.findall(text.lower()))


def shingles(text: str, size: int) -> frozenset[tuple[str, ...]]:
    words = normalise(text).split()
    if len(words) <= size:
        return frozenset({tuple(words)}) if words else frozenset()
    return frozenset(tuple(words[i : i + size]) for i in range(len(words) - size + 1))


class DuplicateFilter:
    """Remembers the texts it accepts; tells whether a new text repeats one of them.

    Near duplicates are found through an inverted index from shingle to texts, so only
    texts that share a shingle are compared (no all-pairs loop).
    """

    def __init__(self, threshold: float = 0.8, shingle_size: int = 3) -> None:
        if not 0 < threshold <= 1:
            raise ValueError("the near-duplicate threshold must be in (0, 1]")
        self.threshold = threshold
        self.shingle_size = shingle_size
        self._exact: set[str] = set()
        self._sizes: list[int] = []
        self._index: defaultdict[tuple[str, ...], list[int]] = defaultdict(list)

    def check(self, text: str) -> Duplicate | None:
        """'duplicate' or 'near_duplicate' of an accepted text; None when new (it is then accepted)."""
        key = normalise(text)
        if key in self._exact:
            return "duplicate"
        mine = shingles(text, self.shingle_size)
        shared = Counter(other for shingle in mine for other in self._index.get(shingle, ()))
        for other, overlap in shared.items():
            if overlap / (len(mine) + self._sizes[other] - overlap) >= self.threshold:
                return "near_duplicate"
        self._exact.add(key)
        number = len(self._sizes)
        self._sizes.append(len(mine))
        for shingle in mine:
            self._index[shingle].append(number)
        return None
