"""The fake Slack's native text streaming: chat.startStream, chat.appendStream, chat.stopStream, and the
feedback_buttons / context_actions blocks a stream ends with (tests/harness/slack_api.py merges them in).

As documented (docs.slack.dev/reference/methods/chat.startStream, .appendStream, .stopStream; errors as
listed in slack-ruby/slack-api-ref methods/chat/*.json):

* startStream: `channel` (channel_not_found), `thread_ts` (slack_sdk and the method list require it:
  invalid_arguments without it), `recipient_user_id` and `recipient_team_id` outside a DM
  (missing_recipient_user_id / missing_recipient_team_id), `markdown_text` of at most 12,000 characters
  (msg_too_long), `chunks` of markdown_text chunks (invalid_chunks);
* appendStream: `channel`, `ts`, `markdown_text` required (no_text without it), the message must be a
  stream still streaming (message_not_found / message_not_in_streaming_state);
* stopStream: `channel`, `ts`, optional `markdown_text` and `blocks` (validated as a message's, with the
  context_actions / feedback_buttons schema), the same state checks: a stopped stream cannot be stopped
  or appended to again;
* the bot needs `chat:write` (missing_scope); a workspace can be switched to answer `unknown_method`,
  `not_allowed`... for all three (`FakeSlack.refuse_streaming`).

Measured by others, not documented, and modelled here: a stream ends by itself STREAM_LIFETIME seconds
after it started; chat.update of a message still streaming answers streaming_state_conflict and
chat.delete cant_delete_message. The whole streamed text is capped at 12,000 characters, the markdown
block's cumulative limit (an assumption: Slack publishes no figure for a streamed message).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.harness.slack_payloads import new_ts

if TYPE_CHECKING:
    from tests.harness.slack_api import FakeSlack

Json = dict[str, Any]
MARKDOWN_TEXT_LIMIT = 12_000
STREAM_LIFETIME = 300.0  # seconds a stream lives unless stopped (others measured about five minutes)
STREAM_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream")
CONTEXT_ACTIONS_MAX = 5
BUTTON_TEXT_LIMIT, BUTTON_VALUE_LIMIT, LABEL_LIMIT, ID_LIMIT = 75, 2000, 75, 255


@dataclass
class Stream:
    """One streamed message: what it shows, whether it still streams, and every call that built it."""

    channel: str
    ts: str
    started: float
    text: str = ""
    streaming: bool = True
    blocks: list[Json] = field(default_factory=list)
    appends: int = 0


def _error(code: str) -> Exception:
    from tests.harness.slack_api import SlackError

    return SlackError(code)


def _plain_text(obj: Any, limit: int) -> bool:
    return (
        isinstance(obj, dict) and obj.get("type") == "plain_text"
        and isinstance(obj.get("text"), str) and 0 < len(obj["text"]) <= limit
    )  # fmt: skip


def _feedback_button(button: Any) -> bool:
    if not isinstance(button, dict) or not _plain_text(button.get("text"), BUTTON_TEXT_LIMIT):
        return False
    value = button.get("value")
    label = button.get("accessibility_label")
    if not isinstance(value, str) or not 0 < len(value) <= BUTTON_VALUE_LIMIT:
        return False
    return label is None or (isinstance(label, str) and len(label) <= LABEL_LIMIT)


def valid_context_actions(block: Json) -> bool:
    """docs.slack.dev/reference/block-kit/blocks/context-actions-block and .../feedback-buttons-element."""
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= CONTEXT_ACTIONS_MAX:
        return False
    if len(str(block.get("block_id", ""))) > ID_LIMIT:
        return False
    for element in elements:
        if not isinstance(element, dict) or element.get("type") not in ("feedback_buttons", "icon_button"):
            return False
        if len(str(element.get("action_id", ""))) > ID_LIMIT:
            return False
        if element["type"] == "feedback_buttons" and not (
            _feedback_button(element.get("positive_button")) and _feedback_button(element.get("negative_button"))
        ):
            return False
        if element["type"] == "icon_button" and not (_plain_text(element.get("text"), BUTTON_TEXT_LIMIT) and element.get("icon")):
            return False
    return True


class Streaming:
    """The three methods' state in one FakeSlack."""

    def __init__(self, fake: FakeSlack, enabled: bool = True) -> None:
        self.fake, self.enabled = fake, enabled
        self.streams: dict[tuple[str, str], Stream] = {}
        self.refused: dict[str, str] = {}  # team -> the error every streaming method answers it

    def methods(self) -> dict[str, Any]:
        return {"chat.startStream": self._start, "chat.appendStream": self._append, "chat.stopStream": self._stop}

    def expire(self, channel: str, ts: str) -> None:
        """The stream ends as Slack ends one nobody stopped."""
        self.streams[(channel, ts)].streaming = False

    def streaming(self, channel: str, ts: str) -> bool:
        stream = self.streams.get((channel, ts))
        if stream is None:
            return False
        if stream.streaming and time.monotonic() - stream.started > STREAM_LIFETIME * self.fake.time_scale:
            stream.streaming = False
        return stream.streaming

    # ----- methods -----------------------------------------------------------------------------------

    def _allowed(self, token: str) -> None:
        team = self.fake.teams.get(token, self.fake.team_id)
        if not self.enabled:
            raise _error("unknown_method")
        if team in self.refused:
            raise _error(self.refused[team])
        if "chat:write" not in self.fake.scopes:
            raise _error("missing_scope")

    @staticmethod
    def _markdown(args: Json, required: bool) -> str:
        text = args.get("markdown_text")
        if text is None or text == "":
            if required:
                raise _error("no_text")
            return ""
        if not isinstance(text, str):
            raise _error("invalid_arguments")
        if len(text) > MARKDOWN_TEXT_LIMIT:
            raise _error("msg_too_long")
        return text

    @staticmethod
    def _chunks(args: Json) -> str:
        from tests.harness.slack_api import _maybe_json

        chunks = _maybe_json(args.get("chunks"))
        if chunks is None:
            return ""
        if not isinstance(chunks, list):
            raise _error("invalid_chunks")
        text = ""
        for chunk in chunks:
            if not isinstance(chunk, dict) or chunk.get("type") not in ("markdown_text", "task_update", "plan_update", "blocks"):
                raise _error("invalid_chunks")
            if chunk["type"] == "markdown_text":
                if not isinstance(chunk.get("text"), str) or len(chunk["text"]) > MARKDOWN_TEXT_LIMIT:
                    raise _error("invalid_chunks")
                text += chunk["text"]
        return text

    def _grow(self, stream: Stream, text: str) -> None:
        if len(stream.text) + len(text) > MARKDOWN_TEXT_LIMIT:
            raise _error("msg_too_long")
        stream.text += text
        self.fake._channels[stream.channel][stream.ts]["text"] = stream.text

    def _start(self, args: Json, token: str) -> Json:
        self._allowed(token)
        channel = self.fake._required(args, "channel", "channel_not_found")
        thread_ts = args.get("thread_ts")
        if not isinstance(thread_ts, str) or not thread_ts:
            raise _error("invalid_arguments")
        if not channel.startswith("D"):  # "required when streaming to channels" (outside a DM)
            user, team = args.get("recipient_user_id"), args.get("recipient_team_id")
            if not user:
                raise _error("missing_recipient_user_id")
            if not team:
                raise _error("missing_recipient_team_id")
            if not str(user).startswith(("U", "W")):
                raise _error("user_not_found")
            if not str(team).startswith(("T", "E")):
                raise _error("team_not_found")
        text = self._markdown(args, required=False) + self._chunks(args)
        message: Json = {
            "user": self.fake.bot_user_id, "type": "message", "ts": new_ts(), "bot_id": self.fake.bot_id,
            "app_id": self.fake.app_id, "text": "", "team": self.fake.team_id, "thread_ts": thread_ts,
            "bot_profile": self.fake._bot_profile(),
        }  # fmt: skip
        parent = self.fake._channels.get(channel, {}).get(thread_ts)
        if parent is not None and parent.get("user"):
            message["parent_user_id"] = parent["user"]
        stream = Stream(channel, message["ts"], time.monotonic())
        if len(text) > MARKDOWN_TEXT_LIMIT:
            raise _error("msg_too_long")
        self.fake._channels.setdefault(channel, {})[message["ts"]] = message
        self.streams[(channel, message["ts"])] = stream
        self._grow(stream, text)
        return {"ok": True, "channel": channel, "ts": message["ts"]}

    def _open_stream(self, args: Json) -> Stream:
        channel = self.fake._required(args, "channel", "channel_not_found")
        ts = self.fake._required(args, "ts", "message_not_found")
        if ts not in self.fake._channels.get(channel, {}):
            raise _error("message_not_found")
        if not self.streaming(channel, ts):  # never a stream, stopped, or expired
            raise _error("message_not_in_streaming_state")
        return self.streams[(channel, ts)]

    def _append(self, args: Json, token: str) -> Json:
        self._allowed(token)
        stream = self._open_stream(args)
        text = self._markdown(args, required=args.get("chunks") is None) + self._chunks(args)
        self._grow(stream, text)
        stream.appends += 1
        return {"ok": True, "channel": stream.channel, "ts": stream.ts}

    def _stop(self, args: Json, token: str) -> Json:
        from tests.harness.slack_api import validate_blocks

        self._allowed(token)
        stream = self._open_stream(args)
        text = self._markdown(args, required=False) + self._chunks(args)
        blocks = validate_blocks(args["blocks"]) if args.get("blocks") is not None else []
        self._grow(stream, text)
        stream.streaming = False
        stream.blocks = blocks
        message = self.fake._channels[stream.channel][stream.ts]
        if blocks:
            message["blocks"] = blocks
        body = {key: value for key, value in copy.deepcopy(message).items() if key != "ts"}
        return {"ok": True, "channel": stream.channel, "ts": stream.ts, "message": {**body, "ts": stream.ts}}


__all__ = ["MARKDOWN_TEXT_LIMIT", "STREAM_LIFETIME", "STREAM_METHODS", "Stream", "Streaming", "valid_context_actions"]
