"""The Slack assistant surface (Agents & AI Apps split view), on bolt's `AsyncAssistant` middleware.

* `assistant_thread_started`: a short greeting and up to four suggested prompts
  (`ADVISOR_SLACK_ASSISTANT_PROMPTS`), once per thread whatever the redeliveries.
* `assistant_thread_context_changed` (and the context of `assistant_thread_started`): the channel the
  user is looking at, kept per assistant thread (`ThreadContexts`). It names where an admin alert came
  from; it is not shown to the user and not given to the model (the bot may have no access to that
  channel, and a channel id means nothing in an answer).
* a user's message in the thread (`message.im`): the DM answer path of `SlackAdapter` (same engine,
  memory, writer, de-duplication and journal; the thread is the conversation), with the status set
  while retrieving and answering, cleared once the answer is posted, and the thread titled from its
  first question. A DM thread that is not an assistant thread is answered as any DM.

Status, title and prompts are cosmetic: each call goes once (no 429 retries, so the answer never
waits on them) and a failure is logged with Slack's error code only, never text, and never stops
the answer.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Any

import aiohttp
from slack_bolt.context.assistant.thread_context import AssistantThreadContext
from slack_bolt.context.assistant.thread_context_store.async_store import AsyncAssistantThreadContextStore
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.writer import error_code

log = logging.getLogger(__name__)

STATUS = "is thinking…"
LOADING_MESSAGES = ["Searching the knowledge base…", "Reading the sources…", "Writing the answer…"]  # at most 10
PROMPTS_TITLE = "Try asking:"
GREETING = "Hi! Ask me about anything the knowledge base covers; I'll answer with my sources."
TITLE_LIMIT = 60  # characters of the first question a thread's title keeps (ours: Slack publishes none)
MAX_THREADS = 10_000  # assistant threads whose context one process keeps (least recently used dropped)

# What never goes into a title: tokens and keys (Slack, OpenAI, bearer), e-mail addresses, long numbers
# (card, account, phone), links, mentions and channel references.
_SECRETS = re.compile(
    r"\b(?:xox[abposr]-|xapp-|sk-|ghp_|AKIA)[\w-]+|\bBearer\s+\S+|[\w.+-]+@[\w-]+\.[\w.-]+"
    r"|\b(?:\d[ -]?){7,}\d\b|<[^>]*>|https?://\S+",
    re.IGNORECASE,
)


def thread_title(question: str, limit: int = TITLE_LIMIT) -> str:
    """A thread title from its first question: secrets, links and mentions dropped, one line, at most
    `limit` characters cut at a word ("" when nothing is left)."""
    text = " ".join(_SECRETS.sub(" ", question).split()).strip(" .,;:")
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] if " " in text[: limit - 1] else text[: limit - 1]
    return cut.rstrip(" .,;:") + "…"


class ThreadContexts(AsyncAssistantThreadContextStore):
    """Each assistant thread's context (the channel the user is viewing), in this process.

    bolt's default store keeps it in the metadata of the bot's first reply (a conversations.replies and
    a chat.update each time); this one costs nothing. Per process: with several web processes a thread's
    context may be unknown to the one answering, which then answers without it."""

    def __init__(self, max_threads: int = MAX_THREADS) -> None:
        self._contexts: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self.max_threads = max_threads

    async def save(self, *, channel_id: str, thread_ts: str, context: dict[str, str]) -> None:
        key = (channel_id, thread_ts)
        self._contexts[key] = dict(context or {})
        self._contexts.move_to_end(key)
        while len(self._contexts) > self.max_threads:
            self._contexts.popitem(last=False)

    async def find(self, *, channel_id: str, thread_ts: str) -> AssistantThreadContext | None:
        context = self._contexts.get((channel_id, thread_ts))
        return AssistantThreadContext(context) if context else None

    def known(self, channel_id: str, thread_ts: str | None) -> bool:
        return thread_ts is not None and (channel_id, thread_ts) in self._contexts

    def viewing(self, channel_id: str, thread_ts: str | None) -> str | None:
        """The channel the user was last seen viewing from this assistant thread, if known."""
        context = self._contexts.get((channel_id, thread_ts or ""))
        return (context or {}).get("channel_id") or None


class AssistantTurn:
    """One answer in an assistant thread: the title (first question), the status, then clearing it."""

    def __init__(self, client: AsyncWebClient, channel: str, thread_ts: str, viewing: str | None) -> None:
        self.client, self.channel, self.thread_ts, self.viewing = client, channel, thread_ts, viewing
        self.failures: list[str] = []

    async def begin(self, question: str, first: bool) -> None:
        """Title the thread (its first question only) and show the status while retrieving and answering."""
        title = thread_title(question) if first else ""
        if title:
            await self._call("assistant.threads.setTitle", title=title)
        await self._status(STATUS, LOADING_MESSAGES)

    async def end(self) -> None:
        """Clear the status (Slack also clears it when the answer is posted; this covers every path)."""
        await self._status("")

    async def _status(self, status: str, loading: list[str] | None = None) -> None:
        extra = {"loading_messages": loading} if loading else {}
        await self._call("assistant.threads.setStatus", status=status, **extra)

    async def _call(self, method: str, **args: Any) -> None:
        calls = {
            "assistant.threads.setTitle": self.client.assistant_threads_setTitle,
            "assistant.threads.setStatus": self.client.assistant_threads_setStatus,
        }
        try:
            await calls[method](channel_id=self.channel, thread_ts=self.thread_ts, **args)
        except SlackApiError as exc:  # cosmetic: the answer goes on
            self.failures.append(f"{method}: {error_code(exc)}")
            log.warning("%s failed in %s: %s", method, self.channel, error_code(exc))
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failures.append(f"{method}: {type(exc).__name__}")
            log.warning("%s failed in %s: %s", method, self.channel, type(exc).__name__)


class AssistantSurface:
    """bolt's Assistant middleware wired to a `SlackAdapter`: greeting, context, and answers."""

    def __init__(self, adapter: Any, prompts: list[dict[str, str]], contexts: ThreadContexts | None = None) -> None:
        """`adapter`: the SlackAdapter whose DM path answers; `prompts`: the suggested prompts (1 to 4)."""
        self.adapter = adapter
        self.prompts = prompts
        self.contexts = contexts or ThreadContexts()
        self.middleware = AsyncAssistant(thread_context_store=self.contexts, logger=log)
        self.middleware.thread_started(self._started)
        self.middleware.thread_context_changed(self._context_changed)
        self.middleware.user_message(self._user_message)

    # -- which threads ------------------------------------------------------

    def is_thread(self, event: dict[str, Any]) -> bool:
        """A message in an assistant thread: it says so (`assistant_thread`), or this process saw the
        thread start. Anything else in a DM thread is an ordinary DM."""
        if event.get("channel_type") != "im" or not event.get("thread_ts"):
            return False
        return isinstance(event.get("assistant_thread"), dict) or self.contexts.known(event["channel"], event["thread_ts"])

    def turn(self, channel: str, thread_ts: str) -> AssistantTurn:
        # the no-retry client: a 429 on a cosmetic call must not hold the answer for its Retry-After
        return AssistantTurn(self.adapter._preview_client, channel, thread_ts, self.contexts.viewing(channel, thread_ts))

    # -- bolt listeners -----------------------------------------------------

    async def _started(self, payload: dict[str, Any], body: dict[str, Any], say: Any, set_suggested_prompts: Any) -> None:
        """Greet once per thread (a redelivery finds the claim taken) and offer the prompts."""
        thread = payload.get("assistant_thread") or {}
        channel, thread_ts = thread.get("channel_id"), thread.get("thread_ts")
        if not isinstance(channel, str) or not isinstance(thread_ts, str):
            self.adapter._ignore("an assistant_thread_started without a channel or thread")
            return
        await self.contexts.save(channel_id=channel, thread_ts=thread_ts, context=thread.get("context") or {})
        if not await self.adapter.dedupe.claim(f"assistant-started:{channel}:{thread_ts}"):
            self.adapter._ignore(f"duplicate delivery of assistant thread {thread_ts} in {channel}")
            return
        try:
            await say(GREETING)
        except SlackApiError as exc:
            log.warning("the assistant greeting failed in %s: %s", channel, error_code(exc))
        try:
            await set_suggested_prompts(prompts=self.prompts, title=PROMPTS_TITLE)
        except SlackApiError as exc:
            log.warning("assistant.threads.setSuggestedPrompts failed in %s: %s", channel, error_code(exc))

    async def _context_changed(self, payload: dict[str, Any]) -> None:
        """Keep the channel the user now views (logged as ids only)."""
        thread = payload.get("assistant_thread") or {}
        channel, thread_ts = thread.get("channel_id"), thread.get("thread_ts")
        if not isinstance(channel, str) or not isinstance(thread_ts, str):
            self.adapter._ignore("an assistant_thread_context_changed without a channel or thread")
            return
        context = thread.get("context") or {}
        await self.contexts.save(channel_id=channel, thread_ts=thread_ts, context=context)
        self.adapter._ignore(f"assistant thread {thread_ts} context kept: viewing {context.get('channel_id') or 'nothing'}")

    async def _user_message(self, event: dict[str, Any], context: Any, body: dict[str, Any]) -> None:
        """bolt routes every DM thread message here: the adapter's DM path answers it (and tells
        assistant threads from ordinary DM threads through `is_thread`)."""
        await self.adapter._on_message(event, context, body)


__all__ = ["AssistantSurface", "AssistantTurn", "ThreadContexts", "thread_title"]
