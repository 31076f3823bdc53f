"""Admin alerts: what the engine flagged for admins, as one line an adapter posts to a channel.

The engine marks a turn for admins with `Notice("alert", ...)` on its Final (the crisis
protocol answered, or moderation chose the `alert` action). The alert names where and
whom, never what was said: admins open the conversation if they need to.
"""

from __future__ import annotations

from bot.models import Final, IncomingMessage


def alert_channel(setting: str | None, platform: str) -> str | None:
    """The channel for `platform` from ADVISOR_SAFETY_ALERT_CHANNEL: `slack:C123,discord:456`, or one bare id."""
    if not setting:
        return None
    bare = None
    for part in (p.strip() for p in setting.split(",")):
        name, sep, channel = part.partition(":")
        if sep and name.strip().lower() == platform:
            return channel.strip() or None
        if not sep and part:
            bare = part
    return bare


def alert_text(final: Final, message: IncomingMessage, where: str) -> str | None:
    """One alert line for the Final's alert notices, or None when it has none."""
    reasons = [notice.text for notice in final.notices if notice.kind == "alert"]
    if not reasons:
        return None
    turn = f", turn {final.turn_id}" if final.turn_id is not None else ""
    return (
        f"Safety alert: {'; '.join(reasons)}. Conversation in {where}, user {message.author}{turn}. "
        "The message is not copied here; open the conversation to follow up."
    )


def undelivered_text(where: str, author: str, reason: str) -> str:
    """The alert for an answer no route could deliver: where, to whom and why, never the text."""
    return (
        f"Delivery alert: an answer to user {author} in {where} could not be posted ({reason}). "
        "The user has not seen it; check the bot's permissions there."
    )

