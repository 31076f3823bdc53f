"""Builders for Slack payloads shaped as Slack documents them, plus request signing.

Events API bodies (event_callback wrapper with authorizations, event_context...) follow the
examples on docs.slack.dev/reference/events/* (app_mention, message and its subtypes
bot_message, message_changed, message_deleted, thread_broadcast). Slash commands and
interactivity bodies are form-encoded exactly as Slack POSTs them to a Request URL (for
interactivity, a single `payload=<json>` field). `socket_envelope` wraps any of them the way
Socket Mode delivers them (docs.slack.dev/apis/events-api/using-socket-mode).

    body = slash_command("how do I budget?", response_url=fake.response_url())
    headers = {"Content-Type": FORM_CONTENT_TYPE, **sign(body, "secret")}
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from tests.harness.ids import Rising

Json = dict[str, Any]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
API_APP_ID = "AADVISOR"
VERIFICATION_TOKEN = "fake-verification-token"  # deprecated by Slack but still sent in every body
TEAM_DOMAIN = "fake-team"

_timestamps = Rising()
_counter = itertools.count(1)
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def new_ts() -> str:
    """A fresh, strictly increasing Slack message timestamp ("1700000000.000100" style, from the clock).

    Shared by these builders and the fake Web API, so a bot reply always sorts after the message
    that triggered it.
    """
    micros = _timestamps.after(int(time.time() * 1_000_000))
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def new_event_id() -> str:
    return "Ev" + uuid.uuid4().hex[:10].upper()


def new_trigger_id() -> str:
    return f"{int(time.time())}{next(_counter):04d}.{int(time.time())}.{uuid.uuid4().hex}"


def sign(body: bytes | str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack adds to a request: v0 HMAC-SHA256 of f"v0:{timestamp}:{body}" with the signing secret."""
    raw = body.encode() if isinstance(body, str) else body
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + digest}


# ----- rich text blocks ------------------------------------------------------------------------------


def rich_text_blocks(text: str) -> list[Json]:
    """The `rich_text` block Slack attaches to a user's message: text runs with <@U...> as user elements."""
    elements: list[Json] = []
    position = 0
    for match in _MENTION.finditer(text):
        if match.start() > position:
            elements.append({"type": "text", "text": text[position : match.start()]})
        elements.append({"type": "user", "user_id": match.group(1)})
        position = match.end()
    if position < len(text):
        elements.append({"type": "text", "text": text[position:]})
    block_id = base64.b32encode(hashlib.sha1(text.encode()).digest()).decode()[:4]
    return [
        {"type": "rich_text", "block_id": block_id, "elements": [{"type": "rich_text_section", "elements": elements}]}
    ]


# ----- Events API ------------------------------------------------------------------------------------


def _event_context(team: str, channel: str | None) -> str:
    raw = json.dumps({"tid": team, "aid": API_APP_ID, "cid": channel}, separators=(",", ":")).encode()
    return "4-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def event_callback(
    event: Json,
    *,
    event_id: str | None = None,
    team: str = "T1",
    bot_user_id: str = "UBOT",
    event_time: int | None = None,
) -> Json:
    """The outer Events API body that wraps `event` (what Slack POSTs, and the Socket Mode events_api payload)."""
    ts = event.get("event_ts") or event.get("ts")
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team,
        "context_team_id": team,
        "context_enterprise_id": None,
        "api_app_id": API_APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": event_time if event_time is not None else int(float(ts) if ts else time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": _event_context(team, event.get("channel")),
    }


@dataclass(frozen=True)
class _Where:
    """Where and when a message event happens, and its envelope."""

    channel: str
    ts: str
    thread_ts: str | None
    team: str
    channel_type: str | None
    envelope: Json  # event_id, bot_user_id: see event_callback

    def wrap(self, event: Json) -> Json:
        return event_callback(event, team=self.team, **self.envelope)


def _where(
    channel: str,
    *,
    ts: str | None = None,
    thread_ts: str | None = None,
    team: str = "T1",
    channel_type: str | None = "channel",
    event_id: str | None = None,
    bot_user_id: str = "UBOT",
) -> _Where:
    """What every message builder below takes as `**more`: `ts` (default: a fresh one), `thread_ts` (in
    that thread), `team`, `channel_type` ("channel"; "group" for private) and the envelope's `event_id`
    and `bot_user_id`."""
    envelope = {"event_id": event_id, "bot_user_id": bot_user_id}
    return _Where(channel, ts or new_ts(), thread_ts, team, channel_type, envelope)


def _said(text: str, user: str, ts: str, team: str, kind: str = "message") -> Json:
    """What every user's message carries: its text (also as rich_text blocks), author, ts and team."""
    return {"type": kind, "text": text, "user": user, "ts": ts, "blocks": rich_text_blocks(text), "team": team}


def _user_event(kind: str, text: str, user: str, where: _Where, parent_user_id: str | None = None) -> Json:
    """A user's message event (`kind` "message" or "app_mention") in its event_callback body."""
    event: Json = {"client_msg_id": str(uuid.uuid4()), **_said(text, user, where.ts, where.team, kind)}
    if where.thread_ts is not None:
        event["thread_ts"] = where.thread_ts
        if parent_user_id is not None:
            event["parent_user_id"] = parent_user_id
    event["channel"] = where.channel
    event["event_ts"] = where.ts
    if where.channel_type is not None:
        event["channel_type"] = where.channel_type
    return where.wrap(event)


def app_mention(
    text: str, user: str = "U1", channel: str = "C1", *, bot_user_id: str = "UBOT", parent_user_id: str | None = None,
    **more: Any,
) -> Json:
    """An app_mention event_callback; `text` gets a leading "<@bot_user_id> " unless it already mentions the bot.

    In a thread (`thread_ts`), `parent_user_id` names who started it.
    """
    if f"<@{bot_user_id}>" not in text:
        text = f"<@{bot_user_id}> {text}"
    # app_mention events carry no channel_type
    where = _where(channel, channel_type=None, bot_user_id=bot_user_id, **more)
    return _user_event("app_mention", text, user, where, parent_user_id)


def dm_message(text: str, user: str = "U1", channel: str = "D1", parent_user_id: str | None = None, **more: Any) -> Json:
    """A message.im event_callback: a user's direct message to the bot (channel_type "im")."""
    return _user_event("message", text, user, _where(channel, channel_type="im", **more), parent_user_id)


def channel_message(text: str, user: str = "U1", channel: str = "C1", parent_user_id: str | None = None, **more: Any) -> Json:
    """A message.channels event_callback (channel_type "channel"; "group" for private), e.g. a thread reply."""
    return _user_event("message", text, user, _where(channel, **more), parent_user_id)


def bot_message(
    text: str,
    bot_id: str = "B2",
    channel: str = "C1",
    *,
    username: str = "otherbot",
    user: str | None = None,
    subtype: str | None = "bot_message",
    **more: Any,
) -> Json:
    """A message posted by a bot: subtype bot_message with bot_id/username/icons as documented.

    Messages a modern app posts with its bot token also carry `user` (the bot's user id); pass
    `user=` for those, and `subtype=None` for the no-subtype form.
    """
    where = _where(channel, **more)
    event: Json = {"type": "message"}
    if subtype is not None:
        event["subtype"] = subtype
    event.update({"text": text, "ts": where.ts, "bot_id": bot_id, "username": username, "icons": {}})
    if user is not None:
        event["user"] = user
    if where.thread_ts is not None:
        event["thread_ts"] = where.thread_ts
    event.update({"channel": channel, "event_ts": where.ts, "channel_type": where.channel_type})
    return where.wrap(event)


def _hidden(subtype: str, fields: Json, where: _Where) -> Json:
    """A hidden message event (message_changed, message_deleted) in its event_callback body."""
    event = {"type": "message", "subtype": subtype, "hidden": True, **fields}
    event.update({"channel": where.channel, "ts": where.ts, "event_ts": where.ts, "channel_type": where.channel_type})
    return where.wrap(event)


def message_changed(
    text: str, previous_text: str, message_ts: str, user: str = "U1", channel: str = "C1", **more: Any
) -> Json:
    """A hidden message_changed event: message `message_ts` was edited from `previous_text` to `text`."""
    where = _where(channel, **more)
    message = {**_said(text, user, message_ts, where.team), "edited": {"user": user, "ts": where.ts}}
    previous = _said(previous_text, user, message_ts, where.team)
    if where.thread_ts is not None:
        message["thread_ts"] = previous["thread_ts"] = where.thread_ts
    return _hidden("message_changed", {"message": message, "previous_message": previous}, where)


def message_deleted(
    deleted_ts: str, previous_text: str | None = None, user: str = "U1", channel: str = "C1", **more: Any
) -> Json:
    """A hidden message_deleted event for the message at `deleted_ts` (with previous_message if text given)."""
    where = _where(channel, **more)
    fields: Json = {"deleted_ts": deleted_ts}
    if previous_text is not None:
        previous: Json = {"type": "message", "user": user, "text": previous_text, "ts": deleted_ts, "team": where.team}
        if where.thread_ts is not None:
            previous["thread_ts"] = where.thread_ts
        fields["previous_message"] = previous
    return _hidden("message_deleted", fields, where)


def thread_broadcast(
    text: str,
    thread_ts: str,
    user: str = "U1",
    channel: str = "C1",
    *,
    root_text: str = "This is the original message",
    root_user: str = "U1",
    **more: Any,
) -> Json:
    """A thread reply also sent to the channel: subtype thread_broadcast with the thread's `root` message."""
    where = _where(channel, thread_ts=thread_ts, **more)
    root = {
        "client_msg_id": str(uuid.uuid4()),
        **_said(root_text, root_user, thread_ts, where.team),
        "thread_ts": thread_ts,
        "reply_count": 1,
        "reply_users_count": 1,
        "latest_reply": where.ts,
        "reply_users": [user],
        "is_locked": False,
    }
    event = {
        **_said(text, user, where.ts, where.team),
        "subtype": "thread_broadcast",
        "thread_ts": thread_ts,
        "root": root,
        "client_msg_id": str(uuid.uuid4()),
        "channel": channel,
        "event_ts": where.ts,
        "channel_type": where.channel_type,
    }
    return where.wrap(event)


# ----- the assistant surface (Agents & AI Apps) ---------------------------------------------------------
# docs.slack.dev/reference/events/assistant_thread_started and assistant_thread_context_changed: the event
# carries assistant_thread {user_id, context {channel_id, team_id, enterprise_id}, channel_id, thread_ts}
# and event_ts; the channel is the DM with the app, the context the channel the user is viewing (absent
# when none). A user's message in the thread is a message.im event with thread_ts, parent_user_id (the
# app's bot user, whose root message starts the thread) and assistant_thread {action_token} (as recorded
# from Slack, e.g. lsimons-bot/lsimons-bot-code lsimons_bot/msg.py; not in the reference pages).


def _assistant_event(kind: str, user: str, channel: str, context_channel: str | None, thread_ts: str | None,
                     team: str, enterprise_id: str | None, **envelope: Any) -> Json:  # fmt: skip
    context: Json = {} if context_channel is None else {"channel_id": context_channel, "team_id": team, "enterprise_id": enterprise_id}
    thread_ts = thread_ts or new_ts()  # the thread's root, posted when the container opened
    event_ts = new_ts()
    event = {
        "type": kind,
        "assistant_thread": {"user_id": user, "context": context, "channel_id": channel, "thread_ts": thread_ts},
        "event_ts": event_ts,
    }
    return event_callback(event, team=team, **envelope)


def assistant_thread_started(
    user: str = "U1", channel: str = "D1", context_channel: str | None = "C1", *, thread_ts: str | None = None,
    team: str = "T1", enterprise_id: str | None = None, event_id: str | None = None, bot_user_id: str = "UBOT",
) -> Json:  # fmt: skip
    """assistant_thread_started: `user` opened the assistant container while viewing `context_channel`."""
    return _assistant_event("assistant_thread_started", user, channel, context_channel, thread_ts, team, enterprise_id,
                            event_id=event_id, bot_user_id=bot_user_id)  # fmt: skip


def assistant_thread_context_changed(
    thread_ts: str, context_channel: str | None, user: str = "U1", channel: str = "D1", *, team: str = "T1",
    enterprise_id: str | None = None, event_id: str | None = None, bot_user_id: str = "UBOT",
) -> Json:  # fmt: skip
    """assistant_thread_context_changed: with the container open, the user moved to `context_channel`."""
    return _assistant_event("assistant_thread_context_changed", user, channel, context_channel, thread_ts, team,
                            enterprise_id, event_id=event_id, bot_user_id=bot_user_id)  # fmt: skip


def assistant_message(text: str, thread_ts: str, user: str = "U1", channel: str = "D1", *, bot_user_id: str = "UBOT", **more: Any) -> Json:
    """A user's message.im in an assistant thread (the thread's root is the app's: parent_user_id)."""
    body = dm_message(text, user, channel, parent_user_id=bot_user_id, thread_ts=thread_ts, bot_user_id=bot_user_id, **more)
    body["event"]["assistant_thread"] = {"action_token": f"{int(time.time())}.{next(_counter)}.{uuid.uuid4().hex}"}
    return body


def url_verification(challenge: str) -> Json:
    """The handshake Slack sends when a Request URL is saved; the app must echo `challenge`."""
    return {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}


# ----- slash commands and interactivity ---------------------------------------------------------------


def _default_response_url(kind: str, team: str) -> str:
    return f"https://hooks.slack.com/{kind}/{team}/{next(_counter)}{int(time.time())}/{uuid.uuid4().hex[:24]}"


def slash_command(
    text: str,
    user: str = "U1",
    channel: str = "C1",
    command: str = "/advisor",
    response_url: str | None = None,
    trigger_id: str | None = None,
    team: str = "T1",
    user_name: str = "user1",
    channel_name: str = "general",
) -> bytes:
    """The form-encoded body Slack POSTs for a slash command (fields and order as Slack sends them)."""
    fields = {
        "token": VERIFICATION_TOKEN,
        "team_id": team,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel,
        "channel_name": channel_name,
        "user_id": user,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": API_APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url or _default_response_url("commands", team),
        "trigger_id": trigger_id or new_trigger_id(),
    }
    return urlencode(fields).encode()


def block_actions_payload(
    action_id: str,
    value: str,
    user: str = "U1",
    channel: str = "C1",
    message_ts: str | None = None,
    response_url: str | None = None,
    trigger_id: str | None = None,
    team: str = "T1",
    block_id: str = "actions",
    button_text: str = "Button",
    message_text: str = "",
    bot_id: str = "BBOT",
    bot_user_id: str = "UBOT",
    thread_ts: str | None = None,
) -> Json:
    """The decoded block_actions payload for a button click on a message the bot posted."""
    message_ts = message_ts or new_ts()
    label = {"type": "plain_text", "text": button_text, "emoji": True}
    message: Json = {
        "bot_id": bot_id,
        "type": "message",
        "text": message_text,
        "user": bot_user_id,
        "ts": message_ts,
        "app_id": API_APP_ID,
        "team": team,
        "blocks": [
            {
                "type": "actions",
                "block_id": block_id,
                "elements": [
                    {
                        "type": "button",
                        "action_id": action_id,
                        "text": label,
                        "value": value,
                    }
                ],
            }
        ],
    }
    if thread_ts is not None:
        message["thread_ts"] = thread_ts
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "general"},
        "message": message,
        "state": {"values": {}},
        "response_url": response_url or _default_response_url("actions", team),
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": dict(label),
                "value": value,
                "type": "button",
                "action_ts": new_ts(),
            }
        ],
    }


def block_action(action_id: str, value: str, **kw: Any) -> bytes:
    """The form-encoded interactivity body (`payload=<json>`) Slack POSTs for a button click
    (the arguments of block_actions_payload)."""
    payload = block_actions_payload(action_id, value, **kw)
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def decode_form(body: bytes) -> Json:
    """A form body back as a dict: an interactivity body's decoded `payload`, else the slash command fields."""
    fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
    if set(fields) == {"payload"}:
        return json.loads(fields["payload"])
    return fields


# ----- Socket Mode -----------------------------------------------------------------------------------


def socket_envelope(
    payload: Json | bytes,
    *,
    envelope_id: str | None = None,
    retry_attempt: int = 0,
    retry_reason: str = "",
) -> Json:
    """Wrap a body the way Socket Mode delivers it: events_api, slash_commands or interactive.

    `payload` is an event_callback dict (-> "events_api"), or the bytes of `slash_command(...)`
    (-> "slash_commands", fields as a dict) or of `block_action(...)` (-> "interactive").
    """
    envelope_id = envelope_id or str(uuid.uuid4())
    if isinstance(payload, bytes):
        decoded = decode_form(payload)
        kind = "interactive" if "type" in decoded and "command" not in decoded else "slash_commands"
        return {"envelope_id": envelope_id, "payload": decoded, "type": kind, "accepts_response_payload": True}
    if payload.get("type") != "event_callback":
        raise ValueError("a dict payload must be an event_callback body (use the builders here)")
    return {
        "envelope_id": envelope_id,
        "payload": payload,
        "type": "events_api",
        "accepts_response_payload": False,
        "retry_attempt": retry_attempt,
        "retry_reason": retry_reason,
    }
