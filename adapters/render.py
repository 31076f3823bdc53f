"""Split a long answer into messages that fit a platform's limit.

Parts break between paragraphs where they can, never inside a fenced code block; a code
block longer than the limit is cut between lines and each piece re-fenced, a paragraph
longer than the limit between sentences, then words.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^(\s*)(```|~~~)(.*)$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _blocks(text: str) -> list[tuple[str, str]]:
    """("code", fenced block) and ("text", paragraph) in order."""
    blocks: list[tuple[str, str]] = []
    paragraph: list[str] = []
    code: list[str] | None = None
    fence = ""
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if code is not None:
            code.append(line)
            if match and match.group(2) == fence and not match.group(3).strip():
                blocks.append(("code", "\n".join(code)))
                code = None
            continue
        if match:
            if paragraph:
                blocks.append(("text", "\n".join(paragraph)))
                paragraph = []
            code, fence = [line], match.group(2)
        elif line.strip():
            paragraph.append(line)
        elif paragraph:
            blocks.append(("text", "\n".join(paragraph)))
            paragraph = []
    if code is not None:  # an unclosed fence (a cut-off answer): close it
        code.append(fence)
        blocks.append(("code", "\n".join(code)))
    if paragraph:
        blocks.append(("text", "\n".join(paragraph)))
    return blocks


def _split_code(block: str, limit: int) -> list[str]:
    lines = block.split("\n")
    opening, closing = lines[0], lines[-1]
    room = limit - len(opening) - len(closing) - 2
    pieces: list[str] = []
    current: list[str] = []
    for line in lines[1:-1]:
        for segment in [line[i : i + room] for i in range(0, len(line), room)] or [""]:  # a huge line: hard cut
            if current and len("\n".join(current)) + 1 + len(segment) > room:
                pieces.append("\n".join([opening, *current, closing]))
                current = []
            current.append(segment)
    pieces.append("\n".join([opening, *current, closing]))
    return pieces


def _split_text(block: str, limit: int) -> list[str]:
    pieces: list[str] = []
    current = ""
    for unit in _SENTENCE.split(block):
        while len(unit) > limit:
            cut = unit.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            if current:
                pieces.append(current)
                current = ""
            pieces.append(unit[:cut])
            unit = unit[cut:].lstrip()
        if current and len(current) + 1 + len(unit) > limit:
            pieces.append(current)
            current = unit
        else:
            current = f"{current} {unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces


def split_message(text: str, limit: int) -> list[str]:
    """Parts of at most `limit` characters that joined with blank lines give the text back."""
    if limit < 20:
        raise ValueError("limit must be at least 20 characters")
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for kind, block in _blocks(text):
        pieces = [block] if len(block) <= limit else (_split_code if kind == "code" else _split_text)(block, limit)
        for piece in pieces:
            if current and len(current) + 2 + len(piece) > limit:
                parts.append(current)
                current = piece
            else:
                current = f"{current}\n\n{piece}" if current else piece
    if current:
        parts.append(current)
    return parts

# Notices users see above the answer (others, such as admin alerts, are not for them).
SHOWN_NOTICES = frozenset({"trimmed", "search_unavailable", "fallback"})

