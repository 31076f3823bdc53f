"""A deterministic detector for passages that talk to the model instead of the reader.

Run at ingestion on every chunk (its title, headings and text). A flagged chunk keeps its
reasons in `chunk.extra["suspicious"]`; at answer time bot/engine/prompts.py renders it with
`suspicious="true"`, a note that it must not be followed, and after the clean passages.
Flagging never drops a passage: a guide *about* scams may quote a jailbreak, and the
reader may still need it. See docs/prompt-injection.md.

The patterns aim at text addressed to an AI ("ignore previous instructions", "you are now
DAN", "reveal your system prompt"), chat-template and wrapper tags, and hidden carriers
(HTML/markdown comments with instructions, invisible Unicode). Ordinary advice such as
"don't ignore your bank statements" or "you are now ready to budget" does not match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.models import Chunk

VERSION = "1"
"""Part of the ingest settings hash: a new detector version re-scans every file once."""

_F = re.IGNORECASE

_QUALIFIER = r"(?:all|any|every|the|your|my|these|those|its)?\s*(?:of\s+)?(?:the\s+|your\s+)?"
_EARLIER = (
    r"(?:previous|prior|above|earlier|preceding|foregoing|former|original|initial|system|developer|existing|other)"
)
_ORDERS = r"(?:instructions?|prompts?|rules|directions?|guidelines|guidance|context|messages?|commands?|constraints|restrictions|programming|directives?)"
_AI = r"(?:ai|a\.i\.|assistant|language model|llm|chat ?bot|bot|gpt|chatgpt|model|advisor)"

PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "ignore-instructions",
        re.compile(
            rf"\b(?:ignore|disregard|forget|override|bypass|skip|drop|abandon)\b\s+{_QUALIFIER}"
            rf"(?:{_EARLIER}\s+)(?:\w+\s+)?{_ORDERS}\b",
            _F,
        ),
    ),
    (
        "ignore-instructions",
        re.compile(rf"\b(?:ignore|disregard|forget)\s+(?:all|any|every)\s+(?:\w+\s+)?{_ORDERS}\b", _F),
    ),
    (
        "disregard-above",
        re.compile(
            r"\b(?:disregard|ignore|forget)\s+(?:everything|all|anything|what(?:ever)?)?\s*(?:of\s+)?(?:the\s+)?(?:(?:that\s+)?(?:was\s+|is\s+)?"
            r"(?:said|written|stated)\s+)?(?:above|before this|so far|up to (?:this|now))\b"
            r"(?=\s*(?:[.,;:!)\n]|$|and\b|then\b|instead\b|text\b|content\b|prompt\b|messages?\b))",
            _F,
        ),
    ),
    (
        "new-instructions",
        re.compile(r"\b(?:new|updated|real|actual|true|hidden|secret)\s+(?:system\s+)?instructions?\s*:", _F),
    ),
    (
        "role-reassignment",
        re.compile(
            r"\byou\s+are\s+(?:now|no\s+longer)\s+(?:an?\s+|the\s+|my\s+|in\s+)?(?:\w+\s+)?"
            rf"(?:{_AI}|dan|jailbroken|unrestricted|unfiltered|uncensored|evil|mode|persona|character|bound|called|named|going\s+to)\b",
            _F,
        ),
    ),
    (
        "role-reassignment",
        re.compile(
            r"\bfrom\s+now\s+on,?\s+(?:you\s+(?:are|will|must|shall|should)|act|respond|answer|reply|pretend|ignore|only)\b",
            _F,
        ),
    ),
    (
        "role-play-jailbreak",
        re.compile(
            r"\b(?:act|behave|respond|answer)\s+as\s+(?:if\s+you\s+(?:are|were)\s+)?(?:an?\s+|the\s+)?"
            r"(?:unrestricted|unfiltered|uncensored|jailbroken|evil|rogue|different|new)\b"
            r"|\bpretend\s+(?:to\s+be|(?:that\s+)?you\s+(?:are|have))\s+(?:an?\s+)?(?:\w+\s+)?"
            rf"(?:{_AI}|unrestricted|unfiltered|no\s+(?:rules|restrictions|limits|filters))"
            r"|\broleplay\s+as\b|\brole-play\s+as\b"
            r"|\bdo\s+anything\s+now\b|\bDAN\s+mode\b|\byou\s+are\s+DAN\b|\bjailbr(?:eak|oken)\b"
            r"|\b(?:developer|god|sudo|admin|debug)\s+mode\s+(?:enabled|activated|on)\b|\benable\s+(?:developer|god|sudo|debug)\s+mode\b"
            r"|\bwithout\s+(?:any\s+)?(?:ethical\s+|moral\s+)?(?:restrictions|filters|guidelines|limitations)\b",
            _F,
        ),
    ),
    (
        "system-prompt",
        re.compile(
            r"\b(?:system|hidden|initial|original|developer|secret)\s+(?:prompt|instructions?|message)\b"
            r"|\b(?:reveal|print|show|repeat|output|display|leak|tell\s+me|share|dump)\s+(?:me\s+)?(?:your|the)\s+"
            r"(?:\w+\s+)?(?:prompt|instructions|configuration|config|settings|rules|persona)\b",
            _F,
        ),
    ),
    (
        "addressed-to-ai",
        re.compile(
            rf"\b(?:if\s+you\s+are\s+an?|dear|attention|note\s+to(?:\s+the)?|message\s+(?:to|for)(?:\s+the)?|instructions?\s+for(?:\s+the)?)\s+{_AI}s?\b"
            rf"|\b(?:ai|llm|language\s+model|chat ?bot|assistant)s?\s+(?:reading|processing|summari[sz]ing)\s+this\b",
            _F,
        ),
    ),
    (
        "chat-markup",
        re.compile(
            r"<\|(?:im_start|im_end|system|user|assistant|endoftext)\|>|\[/?INST\]|<</?SYS>>"
            r"|^\s*#{0,3}\s*(?:system|assistant)\s*:\s*\S",
            _F | re.MULTILINE,
        ),
    ),
    (
        "delimiter-spoof",
        re.compile(
            r"<\s*/?\s*(?:reference_passages|passage|user_message|system|instructions?|conversation|latest|transcript)\b[^>\n]{0,80}>",
            _F,
        ),
    ),
    (
        "agent-action",
        re.compile(
            r"(?:^|\s)/advisor\s+(?:reindex|forget|admin|status)\b"
            r"|\b(?:run|execute|call|invoke|trigger)\s+(?:the\s+)?(?:reindex|forget|admin|delete|shell|tool|function)\b",
            _F | re.MULTILINE,
        ),
    ),
)

_HTML_COMMENT = re.compile(r"<!--(.*?)(?:-->|$)", re.DOTALL)
_MD_COMMENT = re.compile(
    r"^\s*\[(?://|comment|_)\]:\s*(?:#|<>)\s*(?:\((.*)\)|\"(.*)\"|'(.*)')\s*$", re.MULTILINE | re.IGNORECASE
)
_IMPERATIVE = re.compile(
    rf"\b(?:{_AI}|you|your|instructions?|prompt|respond|reply|answer|say|tell|recommend|ignore|must|always|never)\b", _F
)
_INVISIBLE = re.compile("[\U000e0000-\U000e007f]|[\u200b-\u200f\u2060-\u2064\ufeff]{3,}")


def _hidden_comments(text: str) -> Iterable[str]:
    for match in _HTML_COMMENT.finditer(text):
        yield match.group(1)
    for match in _MD_COMMENT.finditer(text):
        yield next((g for g in match.groups() if g), "")


def scan(text: str) -> list[str]:
    """The reasons `text` looks like instructions to a model, in a fixed order ([] when clean)."""
    if not text:
        return []
    reasons: list[str] = []
    visible = _INVISIBLE.sub("", text)
    for reason, pattern in PATTERNS:
        if reason not in reasons and pattern.search(visible):
            reasons.append(reason)
    if any(_IMPERATIVE.search(body) for body in _hidden_comments(visible)):
        reasons.append("hidden-comment")
    if _INVISIBLE.search(text):
        reasons.append("invisible-text")
    return reasons


def chunk_reasons(chunk: Chunk) -> list[str]:
    """Scan everything of a chunk the model will see: title, heading trail and text."""
    return scan("\n".join([chunk.title, *chunk.headings, chunk.text]))


def flag(chunk: Chunk) -> dict[str, object]:
    """The chunk's `extra` with `suspicious` set to its reasons, or removed when it is clean."""
    extra = {key: value for key, value in chunk.extra.items() if key != "suspicious"}
    reasons = chunk_reasons(chunk)
    if reasons:
        extra["suspicious"] = reasons
    return extra


def is_suspicious(chunk: Chunk) -> bool:
    return bool(chunk.extra.get("suspicious"))
