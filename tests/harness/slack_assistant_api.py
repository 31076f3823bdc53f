"""The assistant.threads.* methods of the fake Slack (tests/harness/slack_api.py), as Slack documents them.

docs.slack.dev/reference/methods/assistant.threads.setStatus, .setTitle, .setSuggestedPrompts:

* setStatus: `channel_id`, `thread_ts`, `status` required ("" clears it: slackapi/bolt-js#2417);
  `loading_messages` an array of at most 10; `icon_emoji`, `icon_url`, `username` optional. Scope
  `chat:write` or `assistant:write` (changelog 2026-03-05). Rate limit "special", figure not published:
  none is set here. Slack removes the status when the app posts in the thread (slackapi/bolt-js#2340),
  or after two minutes without a message (not modelled).
* setTitle: `channel_id`, `thread_ts`, `title` required. Scope `assistant:write`; Tier 4.
* setSuggestedPrompts: `channel_id` and `prompts` required, "up to four" prompts each with a
  `title` and a `message`; `thread_ts` and `title` optional. Scope `assistant:write`; Tier 4.

Errors: `channel_not_found` (a channel the app has no thread in), `invalid_thread_ts` (no such thread),
`missing_scope` with `needed` and `provided`, and `invalid_arguments` for a missing or malformed
argument. Which code Slack gives a fifth prompt or an empty title is not documented: `invalid_arguments`
is its generic code for a bad argument, so that is what the fake answers. Slack publishes no length
limits for statuses, titles or prompts, so none are enforced.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

MAX_PROMPTS = 4
MAX_LOADING_MESSAGES = 10
# the bot scopes of deploy/slack-manifest.yaml: what a FakeSlack token has unless a test takes some away
BOT_SCOPES = frozenset({
    "app_mentions:read", "assistant:write", "channels:history", "groups:history", "im:history", "im:read",
    "im:write", "chat:write", "commands", "users:read",
})  # fmt: skip
NEEDS: dict[str, tuple[str, ...]] = {  # any one of these scopes will do
    "assistant.threads.setStatus": ("chat:write", "assistant:write"),
    "assistant.threads.setTitle": ("assistant:write",),
    "assistant.threads.setSuggestedPrompts": ("assistant:write",),
}


def _decoded(value: Any) -> Any:
    """A form-encoded array argument arrives as a JSON string (a JSON body carries it as is)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class AssistantError(Exception):
    """A refusal: `code`, and the extra fields Slack sends with it (missing_scope: needed, provided)."""

    def __init__(self, code: str, **extra: str) -> None:
        super().__init__(code)
        self.code, self.extra = code, extra


@dataclass
class AssistantThread:
    """What the user sees of one assistant thread."""

    user: str
    context: Json
    status: str = ""
    statuses: list[str] = field(default_factory=list)  # every status set, "" for a clear, in order
    title: str = ""
    prompts: list[Json] = field(default_factory=list)
    prompts_title: str = ""


class AssistantThreads:
    """Assistant threads by (channel, thread_ts), and the three methods that act on them."""

    def __init__(self, scopes: Callable[[], set[str]], channel_known: Callable[[str], bool], thread_known: Callable[[str, str], bool]) -> None:
        """`scopes`: the bot token's scopes now; `channel_known` / `thread_known`: what the fake has seen posted."""
        self.threads: dict[tuple[str, str], AssistantThread] = {}
        self._scopes, self._channel_known, self._thread_known = scopes, channel_known, thread_known

    def open(self, channel: str, thread_ts: str, user: str, context: Json) -> AssistantThread:
        thread = AssistantThread(user=user, context=copy.deepcopy(context))
        self.threads[(channel, thread_ts)] = thread
        return thread

    def posted(self, channel: str, thread_ts: str | None) -> None:
        """The app posted in a thread: Slack takes the status away."""
        thread = self.threads.get((channel, thread_ts or ""))
        if thread is not None:
            thread.status = ""

    def methods(self) -> dict[str, Callable[[Json, str], Json]]:
        return {
            "assistant.threads.setStatus": self._set_status,
            "assistant.threads.setTitle": self._set_title,
            "assistant.threads.setSuggestedPrompts": self._set_prompts,
        }

    # -- checks -------------------------------------------------------------

    def _allowed(self, method: str) -> None:
        scopes = self._scopes()
        if not any(scope in scopes for scope in NEEDS[method]):
            raise AssistantError("missing_scope", needed=",".join(NEEDS[method]), provided=",".join(sorted(scopes)))

    @staticmethod
    def _string(args: Json, name: str, *, empty: bool = False) -> str:
        value = args.get(name)
        if not isinstance(value, str) or (not empty and not value.strip()):
            raise AssistantError("invalid_arguments")
        return value

    def _thread(self, args: Json, *, required: bool = True) -> AssistantThread | None:
        channel = self._string(args, "channel_id")
        thread_ts = args.get("thread_ts")
        if thread_ts is None and not required:
            if not any(c == channel for c, _ in self.threads) and not self._channel_known(channel):
                raise AssistantError("channel_not_found")
            return None
        if not isinstance(thread_ts, str) or not thread_ts:
            raise AssistantError("invalid_arguments")
        thread = self.threads.get((channel, thread_ts))
        if thread is not None:
            return thread
        if not any(c == channel for c, _ in self.threads) and not self._channel_known(channel):
            raise AssistantError("channel_not_found")
        if not self._thread_known(channel, thread_ts):
            raise AssistantError("invalid_thread_ts")
        return None  # a thread in a channel (setStatus works there with chat:write), nothing to show

    # -- methods ------------------------------------------------------------

    def _set_status(self, args: Json, token: str) -> Json:
        self._allowed("assistant.threads.setStatus")
        status = self._string(args, "status", empty=True)
        loading = _decoded(args.get("loading_messages"))
        if loading is not None and (
            not isinstance(loading, list) or len(loading) > MAX_LOADING_MESSAGES or not all(isinstance(m, str) for m in loading)
        ):
            raise AssistantError("invalid_arguments")
        thread = self._thread(args)
        if thread is not None:
            thread.status = status
            thread.statuses.append(status)
        return {"ok": True}

    def _set_title(self, args: Json, token: str) -> Json:
        self._allowed("assistant.threads.setTitle")
        title = self._string(args, "title")
        thread = self._thread(args)
        if thread is None:  # titles belong to assistant threads only
            raise AssistantError("invalid_thread_ts")
        thread.title = title
        return {"ok": True}

    def _set_prompts(self, args: Json, token: str) -> Json:
        self._allowed("assistant.threads.setSuggestedPrompts")
        prompts = _decoded(args.get("prompts"))
        if not isinstance(prompts, list) or not 1 <= len(prompts) <= MAX_PROMPTS:
            raise AssistantError("invalid_arguments")
        for prompt in prompts:
            if not isinstance(prompt, dict) or set(prompt) != {"title", "message"}:
                raise AssistantError("invalid_arguments")
            self._string(prompt, "title")
            self._string(prompt, "message")
        title = args.get("title")
        if title is not None and not isinstance(title, str):
            raise AssistantError("invalid_arguments")
        thread = self._thread(args, required=False)
        if thread is not None:
            thread.prompts, thread.prompts_title = copy.deepcopy(prompts), title or ""
        return {"ok": True}


__all__ = ["BOT_SCOPES", "MAX_PROMPTS", "AssistantError", "AssistantThread", "AssistantThreads"]
