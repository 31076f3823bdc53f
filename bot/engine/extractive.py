"""The extract an offline answer quotes: up to three sentences of the retrieved passages that
best match the query, each with its passage's citation number, or none when nothing is relevant.

Sentences are scored by the cosine of their embedding with the query's (the query's vector is
the one retrieval computed, cached by `QueryCache`). A sentence is embedded after its passage's
title and headings, as retrieval embeds the passage: "For a raise, good moments include
performance reviews" alone is far from "How do I ask for a raise?" (0.49), under "Negotiating
Your Salary > Asking for a raise" it is close (0.66), and a guide's sentences are rarely whole
on their own. On the FiQA tasks (bench/offline_answers.py) the cosine declines better than word
overlap (balanced accuracy 73.8% against 69.6% on the dev half, 82.0% against 63.8% on the test
half) and the sentences it quotes come from a gold passage more often (77% of citations against
59% on the test half). Word overlap is the fallback without an embedder, or when it fails.
Every sentence quoted clears the threshold: an answer is not padded to two sentences with a
weaker one, which would cite a passage that does not answer.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from bot.ports import Embedder

log = logging.getLogger(__name__)

# The cosine a sentence needs to be quoted; with none above it the answer declines. Chosen for
# all-MiniLM-L6-v2 on the dev half of the FiQA tasks (bench/offline_answers.py prints the choice,
# and the one for OVERLAP_THRESHOLD, the share of the query's words a sentence needs). With 40
# dev tasks the optimum is narrow: 0.54 and 0.58 give 64% and 62.5% dev balanced accuracy, 0.555 73.8%.
THRESHOLD = 0.555
OVERLAP_THRESHOLD = 0.29
KEEP = 3  # sentences quoted at most
MIN_WORDS = 5  # shorter pieces ("Hope this helps.", "Many people ask this.") say nothing on their own
MAX_CHARS = 400  # a longer sentence is quoted in pieces of at most this size
PER_PASSAGE = 20  # sentences read from one passage: a huge passage cannot flood the embedder
MAX_SENTENCES = 60
SLICE = 8  # sentences embedded per call, similar lengths together: a batch is padded to its longest

# A boundary: after . ! ? (and a closing quote or bracket) before a character that is not a
# lower-case letter ("e.g. the" stays whole), after a full-width stop, or a line break.
_BOUNDARY = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)\]]))\s+(?=[^a-z\s])|(?<=[。！？])|\s*\n\s*")
_MARKER = re.compile(r"\s*\[\d{1,3}\]")  # a footnote in the source must not read as one of our citations
_IDEOGRAPH = "[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]"  # kana and CJK: one counts as a word
_IDEOGRAPHS = re.compile(_IDEOGRAPH)
_WORD = re.compile(rf"{_IDEOGRAPH}|\w{{3,}}")
_STOPWORDS = frozenset(
    "about after all also and any are can could did does for from had has have how into its more most not "
    "off one our out should some than that the their them then there these they this those was were what "
    "when where which while who why will with would you your".split()
)


@dataclass(frozen=True)
class Sentence:
    number: int  # the citation number of its passage
    text: str
    context: str = field(default="", compare=False)  # its passage's title and headings, embedded with it


def _pieces(sentence: str) -> Iterator[str]:
    """`sentence` cut at spaces into pieces of at most MAX_CHARS (text without spaces, anywhere)."""
    while len(sentence) > MAX_CHARS:
        cut = sentence.rfind(" ", MAX_CHARS // 2, MAX_CHARS)
        cut = cut if cut > 0 else MAX_CHARS
        yield sentence[:cut].rstrip() + " …"
        sentence = sentence[cut:].lstrip()
    yield sentence


def _words(text: str) -> int:
    return len(text.split()) + len(_IDEOGRAPHS.findall(text))


def _says_something(sentence: str) -> bool:
    """Not a fragment, a table row, or a line that only leads into a list ("the steps are simple:")."""
    return _words(sentence) >= MIN_WORDS and not sentence.startswith("|") and not sentence.endswith(":")


def split(text: str) -> Iterator[str]:
    """The sentences of `text` that say something on their own (`_says_something`), whitespace collapsed
    and a quotation's own `>` taken off (the answer quotes them)."""
    for raw in _BOUNDARY.split(_MARKER.sub("", text)):
        sentence = " ".join(raw.split()).lstrip("> ")
        if _says_something(sentence):
            yield from _pieces(sentence)


def sentences(passages: Sequence[tuple[int, str, str]]) -> list[Sentence]:
    """The candidate sentences of passages given as (citation number, title and headings, text),
    in order; a sentence already seen (chunks overlap) is kept once, under the earlier, better-ranked
    passage."""
    seen: set[str] = set()
    found: list[Sentence] = []
    for number, context, text in passages:
        for index, piece in enumerate(split(text)):
            if index >= PER_PASSAGE or len(found) >= MAX_SENTENCES:
                break
            if piece.casefold() not in seen:
                seen.add(piece.casefold())
                found.append(Sentence(number, piece, context))
    return found


def _embedded(sentence: Sentence) -> str:
    return f"{sentence.context}\n{sentence.text}" if sentence.context else sentence.text


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b)) / norm if norm else 0.0


async def dense_scores(query: str, candidates: Sequence[Sentence], embedder: Embedder) -> list[float]:
    """Each sentence's cosine with the query. The sentences go in length-sorted slices of SLICE:
    one long sentence in a batch of thirty short ones would pad them all to its length (a FiQA
    answer's 820 tokens of sentences cost about 1,800 in one batch, 1,000 in slices)."""
    if not candidates:
        return []
    vector = await embedder.embed_query(query)
    texts = [_embedded(c) for c in candidates]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    scores = [0.0] * len(candidates)
    for start in range(0, len(order), SLICE):
        part = order[start : start + SLICE]
        for index, row in zip(part, await embedder.embed_documents([texts[i] for i in part])):
            scores[index] = _cosine(vector, row)
    return scores


def _terms(text: str) -> set[str]:
    return set(_WORD.findall(text.casefold())) - _STOPWORDS


def overlap_scores(query: str, candidates: Sequence[Sentence]) -> list[float]:
    """The share of the query's words (not stopwords) each sentence contains."""
    words = _terms(query)
    return [len(words & _terms(c.text)) / len(words) if words else 0.0 for c in candidates]


def choose(candidates: Sequence[Sentence], scores: Sequence[float], floor: float) -> list[Sentence]:
    """The best KEEP sentences that score at least `floor`, in the candidates' order (passages by
    rank, each in reading order): quoted that way, sentences of one passage read as they were written."""
    ranked = sorted(range(len(candidates)), key=lambda index: (-scores[index], index))
    return [candidates[index] for index in sorted(i for i in ranked[:KEEP] if scores[i] >= floor)]


async def extract(query: str, passages: Sequence[tuple[int, str, str]], embedder: Embedder | None) -> list[Sentence]:
    """The sentences to quote for `query` from passages (as `sentences` takes them); [] when none is relevant."""
    candidates = sentences(passages)
    if embedder is not None and candidates:
        try:
            return choose(candidates, await dense_scores(query, candidates, embedder), THRESHOLD)
        except Exception:  # the answer goes on without embeddings rather than fail
            log.warning("embedding the candidate sentences failed; ranking them by word overlap", exc_info=True)
    return choose(candidates, overlap_scores(query, candidates), OVERLAP_THRESHOLD)
