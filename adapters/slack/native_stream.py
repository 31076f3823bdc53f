"""Slack's native text streaming for one answer (chat.startStream, chat.appendStream, chat.stopStream),
with today's chat.update path (adapters/slack/writer.py) as the fallback.

What Slack documents (docs.slack.dev/reference/methods/chat.startStream, .appendStream, .stopStream;
the method list in slack-ruby/slack-api-ref): startStream takes `channel`, `thread_ts` (slack_sdk requires
it: "streamed messages should always be replies to a user request"), `recipient_user_id` and
`recipient_team_id` (required outside a DM), and `markdown_text`; appendStream takes `channel`, `ts` and
`markdown_text`; stopStream takes `channel`, `ts`, `markdown_text` and `blocks` rendered under the
message. `markdown_text` is at most 12,000 characters a call. Rate limits: appendStream Tier 4 (100+ a
minute), startStream and stopStream Tier 2 (20+ a minute), each per workspace. Unknown to the docs but
measured by others: chat.update of a message still streaming answers `streaming_state_conflict`, and a
stream Slack was not told to stop ends by itself after about five minutes
(`message_not_in_streaming_state` from then on).

So, per answer:

* native only in a thread (a top-level DM is answered inline, as before, through chat.update) and for a
  human author (the recipient must be a user);
* the stream opens with the first text (no placeholder: nothing to take back), and only if the
  workspace's start budget has room; otherwise this answer goes the chat.update way;
* a workspace that answers `unknown_method`, `not_allowed`, `method_deprecated`, `missing_scope`... is
  remembered (per team id, for `forget_after` seconds) and gets the chat.update path;
* appends are paced per workspace (`Pacer`, 90 a minute shared by every answer, one a second each): what
  is not appended yet waits for the next append or the stop, so a 429 (the workspace held for its
  Retry-After) loses nothing;
* a part reaching 12,000 characters is stopped and the answer goes on in a new stream below it; in a
  part's last 2,000 characters text goes in whole paragraphs, so parts end at paragraph breaks;
* the stop carries the rest of the text and the closing blocks (sources, feedback_buttons);
* when the final is not the streamed text continued (a retraction, a notice, the engine failing), or an
  append or the stop failed in a way that leaves the message's content unknown (a 5xx, the stream
  expired), the streams are stopped and the first is rewritten with chat.update with the whole final
  (the rest deleted): nothing lost, nothing twice, whatever the failed call did;
* a stream left by a process that died (its ts in the journal) is stopped and rewritten the same way.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.pacer import PacedAnswer, Pacer
from adapters.slack.format import Answer
from adapters.slack.writer import AnswerWriter, Remember, error_code, retry_after

log = logging.getLogger(__name__)

STREAM_LIMIT = 12_000  # markdown_text a call, and what one streamed message carries here
# in a part's last characters text is appended a paragraph at a time, so that a full part ends at a paragraph
# break however the model's text arrived (only a paragraph longer than this can still be cut inside)
WHOLE_PARAGRAPHS = 2_000
# the workspace cannot stream (or this app may not): remembered per team
UNSUPPORTED = frozenset(
    {
        "unknown_method", "not_allowed", "method_deprecated", "deprecated_endpoint", "missing_scope",
        "not_allowed_token_type", "enterprise_is_restricted", "feature_not_enabled",
    }
)  # fmt: skip
STARTS, STOPS, APPENDS = 18, 18, 90  # a minute per workspace, under Tier 2, Tier 2 and Tier 4
WINDOW = 60.0
FORGET_AFTER = 3600.0  # seconds a workspace's refusal is remembered (a reinstall may add the scope)


def safe_markdown(text: str) -> str:
    """The model's Markdown with no Slack control sequence (`<@U1>`, `<!here>`, `<url|x>`): a zero-width
    space after each `<`. Applied piece by piece it gives the same as on the whole text."""
    return text.replace("<", "<\u200b")


class _Window:
    """At most `limit` takes in any `window` seconds per key, and holds (a 429's Retry-After)."""

    def __init__(self, limit: int, window: float, clock: Any = time.monotonic) -> None:
        self.limit, self.window, self._clock = limit, window, clock
        self._taken: dict[str, deque[float]] = {}
        self._held: dict[str, float] = {}

    def take(self, key: str) -> bool:
        now = self._clock()
        if now < self._held.get(key, 0.0):
            return False
        taken = self._taken.setdefault(key, deque())
        while taken and taken[0] <= now - self.window:
            taken.popleft()
        if len(taken) >= self.limit:
            return False
        taken.append(now)
        return True

    def hold(self, key: str, seconds: float) -> None:
        self._held[key] = max(self._held.get(key, 0.0), self._clock() + seconds)


class Streams:
    """Native streaming for every answer of one process: which workspaces refused it and the three
    methods' budgets per workspace. `enabled=False` keeps every answer on chat.update."""

    def __init__(
        self,
        enabled: bool = True,
        *,
        starts: int = STARTS,
        stops: int = STOPS,
        appends: int = APPENDS,
        window: float = WINDOW,
        min_interval: float = 1.0,
        forget_after: float = FORGET_AFTER,
    ) -> None:
        self.enabled = enabled
        self.starts = _Window(starts, window)
        self.stops = Pacer(stops, window)
        self.appends = Pacer(appends, window, min_interval)
        self.forget_after = forget_after
        self._refused: dict[str, tuple[str, float]] = {}  # team -> (error code, when)

    def refused(self, team: str) -> str | None:
        """The error code the workspace refused streaming with (None: it may stream)."""
        entry = self._refused.get(team)
        if entry is None:
            return None
        if time.monotonic() - entry[1] > self.forget_after:
            del self._refused[team]
            return None
        return entry[0]

    def refuse(self, team: str, code: str) -> None:
        if team not in self._refused:
            log.warning("workspace %s cannot stream natively (%s): answering it with chat.update", team, code)
        self._refused[team] = (code, time.monotonic())

    def writer(
        self, fallback: AnswerWriter, thread_ts: str | None, user: str, team: str, remember: Remember | None = None
    ) -> NativeWriter:
        """The writer of one answer: native where it can be, else (inside it) `fallback`."""
        native = self.enabled and bool(thread_ts) and user.startswith(("U", "W")) and self.refused(team) is None
        return NativeWriter(self, fallback, user, team, native, remember)


class NativeWriter:
    """One answer in a Slack thread: streamed natively, or through `fallback` (chat.update)."""

    def __init__(
        self, streams: Streams, fallback: AnswerWriter, user: str, team: str, native: bool, remember: Remember | None
    ) -> None:
        self.streams, self.fallback, self.user, self.team = streams, fallback, user, team
        self.client: AsyncWebClient = fallback.client
        self.preview_client: AsyncWebClient = fallback.preview_client
        self.channel, self.thread_ts, self.workspace = fallback.channel, fallback.thread_ts, fallback.workspace
        self.native = native  # still on the native path
        self.remember = remember
        self.parts: list[str] = []  # ts of each streamed message, in order
        self.open: str | None = None  # the part still streaming
        self.shown = ""  # safe Markdown appended so far, all parts
        self.in_part = 0  # characters in the open part
        self.broken = False  # a call left the stream's content unknown: rewrite at the end
        self.native_feedback = False  # a stream worked here: the fallback's final may use feedback_buttons
        self.stream_failures: list[str] = []
        self.leftovers: list[str] = []  # streamed parts a taken-over answer deletes at the end
        self._appends: PacedAnswer | None = None
        self._stops: PacedAnswer | None = None

    @property
    def ts(self) -> str | None:
        return self.parts[0] if self.parts else self.fallback.ts

    @ts.setter
    def ts(self, value: str | None) -> None:  # a taken-over placeholder (the chat.update path)
        self.native = False
        self.fallback.ts = value

    @property
    def failures(self) -> list[str]:
        return self.stream_failures + self.fallback.failures

    # -- the answer's life ------------------------------------------------------------------------------

    async def start(self) -> str | None:
        """The chat.update path posts its placeholder; a native stream opens with the first text."""
        return None if self.native else await self.fallback.start()

    async def adopt(self, work: dict[str, Any]) -> None:
        """Take over what a dead process left on screen: its placeholder, or its streams (stopped, and
        the first rewritten at the end through chat.update, the others deleted)."""
        self.native = False
        if work.get("placeholder"):
            self.fallback.ts = work["placeholder"]
            return
        streams = [str(ts) for ts in work.get("stream") or []]
        for ts in streams:
            await self._stop_quietly(ts)
        self.fallback.ts, self.leftovers, self.native_feedback = streams[0], streams[1:], True

    async def preview(self, text: str) -> None:
        """The answer so far (Markdown): appended to the stream, or shown with chat.update."""
        if not self.native:
            await self.fallback.preview(text)
            return
        if self.broken:
            return
        pending = safe_markdown(text)[len(self.shown) :]
        if not pending:
            return
        if self.open is None:
            if not self.parts:
                await self._first(text, pending)
            return
        await self._append(pending)

    async def finish(self, answer: Answer) -> bool:
        """The final on screen; True if all of it reached the user."""
        try:
            if not self.native:
                return await self._finish_fallback(answer)
            final = safe_markdown(answer.text)
            if self.parts and not self.broken and not answer.plain and final.startswith(self.shown):
                if await self._conclude(final[len(self.shown) :], answer):
                    return True
            elif not self.parts and not answer.plain:  # nothing streamed yet: the whole answer in one stream
                opened = self.streams.starts.take(self.team) and await self._open(final[: _cut(final, STREAM_LIMIT)])
                if opened and await self._conclude(final[len(self.shown) :], answer):
                    return True
            if not self.parts:  # never streamed: the chat.update path's final, as a new message
                self.native = False
                return await self._finish_fallback(answer)
            return await self._rewrite(answer)
        finally:
            self._close()

    # -- native calls -----------------------------------------------------------------------------------

    async def _first(self, text: str, pending: str) -> None:
        """Open the stream with the first text, or give the answer to the chat.update path."""
        if not self.streams.starts.take(self.team):
            log.info("the stream budget of %s is used up: this answer goes through chat.update", self.team)
        elif await self._open(pending[: _cut(pending, STREAM_LIMIT)]):
            if len(pending) > len(self.shown):
                await self._append(pending[len(self.shown) :])
            return
        if not self.parts:
            self.native = False
            if await self.fallback.start() and self.remember is not None:
                await self.remember({"placeholder": self.fallback.ts})
            await self.fallback.preview(text)

    async def _open(self, text: str) -> bool:
        """chat.startStream with `text`; False (the reason remembered) if Slack refused it."""
        where = {"channel": self.channel, "thread_ts": self.thread_ts}
        who = {"recipient_user_id": self.user, "recipient_team_id": self.team}
        client = self.client if self.parts else self.preview_client  # a later part must open: 429s retried
        try:
            started = await client.chat_startStream(**where, **who, markdown_text=text)
        except SlackApiError as exc:
            code = self._failed("chat.startStream", exc)
            if code in UNSUPPORTED:
                self.streams.refuse(self.team, code)
            elif code == "ratelimited":
                self.streams.starts.hold(self.team, retry_after(exc))
            return False
        if not isinstance(started.get("ts"), str):  # not an answer Slack gives: no stream to write to
            self.stream_failures.append("chat.startStream: no ts")
            return False
        self.parts.append(started["ts"])
        self.open, self.in_part, self.native_feedback = started["ts"], len(text), True
        self.shown += text
        if self._appends is None:
            self._appends = self.streams.appends.answer(self.team)
        if self._stops is not None:
            self._stops.close()
        self._stops = self.streams.stops.answer(self.team)
        if self.remember is not None:
            await self.remember({"stream": list(self.parts)})
        return True

    async def _append(self, pending: str) -> None:
        """chat.appendStream of what is pending, when the workspace's budget has room (else it waits)."""
        assert self._appends is not None and self.open is not None
        if self.in_part + len(pending) > STREAM_LIMIT:
            await self._roll(pending)
            return
        if self.in_part + len(pending) > STREAM_LIMIT - WHOLE_PARAGRAPHS:  # near the end: whole paragraphs only
            pending = pending[: pending.rfind("\n\n") + 2] if "\n\n" in pending else ""
            if not pending:
                return  # it waits for its paragraph's end, or for the part to fill
        if not self._appends.ready():
            return
        try:
            await self.preview_client.chat_appendStream(channel=self.channel, ts=self.open, markdown_text=pending)
        except SlackApiError as exc:
            code = self._failed("chat.appendStream", exc)
            if code == "ratelimited":  # not appended: it goes with the next append or the stop
                self.streams.appends.hold(self.team, retry_after(exc))
            else:  # 5xx (appended or not?), expired, ...: the final rewrites the message
                self.broken = True
            return
        self._appends.sent()
        self.shown += pending
        self.in_part += len(pending)

    async def _roll(self, pending: str) -> None:
        """The open part is full: stop it with what fits, go on in new streams under it, and append the rest."""
        rest = await self._overflow(pending)
        if rest is None:
            self.broken = True
        elif rest:
            await self._append(rest)

    async def _overflow(self, text: str) -> str | None:
        """Stop each full part with what fits of `text` and open the next with what follows, until the rest
        fits the open part: that rest (not yet sent), or None if a call failed. Parts end at paragraph breaks
        where there is one; any length of `text` works (a slow reader gets the model's text in big pieces)."""
        while self.in_part + len(text) > STREAM_LIMIT:
            cut = _cut(text, STREAM_LIMIT - self.in_part, started=self.in_part > 0)
            if not await self._stop(text[:cut], None):
                return None
            self.shown += text[:cut]
            text = text[cut:]
            head = text[: _cut(text, STREAM_LIMIT)]
            if not await self._open(head):
                return None
            text = text[len(head) :]
        return text

    async def _conclude(self, rest: str, answer: Answer) -> bool:
        """The rest of the text and the closing blocks in the stop (through new parts if it is long)."""
        if self.open is None:
            return False
        last = await self._overflow(rest)
        if last is None or not await self._stop(last, answer.closing()):
            return False
        self.shown += last
        return True

    async def _stop(self, text: str, blocks: list[dict[str, Any]] | None) -> bool:
        """chat.stopStream of the open part (429s retried by the client); False if its outcome is unknown."""
        assert self.open is not None and self._stops is not None
        await self._stops.final()
        extra: dict[str, Any] = {"markdown_text": text} if text else {}
        if blocks:
            extra["blocks"] = blocks
        ts, self.open = self.open, None
        try:
            await self.client.chat_stopStream(channel=self.channel, ts=ts, **extra)
        except SlackApiError as exc:  # it may still stream: the rewrite stops it first
            self._failed("chat.stopStream", exc)
            self.open = ts
            return False
        finally:
            self._stops.sent()
        return True

    async def _stop_quietly(self, ts: str) -> None:
        """Stop a stream whose content does not matter any more (it is rewritten next)."""
        try:
            await self.client.chat_stopStream(channel=self.channel, ts=ts)
        except SlackApiError as exc:  # message_not_in_streaming_state: stopped already, or expired
            self._failed("chat.stopStream", exc)

    # -- the chat.update path -------------------------------------------------------------------------

    async def _rewrite(self, answer: Answer) -> bool:
        """The streams stopped, the first rewritten with the whole final (chat.update, else a new
        message), the others deleted: the one way out whatever the failed calls did."""
        if self.open is not None:
            ts, self.open = self.open, None
            await self._stop_quietly(ts)
        self.fallback.ts, self.leftovers = self.parts[0], self.parts[1:]
        return await self._finish_fallback(answer)

    async def _finish_fallback(self, answer: Answer) -> bool:
        delivered = await self.fallback.finish(answer.messages(native=self.native_feedback))
        for ts in self.leftovers:
            await self.fallback._remove(ts)
        self.leftovers = []
        return delivered

    def _close(self) -> None:
        for paced in (self._appends, self._stops):
            if paced is not None:
                paced.close()

    def _failed(self, method: str, exc: SlackApiError) -> str:
        code = error_code(exc)
        self.stream_failures.append(f"{method}: {code}")
        log.warning("%s failed in %s: %s", method, self.channel, code)
        return code


def _cut(text: str, room: int, started: bool = False) -> int:
    """Where to end a part: the last paragraph break, else line break, else space in the second half of
    `room`. A part that holds text already (`started`) ends at the last break that fits, or as it is (0);
    a new part, at `room` when there is no break."""
    room = max(0, min(room, len(text)))
    if room in (0, len(text)):
        return room
    if started:
        for mark in ("\n\n", "\n"):
            at = text.rfind(mark, 0, room)
            if at >= 0:
                return at + len(mark)
        return 0
    for mark in ("\n\n", "\n", " "):
        at = text.rfind(mark, 0, room)
        if at > room // 2:
            return at + len(mark)
    return room


__all__ = ["STREAM_LIMIT", "UNSUPPORTED", "NativeWriter", "Streams", "safe_markdown"]
