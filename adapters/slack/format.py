"""Slack presentation: Markdown to mrkdwn, answer blocks, sources and feedback buttons."""

from __future__ import annotations

import re
from typing import Any

from adapters.render import split_message
from bot.models import Citation

MESSAGE_LIMIT = 3900  # Slack truncates message text past 4,000 characters
SECTION_LIMIT = 3000  # a section block's text field
FEEDBACK_UP = "advisor_feedback_up"
FEEDBACK_DOWN = "advisor_feedback_down"

_CODE = re.compile(r"(```.*?```|`[^`\n]+`)", re.DOTALL)
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.MULTILINE)
_BULLET = re.compile(r"^(\s*)[-*]\s+", re.MULTILINE)


def _escape(text: str) -> str:
    """Slack's three control characters; the model's text must never form a mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """The common Markdown a model writes, as Slack mrkdwn; code spans stay verbatim."""
    pieces = _CODE.split(markdown)
    out = []
    for index, piece in enumerate(pieces):
        if index % 2:  # code
            out.append(_escape(piece))
            continue
        piece = _escape(piece)
        piece = _HEADING.sub(lambda m: f"*{m.group(1)}*", piece)
        piece = _BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", piece)
        piece = _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", piece)
        piece = _BULLET.sub(lambda m: f"{m.group(1)}• ", piece)
        out.append(piece)
    return "".join(out)


def sources_text(citations: tuple[Citation, ...]) -> str:
    lines = []
    for item in citations:
        where = f", {item.location}" if item.location else ""
        lines.append(f"[{item.number}] {_escape(item.title)}{_escape(where)}")
    return "Sources: " + " · ".join(lines)


def message_blocks(part: str, citations: tuple[Citation, ...] = (), turn_id: int | None = None) -> list[dict[str, Any]]:
    """Sections of at most 3,000 characters, then (on the last part) sources and feedback."""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": section}} for section in split_message(part, SECTION_LIMIT)
    ]
    if citations:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": sources_text(citations)[:2900]}]})
    if turn_id is not None:
        blocks.append(
            {
                "type": "actions",
                "block_id": "advisor_feedback",
                "elements": [
                    {"type": "button", "action_id": FEEDBACK_UP, "text": {"type": "plain_text", "text": "👍"}, "value": str(turn_id)},
                    {"type": "button", "action_id": FEEDBACK_DOWN, "text": {"type": "plain_text", "text": "👎"}, "value": str(turn_id)},
                ],
            }
        )
    return blocks


def answer_messages(text: str, citations: tuple[Citation, ...], turn_id: int | None) -> list[tuple[str, list[dict[str, Any]]]]:
    """(fallback text, blocks) for each message of a final answer."""
    parts = split_message(to_mrkdwn(text), MESSAGE_LIMIT)
    return [
        (part, message_blocks(part, citations if i == len(parts) - 1 else (), turn_id if i == len(parts) - 1 else None))
        for i, part in enumerate(parts)
    ]


def preview(text: str) -> str:
    """What a message shows while the answer streams in."""
    converted = to_mrkdwn(text)
    return converted if len(converted) <= MESSAGE_LIMIT else "…" + converted[-(MESSAGE_LIMIT - 1) :]
