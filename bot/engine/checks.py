"""Moderation as the steps use it: a verdict on the message or on the answer so far, and the
admin alerts a verdict asks for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.models import Notice
from bot.ops import metrics
from bot.safety.moderation import Stage, Verdict
from bot.safety.semantic import SemanticReading

if TYPE_CHECKING:
    from bot.engine.pipeline import Engine


async def moderate(
    engine: Engine, key: str, text: str, stage: Stage, reading: SemanticReading | None = None
) -> Verdict | None:
    """The moderation verdict for `text`, or None when moderation is off. `reading`: the learned
    detector's, used where the offline classifier decides (its harm categories, or a clearance)."""
    if engine.moderator is None:
        return None
    hints, cleared = (reading.harm, reading.harmless) if reading is not None else ((), False)
    verdict = await engine.moderator.check(text, stage, key, hints, cleared)
    if verdict is not None and verdict.categories:
        metrics.moderation_flag(stage, verdict.action)
    return verdict


async def check_answer(
    engine: Engine, key: str, answer: str, checked: int, notices: list[Notice]
) -> tuple[Verdict | None, int]:
    """Moderate the answer's unchecked tail (with some overlap, so a phrase split across segments
    is seen whole); a verdict only when the answer must be replaced, and how much is now checked."""
    verdict = await moderate(engine, key, answer[max(0, checked - 100) :], "output")
    if verdict is not None and verdict.action in {"refuse", "crisis"}:
        return verdict, len(answer)
    for alert in alerts(verdict, "output"):
        if alert not in notices:
            notices.append(alert)
    return None, len(answer)


def alerts(verdict: Verdict | None, stage: str) -> tuple[Notice, ...]:
    if verdict is None or not verdict.alert:
        return ()
    what = "message" if stage == "input" else "answer"
    return (Notice("alert", f"moderation flagged the {what}: {', '.join(verdict.categories)}"),)
