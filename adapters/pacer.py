"""One edit budget per workspace, shared by every answer streaming in it (platform-neutral).

Chat platforms limit message edits per workspace (Slack: `chat.update` is Tier 3, about 50 a
minute per workspace), not per answer. A pacer per answer or per channel lets twenty answers
streaming at once in one workspace edit twenty times as fast as the workspace may. This pacer
counts every edit of a workspace in one sliding window (`limit` edits in any `window` seconds)
and shares it out:

* each answer streaming in the workspace holds back one slot for its final edit, so the final
  of every answer always goes out (`await paced.final()` waits for a slot, and `min_interval`
  after the answer's last edit, never skips);
* an intermediate edit (`paced.ready()`) is taken only from what is left, and only as often as
  the answer's share allows: `min_interval` while the window is less than half used, and
  `window * answers / limit` seconds apart once it is busier, so each answer edits less often
  the more answers share the workspace;
* `hold(key, seconds)` stops every edit for the workspace for a while (the platform's Retry-After);
* `paced.sent()` after an edit is answered counts its slot from then: the platform counts an edit
  when it arrives, and when many go out at once the last arrive a second or more after their slots
  were taken, so a window counted from the takes frees early and the next burst is refused.

Keyed by any string (a Slack team id, a Discord guild id). One pacer sees one process; several
processes against one workspace each need a smaller `limit`.

    pacer = Pacer(limit=45, window=60.0, min_interval=1.0)
    with pacer.answer(team_id) as paced:
        async for text in stream:
            if paced.ready():
                await edit(text)
        await paced.final()
        await edit(final_text)
        paced.sent()
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Budget:
    """One workspace's edits in the window, the answers sharing it, and any hold."""

    sent: deque[float] = field(default_factory=deque)
    answers: int = 0  # answers open in this workspace whose final has not gone out
    finals_waiting: int = 0
    held_until: float = 0.0
    finals: asyncio.Lock = field(default_factory=asyncio.Lock)  # finals go out in the order they asked


class Pacer:
    """Paces the edits of every answer in a workspace inside one sliding-window limit."""

    def __init__(
        self,
        limit: float = math.inf,
        window: float = 60.0,
        min_interval: float = 0.0,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """`limit` edits in any `window` seconds per workspace (inf: no limit); `min_interval`:
        the least time between one answer's intermediate edits."""
        if limit < 1 or window <= 0 or min_interval < 0:
            raise ValueError("limit must be at least 1, window positive, min_interval not negative")
        self.limit, self.window, self.min_interval = limit, window, min_interval
        self._clock, self._sleep = clock, sleep
        self._budgets: dict[str, _Budget] = {}

    def answer(self, key: str) -> PacedAnswer:
        """Open one answer in workspace `key` (use as a context manager; closing frees its slot)."""
        budget = self._budgets.setdefault(key, _Budget())
        budget.answers += 1
        return PacedAnswer(self, budget)

    def hold(self, key: str, seconds: float) -> None:
        """No edit in workspace `key` for `seconds` (the platform answered 429 with this Retry-After)."""
        budget = self._budgets.setdefault(key, _Budget())
        budget.held_until = max(budget.held_until, self._clock() + max(0.0, seconds))

    def used(self, key: str) -> int:
        """Edits counted in the current window for `key`."""
        budget = self._budgets.get(key)
        return self._prune(budget) if budget is not None else 0

    def _prune(self, budget: _Budget) -> int:
        horizon = self._clock() - self.window
        while budget.sent and budget.sent[0] <= horizon:
            budget.sent.popleft()
        return len(budget.sent)

    def _share(self, budget: _Budget, used: int) -> float:
        """Seconds between one answer's intermediate edits: wider as more answers share the window."""
        if math.isinf(self.limit) or used + budget.answers < self.limit / 2:
            return self.min_interval
        return max(self.min_interval, self.window * budget.answers / self.limit)

    def _take(self, budget: _Budget) -> float:
        now = self._clock()
        budget.sent.append(now)
        return now

    def _wait_for_slot(self, budget: _Budget) -> float:
        """Seconds until a final may go out (0: now)."""
        now = self._clock()
        if now < budget.held_until:
            return budget.held_until - now
        if self._prune(budget) < self.limit:
            return 0.0
        return max(budget.sent[0] + self.window - now, 1e-3)


class PacedAnswer:
    """One answer's share of its workspace's edit budget."""

    def __init__(self, pacer: Pacer, budget: _Budget) -> None:
        self._pacer, self._budget = pacer, budget
        self._last: float | None = None
        self._open = True  # still holding a slot for its final

    def ready(self) -> bool:
        """Take a slot for an intermediate edit if the budget allows one now; False: skip this edit."""
        pacer, budget = self._pacer, self._budget
        if not self._open or budget.finals_waiting or pacer._clock() < budget.held_until:
            return False
        used = pacer._prune(budget)
        if used + budget.answers + 1 > pacer.limit:  # every open answer keeps a slot for its final
            return False
        if self._last is not None and pacer._clock() - self._last < pacer._share(budget, used):
            return False
        self._last = pacer._take(budget)
        return True

    async def final(self) -> None:
        """Wait for the slot of this answer's final edit (finals go before any intermediate edit)."""
        pacer, budget = self._pacer, self._budget
        budget.finals_waiting += 1
        try:
            async with budget.finals:
                while (delay := max(pacer._wait_for_slot(budget), self._spacing())) > 0:
                    await pacer._sleep(delay)
                self._last = pacer._take(budget)
        finally:
            budget.finals_waiting -= 1
        self._release()

    def sent(self) -> None:
        """The edit this answer last took a slot for was answered: its slot counts from now."""
        if self._last is None:
            return
        sent = self._budget.sent
        with contextlib.suppress(ValueError):  # already out of the window: it counts again from now
            sent.remove(self._last)
        self._last = self._pacer._clock()
        bisect.insort(sent, self._last)

    def _spacing(self) -> float:
        """Seconds until `min_interval` has passed since this answer's last edit."""
        if self._last is None:
            return 0.0
        return self._last + self._pacer.min_interval - self._pacer._clock()

    def close(self) -> None:
        """Give the answer's slot back (an answer that ends without a final edit)."""
        self._release()

    def _release(self) -> None:
        if self._open:
            self._open = False
            self._budget.answers -= 1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


__all__ = ["PacedAnswer", "Pacer"]
