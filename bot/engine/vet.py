"""Step `vet`: a small local model's answer (ADVISOR_LOCAL_MODEL) is kept only when it is grounded:
it cites a passage it was given, mostly in that passage's words, and does not decline a question
those passages were found for (`ungrounded`).
Otherwise the extractive offline answer replaces it, and the turn's mode is "fallback", so
`advisor eval answers` counts how often that happens. Other models' answers pass untouched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bot.engine import prompts
from bot.engine.answer import Answer
from bot.engine.remember import final_text
from bot.engine.speak import speak_offline
from bot.models import Notice, ReplyEvent

if TYPE_CHECKING:
    from bot.engine.pipeline import Engine

log = logging.getLogger(__name__)

FALLBACK_NOTE = "My language model's answer didn't cite my knowledge base, so here is the answer I give without it:"
_DECLINE = re.compile(
    r"\b(?:i (?:do not|don't) know|i can(?:no|')t (?:answer|help)|i(?: am|'m) (?:unable|not able) to"
    r"|(?:passages?|context|text) (?:do(?:es)?n't|do(?:es)? not) (?:answer|say|mention|cover|contain))",
    re.IGNORECASE,
)


_WORD = re.compile(r"[a-z]{4,}")
_COMMON = frozenset(
    "that this with from your have will they them their there what when which would could should about into "
    "than then more most some such also just only very each other answer question passage passages".split()
)
SUPPORTED_SHARE = 0.5  # of the answer's content words, at least this many must be in the passages it cites


def content_words(text: str) -> set[str]:
    return {word.removesuffix("s") for word in _WORD.findall(text.lower()) if word not in _COMMON}


def ungrounded(text: str, answer: Answer) -> str | None:
    """Why the answer cannot stand, or None when it can: no passages; a decline; no valid citation;
    mostly words the passages it cites do not have (a wrong citation, or invented advice); a line
    said twice (a small model caught in a loop)."""
    if not prompts.quotable(answer.hits):
        return "no passages"
    if _DECLINE.search(text.replace("\u2019", "'")):
        return "declined"
    cited = [c for c in prompts.cited(text, answer.hits) if not c.suspicious]
    if not cited:
        return "no valid citation"  # none, or only of a passage the small prompt left out
    words = content_words(text)
    sources = content_words(" ".join(answer.hits[c.number - 1].chunk.text for c in cited))
    if words and len(words & sources) < SUPPORTED_SHARE * len(words):
        return "unsupported by the passages it cites"
    lines = [line.strip() for line in text.splitlines() if len(line.strip()) > 20]
    if len(lines) != len(set(lines)):
        return "repeats itself"
    return None


async def vet(engine: Engine, answer: Answer) -> AsyncIterator[ReplyEvent]:
    if engine.model is None or not engine.settings.local.enabled:
        return
    text, _ = final_text(answer)  # what step remember would keep: the tone pass's draft if the rewrite lost a citation
    why = ungrounded(text, answer)
    if why is None:
        return
    log.info("turn %s: the local model's answer was replaced by the extractive one (%s)", answer.trace, why,
             extra={"turn_id": answer.trace or None, "fallback": why})
    answer.fallback = why
    notice = Notice("fallback", FALLBACK_NOTE)
    answer.notices.append(notice)
    yield notice
    async for event in speak_offline(engine, answer):
        yield event

