"""Structure-aware chunking: sections stay apart, paragraphs stay whole where they fit.

Each section (the text under one heading trail) is cut into chunks of at most
`max_tokens`, breaking between paragraphs first, then between sentences, then between
words; a fenced code block is never cut between sentences. Consecutive chunks of one
section share up to `overlap` tokens of trailing sentences. Chunk ids hash the source
and the text, so unchanged passages keep their ids across re-ingests.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bot.models import Chunk
from bot.tokens import estimate_tokens
from retrieval.loaders import Document, Section

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    tokens: int
    paragraph: int


def _paragraph_spans(text: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, is_code) of paragraphs; a fenced block is one paragraph however long."""
    position = 0
    fences = list(_FENCE.finditer(text))
    blocks: list[tuple[int, int]] = []
    while len(fences) >= 2:
        opening, closing = fences[0], fences[1]
        line_end = text.find("\n", closing.start())
        blocks.append((opening.start(), len(text) if line_end < 0 else line_end))
        fences = fences[2:]
    for block_start, block_end in [*blocks, (len(text), len(text))]:
        prose = text[position:block_start]
        cursor = 0
        for brk in [*_PARAGRAPH_BREAK.finditer(prose), None]:
            stop = brk.start() if brk else len(prose)
            if prose[cursor:stop].strip():
                yield position + cursor, position + stop, False
            cursor = brk.end() if brk else len(prose)
        if block_end > block_start:
            yield block_start, block_end, True
        position = block_end


def _split_long(text: str, start: int, end: int, max_tokens: int, count: Callable[[str], int], code: bool) -> Iterator[tuple[int, int]]:
    """Spans inside [start, end) of at most max_tokens: sentences (lines for code), then words."""
    pieces: list[tuple[int, int]] = []
    cursor = start
    boundary = re.compile(r"\n") if code else _SENTENCE_END
    for match in boundary.finditer(text, start, end):
        pieces.append((cursor, match.end()))
        cursor = match.end()
    if cursor < end:
        pieces.append((cursor, end))
    for piece_start, piece_end in pieces:
        if count(text[piece_start:piece_end]) <= max_tokens:
            yield piece_start, piece_end
            continue
        words = list(re.finditer(r"\S+\s*", text[piece_start:piece_end]))
        for i in range(0, len(words), max_tokens // 2 or 1):
            group = words[i : i + (max_tokens // 2 or 1)]
            yield piece_start + group[0].start(), piece_start + group[-1].end()


def _units(text: str, max_tokens: int, count: Callable[[str], int]) -> list[_Unit]:
    units: list[_Unit] = []
    for number, (start, end, code) in enumerate(_paragraph_spans(text)):
        tokens = count(text[start:end])
        if tokens <= max_tokens:
            units.append(_Unit(start, end, tokens, number))
        else:
            for s, e in _split_long(text, start, end, max_tokens, count, code):
                units.append(_Unit(s, e, count(text[s:e]), number))
    return units


def _pack(units: list[_Unit], max_tokens: int, overlap: int) -> Iterator[list[_Unit]]:
    current: list[_Unit] = []
    size = 0
    for unit in units:
        if current and size + unit.tokens > max_tokens:
            yield current
            carried: list[_Unit] = []
            carried_size = 0
            for previous in reversed(current):
                if carried_size + previous.tokens > overlap or carried_size + previous.tokens + unit.tokens > max_tokens:
                    break
                carried.insert(0, previous)
                carried_size += previous.tokens
            current, size = carried, carried_size
        current.append(unit)
        size += unit.tokens
    if current:
        yield current


def chunk_id(source: str, text: str, occurrence: int) -> str:
    digest = hashlib.sha256(f"{source}\x00{occurrence}\x00{text}".encode()).hexdigest()
    return str(uuid.UUID(digest[:32]))


def chunk_document(
    document: Document,
    file_hash: str,
    max_tokens: int = 200,
    overlap: int = 40,
    count: Callable[[str], int] = estimate_tokens,
) -> list[Chunk]:
    """All chunks of a document, in order."""
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for section in document.sections:
        for group in _pack(_units(section.text, max_tokens, count), max_tokens, overlap):
            chunks.append(_make_chunk(document, section, group, file_hash, seen))
    return chunks


def _make_chunk(document: Document, section: Section, group: list[_Unit], file_hash: str, seen: dict[str, int]) -> Chunk:
    local_start, local_end = group[0].start, group[-1].end
    text = section.text[local_start:local_end].strip()
    occurrence = seen.get(text, 0)
    seen[text] = occurrence + 1
    return Chunk(
        id=chunk_id(document.source, text, occurrence),
        text=text,
        source=document.source,
        title=section.title or document.title,
        headings=section.headings,
        start=section.start + local_start,
        end=section.start + local_end,
        file_hash=file_hash,
        extra=dict(section.extra),
    )


def embedding_text(chunk: Chunk) -> str:
    """What is embedded and BM25-indexed: the passage with its title and heading trail."""
    trail = [chunk.title, *(h for h in chunk.headings if h != chunk.title)]
    context = " > ".join(h for h in trail if h)
    return f"{context}\n{chunk.text}" if context else chunk.text
