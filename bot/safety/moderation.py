"""Moderation of incoming messages and outgoing answers, never blocking the event loop.

`Moderator.check()` asks OpenAI's moderation endpoint through the async `openai` client
when one is configured; without one, or when the service fails (timeout, 5xx, anything),
it uses `offline_classify()`: a small rule-based classifier over the same categories that
needs no model, download or network, and reuses the crisis detector for self-harm.
`decide()` turns flagged categories into one action from the settings (`ADVISOR_SAFETY_ACTIONS`):

* ``normal``: answer as usual;  ``care``: answer, with a note to the model to take care;
* ``refuse``: a polite refusal instead of an answer;  ``crisis``: the crisis protocol;
* ``alert``: answer as usual, and the `Final` carries a ``Notice("alert", ...)`` for admins.

Flags are logged by category; the text only with ``ADVISOR_SAFETY_LOG_TEXT=true``.
See docs/moderation.md.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.safety.crisis import detect, normalise
from config.settings import DEFAULT_SAFETY_ACTIONS, MODERATION_CATEGORIES, parse_safety_actions

log = logging.getLogger(__name__)

Action = Literal["normal", "care", "refuse", "alert", "crisis"]
Stage = Literal["input", "output"]
# how strongly an action overrides the others when several categories are flagged (alert is additive)
_SEVERITY: dict[str, int] = {"normal": 0, "care": 1, "refuse": 2, "crisis": 3}

REFUSAL = (
    "I'm sorry, but I can't help with that. I'm here for practical advice, and this request is outside "
    "what I can responsibly answer. If I've misunderstood you, please try rephrasing your question."
)
RETRACTION = (
    "I started writing an answer, but it wasn't something I should share, so I've removed it. "
    "Could you ask in a different way?"
)
RETRACTED_NOTICE = "I removed part of my answer because it didn't meet my safety guidelines."
CARE_INSTRUCTION = (
    "Safety note: the user's message touches on a sensitive topic ({categories}). Answer with care: stay calm, "
    "respectful and non-judgemental, do not repeat abusive or hateful language, de-escalate, and keep to "
    "practical, safe advice."
)


@dataclass(frozen=True)
class ModerationResult:
    """What a check found: the flagged categories and who decided ("openai" or "offline")."""

    flagged: bool
    categories: tuple[str, ...] = ()
    source: str = "offline"
    scores: dict[str, float] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Verdict:
    """The action for a checked text, and whether admins should be alerted."""

    action: Action
    alert: bool
    result: ModerationResult

    @property
    def categories(self) -> tuple[str, ...]:
        return self.result.categories


def action_for(category: str, actions: dict[str, str]) -> str:
    """The configured action for one category: exact name, then the longest matching `prefix*`."""
    if category in actions:
        return actions[category]
    best, best_len = "normal", -1
    for key, action in actions.items():
        if key.endswith("*"):
            base = key[:-1]
            if (category == base or category.startswith(base + "/")) and len(base) > best_len:
                best, best_len = action, len(base)
    return best


def decide(result: ModerationResult, actions: dict[str, str]) -> Verdict:
    """One action for all the flagged categories: the most severe wins; any `alert` adds an alert."""
    if not result.flagged:
        return Verdict("normal", False, result)
    chosen = [action_for(category, actions) for category in result.categories]
    alert = "alert" in chosen
    action = max((a for a in chosen if a != "alert"), key=_SEVERITY.__getitem__, default="normal")
    return Verdict(action, alert, result)  # type: ignore[arg-type]


# --- the offline classifier ---------------------------------------------------------------


def _rx(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


_TARGET = r"(?:him|her|them|you|someone|somebody|people|everyone|my (?:\w+ )?(?:boss|wife|husband|neighbou?r|ex|coworker|colleague|landlord|family|partner|brother|sister|father|mother|dad|mom|mum))"
_MINOR = r"(?:child|children|kid|kids|minor|minors|underage|preteen|little (?:girl|boy)|(?:[1-9]|1[0-7]) ?(?:year|yr)s? ?old|schoolgirl|schoolboy)"
_SEXUAL = r"(?:sex|sexual|sexually|nude|nudes|naked|porn|porno|pornography|explicit|erotic|genitals?|masturbat\w*|orgasm\w*|blowjob|intercourse)"

# Each category: patterns over `crisis.normalise()`d text (lowercase, contractions expanded).
_RULES: dict[str, re.Pattern[str]] = {
    "violence": _rx(
        rf"\b(?:kill|murder|stab|shoot|strangle|poison|beat up|torture|hurt|attack) {_TARGET}\b",
        r"\b(?:how (?:do i|to|can i|would i)|best way to|help me) (?:kill|murder|stab|shoot|strangle|poison|torture) (?!myself\b|time\b|weeds?\b|bugs?\b|mold\b|germs?\b|bacteria\b)",
        r"\bget away with murder(?:ing)?\b",
    ),
    "violence/graphic": _rx(r"\b(?:dismember\w*|disembowel\w*|gore|mutilat\w*|decapitat\w*)\b"),
    "illicit": _rx(
        r"\b(?:how (?:do i|to|can i)|help me|ways? to) (?:make|cook|synthesi[sz]e|buy|sell|smuggle|grow) "
        r"(?:meth|methamphetamine|crack|cocaine|heroin|fentanyl|lsd|mdma|illegal drugs|drugs)\b",
        r"\b(?:launder(?:ing)? (?:money|cash|funds)|money laundering (?:scheme|tips|without))\b",
        r"\b(?:counterfeit|fake) (?:money|bills|banknotes|ids?|passports?|documents)\b",
        r"\b(?:how (?:do i|to|can i)|help me) (?:hack into|break into|steal|shoplift|pick a lock|hotwire|"
        r"evade taxes|commit (?:fraud|tax fraud|insurance fraud|identity theft))\b",
        r"\b(?:steal|stealing) (?:someone'?s? )?(?:identity|credit card|password)s?\b",
        r"\bphishing (?:email|page|kit|site)s?\b",
    ),
    "illicit/violent": _rx(
        r"\b(?:make|build|assemble|buy) (?:a |an )?(?:bomb|pipe bomb|explosive|explosives|ied|molotov|ghost gun|silencer)\b",
    ),
    "sexual": _rx(
        rf"\b(?:write|describe|send|show|tell) (?:me )?(?:an? |some )?(?:\w+ )?(?:{_SEXUAL})",
        r"\b(?:porn|porno|pornography|hentai|nudes|blowjob|masturbat\w*|orgasm\w*)\b",
        r"\bhave sex with\b",
    ),
    "sexual/minors": _rx(rf"\b{_SEXUAL}\b.{{0,60}}\b{_MINOR}\b", rf"\b{_MINOR}\b.{{0,60}}\b{_SEXUAL}\b"),
    "harassment": _rx(
        r"\byou(?: are| re|r)? (?:a |an |such an? |so |fucking |really )*(?:idiot|stupid|moron|dumb|worthless|"
        r"pathetic|loser|useless|retard\w*|piece of (?:shit|crap|garbage)|bitch|asshole)\b",
        r"\b(?:shut up|fuck (?:you|off)|go to hell|screw you)\b",
        r"\bnobody (?:likes|loves|wants) you\b",
    ),
    "harassment/threatening": _rx(
        r"\bkill yourself\b",
        rf"\bi (?:will|am going to|want to|would) (?:kill|hurt|find|beat|destroy|stab|shoot) {_TARGET}\b",
        r"\byou (?:will|are going to) (?:regret|pay for) (?:this|that|it)\b",
        r"\bi know where you live\b",
    ),
    "hate": _rx(
        r"\b(?:all|those|these|the) (?:\w+ )?(?:immigrants|foreigners|muslims|jews|christians|blacks|whites|asians|"
        r"gays|women|men|mexicans|arabs|refugees) (?:are|should) (?:all )?(?:animals|vermin|subhuman|parasites|"
        r"inferior|scum|trash|disgusting|go back|be banned|not be allowed)\b",
        r"\b(?:subhuman|inferior race|master race|racial purity|ethnic cleansing)\b",
    ),
    "hate/threatening": _rx(
        r"\b(?:kill|exterminate|gas|wipe out|eradicate) (?:all )?(?:the )?(?:\w+ )?(?:immigrants|foreigners|muslims|"
        r"jews|christians|blacks|whites|asians|gays|mexicans|arabs|refugees)\b",
    ),
    "self-harm/instructions": _rx(
        r"\b(?:how (?:do i|to|can i|should i)|best way to|easiest way to|painless way to|ways? to) "
        r"(?:kill myself|commit suicide|end my life|self harm|hurt myself|cut myself|overdose)\b",
    ),
}


def offline_classify(text: str, hints: tuple[str, ...] = (), cleared: bool = False) -> ModerationResult:
    """The offline classifier: the rules (deterministic, linear regexes over bounded text) and the
    categories the learned detector read in the message (`hints`, bot/safety/semantic.py). When the
    detector `cleared` the message, the harm rules' flags are set aside (self-harm ones never are)."""
    norm = normalise(text)
    found = [] if cleared else [category for category, rule in _RULES.items() if rule.search(norm)]
    found += [hint for hint in hints if hint in MODERATION_CATEGORIES]
    if detect(text).level == "crisis":
        found += ["self-harm", "self-harm/intent"]
    if any(c.startswith("self-harm/") for c in found) and "self-harm" not in found:
        found.append("self-harm")
    categories = tuple(c for c in MODERATION_CATEGORIES if c in found)
    return ModerationResult(bool(categories), categories, "offline")


# --- the moderator ------------------------------------------------------------------------


class Moderator:
    """Checks text with OpenAI's moderation endpoint (if a client is given) or the offline rules.

    A service failure never stops an answer: it is logged as a warning and the offline
    classifier decides instead. Nothing here blocks the event loop: the client is async and
    the offline rules are a handful of linear regexes over at most a few thousand characters.
    """

    def __init__(
        self,
        client: Any | None = None,
        model: str = "omni-moderation-latest",
        timeout: float = 5.0,
        actions: dict[str, str] | None = None,
        log_text: bool = False,
    ) -> None:
        self._client = client
        self.model = model
        self.timeout = timeout
        self.actions = actions if actions is not None else parse_safety_actions(DEFAULT_SAFETY_ACTIONS)
        self.log_text = log_text

    @property
    def source(self) -> str:
        return "openai" if self._client is not None else "offline"

    async def classify(self, text: str, hints: tuple[str, ...] = (), cleared: bool = False) -> ModerationResult:
        """OpenAI's verdict, or, without the service, the offline classifier with the detector's reading."""
        if self._client is None:
            return offline_classify(text, hints, cleared)
        try:
            response = await self._client.moderations.create(model=self.model, input=text, timeout=self.timeout)
            result = response.results[0]
        except Exception as exc:  # noqa: BLE001 -- timeouts, 5xx, dropped connections: never block the answer
            if getattr(exc, "status_code", None) == 404:  # an OpenAI-compatible server without /moderations
                log.warning("the model server has no moderation endpoint; using the offline classifier from now on")
                self._client = None
            else:
                log.warning("moderation service failed (%s); using the offline classifier", type(exc).__name__)
            return offline_classify(text, hints, cleared)
        categories = result.categories.model_dump(by_alias=True)
        scores = result.category_scores.model_dump(by_alias=True)
        flagged = tuple(c for c in MODERATION_CATEGORIES if categories.get(c))
        return ModerationResult(
            bool(result.flagged or flagged), flagged, "openai", {c: float(scores.get(c) or 0.0) for c in flagged}
        )

    async def check(
        self, text: str, stage: Stage, conversation: str = "", hints: tuple[str, ...] = (), cleared: bool = False
    ) -> Verdict:
        """Classify `text`, decide the action, and log a flag (without the text unless configured).
        `hints`/`cleared`: the learned detector's reading, used where the offline classifier decides."""
        verdict = decide(await self.classify(text, hints, cleared), self.actions)
        if verdict.result.flagged:
            extra = f" text={text!r}" if self.log_text else ""
            log.warning(
                "moderation flagged %s: conversation=%s categories=%s action=%s%s source=%s%s",
                stage,
                conversation,
                ",".join(verdict.categories) or "(unspecified)",
                verdict.action,
                " +alert" if verdict.alert else "",
                verdict.result.source,
                extra,
            )
        return verdict


def build_moderator(settings: Any, client: Any | None = None) -> Moderator | None:
    """The moderator the safety settings ask for, or None when moderation is turned off."""
    safety = settings.safety
    if not safety.moderation:
        return None
    return Moderator(
        client, safety.moderation_model, safety.moderation_timeout_seconds, safety.action_map, safety.log_text
    )


__all__ = [
    "CARE_INSTRUCTION",
    "REFUSAL",
    "RETRACTED_NOTICE",
    "RETRACTION",
    "ModerationResult",
    "Moderator",
    "Stage",
    "Verdict",
    "action_for",
    "build_moderator",
    "decide",
    "offline_classify",
]
