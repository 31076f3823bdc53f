"""Putting one answer on screen in Slack whatever a write does: the placeholder, paced previews, the final.

An event is acked before its answer exists, so Slack never retries a delivery whose answer failed to
post: the adapter has to get the answer out itself. So:

* the placeholder failing to post is not the end: the answer is posted as a new message when it is ready;
* a preview edit that fails is dropped (the next one, or the final, supersedes it); a 429 holds the
  workspace's edits for its Retry-After, and a placeholder that is gone (deleted) gets no more edits;
* the final edit failing (429 past the client's retries, 5xx, `message_not_found`, `msg_too_long`...)
  posts the final as a new message in the same place and removes the stale placeholder;
* a post that gets a 5xx is tried once more, a second later;
* a post Slack refuses for its content (`msg_too_long`, `invalid_blocks`) goes again as plain text
  in smaller parts.

`finish` says whether the whole answer reached the user; when it did not, the caller logs, counts and
alerts. Failures are logged with Slack's error code only, never text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.pacer import PacedAnswer, Pacer
from adapters.render import split_message
from adapters.slack.format import preview
from bot.ops import metrics

log = logging.getLogger(__name__)

PLACEHOLDER = "_Thinking…_"
CONTENT_ERRORS = frozenset({"msg_too_long", "invalid_blocks", "invalid_blocks_format"})
GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
PLAIN_LIMIT = 1500  # characters a part when a message's content was refused
SERVER_ERROR_PAUSE = 1.0  # seconds before a post that got a 5xx is tried again

Message = tuple[str, list[dict[str, Any]] | None]  # (text, blocks)
Remember = Callable[[dict[str, Any]], Awaitable[None]]  # keeps what is on screen in the journal (takeover)


def error_code(exc: SlackApiError) -> str:
    """Slack's error code for a failed call ("server_error" for a 5xx without one)."""
    response = exc.response
    code = response.get("error") if isinstance(response.data, dict) else None
    if code:
        return str(code)
    return "server_error" if response.status_code >= 500 else f"http_{response.status_code}"


def retry_after(exc: SlackApiError) -> float:
    """The Retry-After of a 429, in seconds (1 when absent or unreadable)."""
    headers = {str(k).lower(): v for k, v in (exc.response.headers or {}).items()}
    value = headers.get("retry-after", "1")
    try:
        return float(value[0] if isinstance(value, list | tuple) else value)
    except (TypeError, ValueError):
        return 1.0


class ChannelPacer:
    """Spaces out posts per channel: Slack takes about one chat.postMessage a second per channel."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def wait(self, channel: str) -> None:
        lock = self._locks.setdefault(channel, asyncio.Lock())
        async with lock:
            delay = self._next.get(channel, 0.0) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next[channel] = time.monotonic() + self.interval


class AnswerWriter:
    """One answer's writes in one place (channel, thread), with a fallback for each kind of failure."""

    def __init__(
        self,
        client: AsyncWebClient,
        preview_client: AsyncWebClient,
        posts: ChannelPacer,
        edits: Pacer,
        paced: PacedAnswer,
        workspace: str,
        channel: str,
        thread_ts: str | None,
    ) -> None:
        """`preview_client` does not retry 429s (a later edit supersedes a preview); `paced` is this
        answer's share of the workspace's `edits` budget."""
        self.client, self.preview_client = client, preview_client
        self.posts, self.edits, self.paced = posts, edits, paced
        self.workspace, self.channel, self.thread_ts = workspace, channel, thread_ts
        self.ts: str | None = None  # the message being edited (the placeholder), None if there is none
        self.failures: list[str] = []  # "method: error code" of every write that failed

    async def start(self) -> str | None:
        """Post the placeholder; its ts, or None if it could not be posted (the final is posted then)."""
        await self.posts.wait(self.channel)
        try:
            posted = await self.client.chat_postMessage(**self._where(), text=PLACEHOLDER)
        except SlackApiError as exc:
            self._failed("chat.postMessage", exc)
            return None
        self.ts = posted["ts"]
        return self.ts

    async def preview(self, text: str) -> None:
        """Show the answer so far, if the workspace's budget has room for an edit now."""
        if self.ts is None or not self.paced.ready():
            return
        try:
            await self.preview_client.chat_update(channel=self.channel, ts=self.ts, text=preview(text))
            self.paced.sent()
        except SlackApiError as exc:
            code = self._failed("chat.update", exc)
            if code == "ratelimited":
                self.edits.hold(self.workspace, retry_after(exc))
            elif code in GONE:
                self.ts = None

    async def finish(self, messages: list[Message]) -> bool:
        """Show the final (its first part replaces the placeholder); True if every part reached the user."""
        (text, blocks), *rest = messages
        delivered = await self._replace(text, blocks)
        for part_text, part_blocks in rest:
            delivered = await self._post(part_text, part_blocks) and delivered
        return delivered

    async def _replace(self, text: str, blocks: list[dict[str, Any]] | None) -> bool:
        """The final in place of the placeholder, else as a new message (the stale placeholder removed)."""
        stale = None
        if self.ts is None:
            self.paced.close()
        else:
            await self.paced.final()
            try:
                await self.client.chat_update(channel=self.channel, ts=self.ts, text=text, **_blocks(blocks))
                self.paced.sent()
                return True
            except SlackApiError as exc:
                stale = None if self._failed("chat.update", exc) in GONE else self.ts
        if not await self._post(text, blocks):
            return False
        if self.failures:  # the placeholder could not be posted, or edited: the answer went out anew
            metrics.write_failed("slack", "new_message")
        if stale is not None:
            await self._remove(stale)
        return True

    async def _post(self, text: str, blocks: list[dict[str, Any]] | None) -> bool:
        """A new message; content Slack refuses goes again as plain text. A 5xx is tried once more, a
        second later: Slack calls them transient, and a final failing here has no other way out (a
        500 whose post went through anyway shows twice; rarer, and better than none)."""
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(SERVER_ERROR_PAUSE)
            await self.posts.wait(self.channel)
            try:
                await self.client.chat_postMessage(**self._where(), text=text, **_blocks(blocks))
                return True
            except SlackApiError as exc:
                code = self._failed("chat.postMessage", exc)
                if exc.response.status_code < 500:
                    break
        return code in CONTENT_ERRORS and await self._post_plain(text)

    async def _post_plain(self, text: str) -> bool:
        """The text alone, in parts small enough for any message."""
        for part in split_message(text, PLAIN_LIMIT):
            await self.posts.wait(self.channel)
            try:
                await self.client.chat_postMessage(**self._where(), text=part)
            except SlackApiError as exc:
                self._failed("chat.postMessage", exc)
                return False
        return True

    async def _remove(self, ts: str) -> None:
        """Delete the placeholder the answer was re-posted under (it shows "Thinking…" or half an answer)."""
        try:
            await self.client.chat_delete(channel=self.channel, ts=ts)
        except SlackApiError as exc:
            self._failed("chat.delete", exc)

    def _where(self) -> dict[str, Any]:
        return {"channel": self.channel, "thread_ts": self.thread_ts}

    def _failed(self, method: str, exc: SlackApiError) -> str:
        code = error_code(exc)
        self.failures.append(f"{method}: {code}")
        log.warning("%s failed in %s: %s", method, self.channel, code)
        return code


def _blocks(blocks: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {"blocks": blocks} if blocks else {}


__all__ = ["PLACEHOLDER", "AnswerWriter", "ChannelPacer", "Remember", "error_code", "retry_after"]
