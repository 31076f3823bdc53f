"""Slack presentation: Markdown to mrkdwn, answer blocks, sources and feedback buttons.

Feedback comes two ways: Slack's `feedback_buttons` element inside a `context_actions` block
(docs.slack.dev/reference/block-kit/block-elements/feedback-buttons-element: positive_button and
negative_button, each {text: plain_text of at most 75 characters, value of at most 2,000}; at most 5
elements a block), which the native streaming path ends every answer with, and our own two buttons in an
`actions` block, kept for the chat.update path (a workspace without the AI-app features). Both carry the
turn id, and `feedback_of` reads either click the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from adapters.render import split_message
from bot.models import Citation

MESSAGE_LIMIT = 3900  # Slack truncates message text past 4,000 characters
SECTION_LIMIT = 3000  # a section block's text field
FEEDBACK_UP = "advisor_feedback_up"
FEEDBACK_DOWN = "advisor_feedback_down"
FEEDBACK_NATIVE = "advisor_feedback"  # the feedback_buttons element; its values are "up:<turn>" / "down:<turn>"

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


def feedback_block(turn_id: int, native: bool = False) -> dict[str, Any]:
    """The answer's 👍/👎: Slack's feedback_buttons in context_actions (`native`), else our own buttons."""
    if native:
        def button(emoji: str, kind: str, label: str) -> dict[str, Any]:
            text = {"type": "plain_text", "text": emoji}
            return {"text": text, "value": f"{kind}:{turn_id}", "accessibility_label": label}

        element = {
            "type": "feedback_buttons",
            "action_id": FEEDBACK_NATIVE,
            "positive_button": button("👍", "up", "This answer helped"),
            "negative_button": button("👎", "down", "This answer did not help"),
        }
        return {"type": "context_actions", "block_id": f"advisor_feedback_{turn_id}", "elements": [element]}
    return {
        "type": "actions",
        "block_id": "advisor_feedback",
        "elements": [
            {"type": "button", "action_id": FEEDBACK_UP, "text": {"type": "plain_text", "text": "👍"}, "value": str(turn_id)},
            {"type": "button", "action_id": FEEDBACK_DOWN, "text": {"type": "plain_text", "text": "👎"}, "value": str(turn_id)},
        ],
    }


def feedback_of(action: dict[str, Any]) -> tuple[str, int] | None:
    """(turn id, +1 or -1) of a click on either kind of feedback button; None if it is not one."""
    action_id, value = action.get("action_id"), str(action.get("value") or "")
    if action_id in (FEEDBACK_UP, FEEDBACK_DOWN):
        return value, 1 if action_id == FEEDBACK_UP else -1
    kind, _, turn = value.partition(":")
    if action_id == FEEDBACK_NATIVE and kind in ("up", "down") and turn:
        return turn, 1 if kind == "up" else -1
    return None


def closing_blocks(citations: tuple[Citation, ...], turn_id: int | None, native: bool = False) -> list[dict[str, Any]]:
    """What follows an answer's text: the sources context block and the feedback buttons."""
    blocks: list[dict[str, Any]] = []
    if citations:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": sources_text(citations)[:2900]}]})
    if turn_id is not None:
        blocks.append(feedback_block(turn_id, native))
    return blocks


def message_blocks(
    part: str, citations: tuple[Citation, ...] = (), turn_id: int | None = None, native: bool = False
) -> list[dict[str, Any]]:
    """Sections of at most 3,000 characters, then (on the last part) sources and feedback."""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": section}} for section in split_message(part, SECTION_LIMIT)
    ]
    return blocks + closing_blocks(citations, turn_id, native)


def answer_messages(
    text: str, citations: tuple[Citation, ...], turn_id: int | None, native: bool = False
) -> list[tuple[str, list[dict[str, Any]]]]:
    """(fallback text, blocks) for each message of a final answer; `native`: Slack's feedback_buttons."""
    parts = split_message(to_mrkdwn(text), MESSAGE_LIMIT)
    last = len(parts) - 1
    return [
        (part, message_blocks(part, citations if i == last else (), turn_id if i == last else None, native))
        for i, part in enumerate(parts)
    ]


def preview(text: str) -> str:
    """What a message shows while the answer streams in."""
    converted = to_mrkdwn(text)
    return converted if len(converted) <= MESSAGE_LIMIT else "…" + converted[-(MESSAGE_LIMIT - 1) :]


@dataclass(frozen=True)
class Answer:
    """A final answer as the writers take it: Markdown text (notices first), its sources and its turn.

    `plain`: a message of text alone (the apology when the engine failed), no blocks."""

    text: str
    citations: tuple[Citation, ...] = ()
    turn_id: int | None = None
    plain: bool = False

    def messages(self, native: bool = False) -> list[tuple[str, list[dict[str, Any]] | None]]:
        """The chat.postMessage / chat.update messages; `native`: with Slack's feedback_buttons."""
        if self.plain:
            return [(self.text, None)]
        return list(answer_messages(self.text, self.citations, self.turn_id, native))

    def closing(self) -> list[dict[str, Any]]:
        """The blocks chat.stopStream puts under a streamed answer: sources, then feedback_buttons."""
        return [] if self.plain else closing_blocks(self.citations, self.turn_id, native=True)
