"""Ids from the clock that strictly increase, for both platforms' payload builders (Slack message
timestamps, Discord snowflakes) and the fakes that mint ids with them: an id minted later (a bot's
reply) always sorts after one minted earlier (the message it answers), even within one clock tick."""

from __future__ import annotations


class Rising:
    def __init__(self) -> None:
        self.last = 0

    def after(self, value: int) -> int:
        """`value` (from the clock), or one more than the last given if that is not above it."""
        self.last = max(value, self.last + 1)
        return self.last
