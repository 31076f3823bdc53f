"""The crisis head's second view: the message's words and letter sequences, not its meaning.

The embedding head reads what a message means; it blurs what the message literally says: slang
("kms", "unalive"), misspellings ("wanna dye", "sucide"), and a few words that matter whatever
surrounds them. A logistic regression over the message's word pairs and 3-5-letter pieces, fitted on
the same bank (tools/build_safety_head.py), reads exactly that, and the two views' mean beat either
alone on every dev set (README, "Safety"). It costs a few hundred dictionary look-ups a message.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping

READ_CHARS = 1_000  # a long message is read by its beginning, as the embedding reads it: at most ~2 ms
_TOKENS = re.compile(r"[\w']+|[^\w\s]")
_WORDS = re.compile(r"\w+")


def features(text: str) -> list[str]:
    """Words (`w:`), word pairs (`b:`) and each word's 3-5-letter pieces with its edges (`c:`), of the
    NFKC-folded, lower-cased text. The build script fits on exactly these."""
    folded = unicodedata.normalize("NFKC", text[:READ_CHARS]).lower()
    tokens = _TOKENS.findall(folded)
    found = [f"w:{token}" for token in tokens] + [f"b:{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
    for word in _WORDS.findall(folded):
        padded = f" {word} "
        for size in (3, 4, 5):
            found += [f"c:{padded[i : i + size]}" for i in range(max(1, len(padded) - size + 1))]
    return found


class LexicalHead:
    """p(crisis) from the weights of the features a message has (each counted once)."""

    def __init__(self, weights: Mapping[str, float], intercept: float) -> None:
        self.weights, self.intercept = weights, intercept

    @classmethod
    def from_arrays(cls, vocabulary: list[str], coefficients: list[float], intercept: float) -> LexicalHead:
        return cls(dict(zip(vocabulary, coefficients, strict=True)), intercept)

    def crisis_p(self, text: str) -> float:
        score = self.intercept + sum(self.weights.get(feature, 0.0) for feature in set(features(text)))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, score))))


__all__ = ["READ_CHARS", "LexicalHead", "features"]
