"""Pacing Discord writes so many answers at once stay inside Discord's limits instead of queuing for 429s.

Discord allows a bot 50 requests a second over every route (docs/topics/rate-limits#global-rate-limit)
and about 5 message edits per 5 seconds in a channel. discord.py waits out a spent route bucket it
knows of, but it learns of the global limit only from a 429, which then stalls every request. So the
adapter asks `Pacer` before each write:

* `wait(channel)` for a write the answer needs (the first part, the final text, further parts, a
  fallback): it waits until the bot-wide rate is under `per_second`;
* `try_take(channel)` for a write the answer can do without (a streaming edit, the typing indicator):
  it is skipped, not delayed, when the channel had `per_channel` edits in the last `window` seconds or
  the bot-wide rate is over `optional_share` of `per_second`; the text simply shows in a later edit.

Under load each answer edits less often; the final text always goes out. One Pacer per process
(shards of one process share it); separate processes each keep their own.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

PER_SECOND = 30.0  # of Discord's 50 per bot: room for requests delayed on their way and for other processes
OPTIONAL_SHARE = 0.5  # streaming edits and typing may use half of it, so needed writes never wait long
PER_CHANNEL = 4  # of Discord's 5 edits per 5 s: one kept for the final edit
WINDOW = 5.0


class Pacer:
    def __init__(
        self,
        per_second: float = PER_SECOND,
        per_channel: int = PER_CHANNEL,
        window: float = WINDOW,
        optional_share: float = OPTIONAL_SHARE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_second = per_second
        self.per_channel = per_channel
        self.window = window
        self.optional_share = optional_share
        self.clock = clock
        self.skipped = 0  # optional writes left out
        self._recent: deque[float] = deque()  # every write in the last second
        self._edits: dict[str, deque[float]] = {}  # per channel: edits in the last `window` seconds

    def _prune(self, now: float) -> None:
        while self._recent and self._recent[0] <= now - 1.0:
            self._recent.popleft()
        for channel in [c for c, times in self._edits.items() if times and times[-1] <= now - self.window]:
            del self._edits[channel]  # bounded: only channels edited lately are kept

    def _channel_edits(self, channel: str, now: float) -> deque[float]:
        times = self._edits.setdefault(channel, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def _record(self, now: float, edit_in: str | None) -> None:
        self._recent.append(now)
        if edit_in is not None:
            self._channel_edits(edit_in, now).append(now)

    def try_take(self, edit_in: str | None = None) -> bool:
        """A slot for an optional write (an edit in channel `edit_in`, or typing with None), or False to skip it."""
        now = self.clock()
        self._prune(now)
        busy = len(self._recent) >= self.per_second * self.optional_share
        if busy or (edit_in is not None and len(self._channel_edits(edit_in, now)) >= self.per_channel):
            self.skipped += 1
            return False
        self._record(now, edit_in)
        return True

    async def wait(self, edit_in: str | None = None) -> None:
        """Wait for a slot for a needed write; an edit in channel `edit_in` also waits for the channel's
        Discord limit (per_channel + 1), so discord.py never holds it back to send it in a burst later."""
        while True:
            now = self.clock()
            self._prune(now)
            edits = self._channel_edits(edit_in, now) if edit_in is not None else deque()
            if len(self._recent) < self.per_second and len(edits) <= self.per_channel:
                self._record(now, edit_in)
                return
            free_at = [self._recent[0] + 1.0] if len(self._recent) >= self.per_second else []
            if len(edits) > self.per_channel:
                free_at.append(edits[0] + self.window)
            await asyncio.sleep(max(0.01, max(free_at) - now))
