"""A fake Slack Web API and Socket Mode endpoint for tests: an aiohttp app the real `slack_sdk` clients talk to.

It answers the Web API methods the advisor's Slack adapter uses with the bodies Slack documents
(docs.slack.dev/reference/methods/*), keeps the messages the bot posts so `conversations.replies`
can return a thread, mints `response_url`s that point back at it, and plays the server side of
Socket Mode (hello, envelopes, acks). Faults can be injected per method. Everything is in memory.

Strict mode (`FakeSlack(strict=True)`) enforces Slack's rate limits the way its docs state them
(docs.slack.dev/apis/web-api/rate-limits): per method, per workspace (the team the token belongs
to), answered with HTTP 429, `Retry-After` and {"ok": false, "error": "ratelimited"}; `SLACK_LIMITS`
lists them and `time_scale` shrinks every window so tests run fast. `deliver` (Events API over HTTP)
and `deliver_socket` (Socket Mode) play Slack's side of a delivery in every mode: an ack later than
3 seconds is a failed delivery, and an event is delivered again as Slack does (HTTP:
`X-Slack-Retry-Num` / `X-Slack-Retry-Reason: http_timeout`; Socket Mode: a new envelope with
`retry_attempt` / `retry_reason: timeout`); a slash command or button click is not, its user sees
an error instead.

    async with FakeSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
        await client.chat_postMessage(channel="C1", text="hi", thread_ts=ts)
        ack = await slack.send_socket_envelope(socket_envelope(app_mention("hello")))
        delivery = await slack.deliver(adapter_url, app_mention("hello"), signing_secret)
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import math
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, get_args

import aiohttp
from aiohttp import WSMsgType, web

from tests.harness.loopback import LoopbackServer
from tests.harness.slack_assistant_api import BOT_SCOPES, AssistantError, AssistantThread, AssistantThreads
from tests.harness.slack_stream_api import Streaming, valid_context_actions
from tests.harness.slack_payloads import API_APP_ID, FORM_CONTENT_TYPE, TEAM_DOMAIN, decode_form, new_ts, sign

Json = dict[str, Any]
FaultKind = Literal["rate_limited", "error", "server_error", "slow"]

TEXT_LIMIT = 40_000  # chat.postMessage: longer text is refused with msg_too_long
MAX_BLOCKS = 50  # Block Kit: blocks per message
SECTION_TEXT_LIMIT = 3_000
SECTION_FIELDS_LIMIT = 10
SECTION_FIELD_TEXT_LIMIT = 2_000
HEADER_TEXT_LIMIT = 150
MARKDOWN_BLOCK_LIMIT = 12_000
RESPONSE_URL_USES = 5  # a response_url takes up to 5 posts (within 30 minutes)

# Methods an app-level (xapp-) token may call; every other method refuses it.
_APP_TOKEN_METHODS = frozenset({"apps.connections.open", "auth.test"})

ACK_DEADLINE = 3.0  # seconds Slack waits for an ack (HTTP 2xx, or a Socket Mode envelope ack)
RETRY_DELAYS = (0.0, 60.0, 300.0)  # an event's redeliveries: at once, after a minute, after five
TIMEOUT_NOTICE = 'failed with the error "operation_timeout"'  # what a user sees after a late command ack


@dataclass(frozen=True)
class Limit:
    """At most `calls` in any `seconds` (a sliding window), or with `burst`: `calls` per `seconds` on
    average with bursts of up to `burst` (a token bucket). Counted per workspace, and per channel too
    when `per_channel`. Only calls that were served count; a 429 does not use up the budget."""

    calls: int
    seconds: float
    burst: int | None = None
    per_channel: bool = False


# docs.slack.dev/apis/web-api/rate-limits: Tier 1 1+/min, Tier 2 20+/min, Tier 3 50+/min, Tier 4 100+/min;
# posting messages about 1 per second per channel with short bursts (chat.postMessage is "special": it also
# has a workspace-wide limit whose figure is not published, so none is set here; add one with `limits`).
TIER_1, TIER_2, TIER_3, TIER_4 = Limit(1, 60.0), Limit(20, 60.0), Limit(50, 60.0), Limit(100, 60.0)
POSTS_PER_CHANNEL = Limit(1, 1.0, burst=3, per_channel=True)
SLACK_LIMITS: Mapping[str, tuple[Limit, ...]] = {
    "chat.postMessage": (POSTS_PER_CHANNEL,),
    "chat.update": (TIER_3,),
    "chat.delete": (TIER_3,),
    "chat.postEphemeral": (TIER_4,),
    "conversations.replies": (TIER_3,),  # Tier 3 for internal and Marketplace apps
    "users.info": (TIER_4,),
    "reactions.add": (TIER_3,),
    "apps.connections.open": (TIER_1,),
    # native streaming (docs.slack.dev/reference/methods/chat.*Stream): start and stop Tier 2, append Tier 4
    "chat.startStream": (TIER_2,),
    "chat.appendStream": (TIER_4,),
    "chat.stopStream": (TIER_2,),
    # assistant.threads.setStatus: "special rate limits apply", figure not published (none set here)
    "assistant.threads.setTitle": (TIER_4,),
    "assistant.threads.setSuggestedPrompts": (TIER_4,),
}


@dataclass
class Attempt:
    """One try at delivering a request: `status` None while (or if) no answer came."""

    retry_num: int
    reason: str  # "" on the first try; why the previous one failed on a retry
    status: int | None = None
    body: str = ""
    late: bool = False  # answered after the deadline, when Slack had stopped waiting


@dataclass
class Delivery:
    """Slack's view of delivering one request: every attempt, and whether one was acked in time."""

    attempts: list[Attempt] = field(default_factory=list)

    @property
    def acked(self) -> bool:
        return any(a.status is not None and 200 <= a.status < 300 and not a.late for a in self.attempts)

    @property
    def retries(self) -> int:
        return len(self.attempts) - 1

    @property
    def ack_body(self) -> str:
        """The body of the ack Slack accepted ("" if none)."""
        good = [a for a in self.attempts if a.status is not None and 200 <= a.status < 300 and not a.late]
        return good[0].body if good else ""


class SlackError(Exception):
    """A Web API failure answered as HTTP 200 {"ok": false, "error": code}."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class _Fault:
    method: str
    kind: str
    times: int
    options: dict[str, Any]
    channel: str | None = None


def _ack_text(body: str) -> str:
    """The message text of an ack's body (JSON with "text", or plain text; "" for none)."""
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        return body
    return str(parsed.get("text") or "") if isinstance(parsed, dict) else ""


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    return int(seconds or 0), int(micros or 0)


def _json(data: Json, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers={"X-Slack-Req-Id": uuid.uuid4().hex, **(headers or {})})


def _maybe_json(value: Any) -> Any:
    """Form-encoded structured arguments (blocks, attachments, metadata) arrive as JSON strings."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true"))


def _text_of(obj: Any) -> str:
    return obj.get("text", "") if isinstance(obj, dict) and isinstance(obj.get("text"), str) else ""


def validate_blocks(raw: Any) -> list[Json]:
    """Blocks as Slack would accept them for a message, or SlackError(invalid_blocks[_format])."""
    blocks = _maybe_json(raw)
    if not isinstance(blocks, list):
        raise SlackError("invalid_blocks_format")
    if len(blocks) > MAX_BLOCKS:
        raise SlackError("invalid_blocks")
    for block in blocks:
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise SlackError("invalid_blocks")
        kind = block["type"]
        if kind == "section":
            fields = block.get("fields") or []
            if "text" not in block and not fields:
                raise SlackError("invalid_blocks")
            if len(_text_of(block.get("text"))) > SECTION_TEXT_LIMIT or len(fields) > SECTION_FIELDS_LIMIT:
                raise SlackError("invalid_blocks")
            if any(len(_text_of(f)) > SECTION_FIELD_TEXT_LIMIT for f in fields):
                raise SlackError("invalid_blocks")
        too_long = {
            "header": lambda b: len(_text_of(b.get("text"))) > HEADER_TEXT_LIMIT,
            "markdown": lambda b: len(str(b.get("text", ""))) > MARKDOWN_BLOCK_LIMIT,
        }
        if kind in too_long and too_long[kind](block):
            raise SlackError("invalid_blocks")
        if kind == "context_actions" and not valid_context_actions(block):
            raise SlackError("invalid_blocks")
        if kind == "actions" and any(e.get("type") == "feedback_buttons" for e in block.get("elements") or []):
            raise SlackError("invalid_blocks")  # feedback_buttons belong in context_actions only
    return blocks


class FakeSlack(LoopbackServer):
    """Async context manager serving a fake Slack Web API and Socket Mode on 127.0.0.1 (a free port)."""

    def __init__(
        self,
        *,
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        team_id: str = "T1",
        app_id: str = API_APP_ID,
        strict: bool = False,
        limits: Mapping[str, tuple[Limit, ...]] | None = None,
        time_scale: float = 1.0,
        ack_deadline: float = ACK_DEADLINE,
        streaming: bool = False,
    ) -> None:
        """`strict`: enforce `limits` (default `SLACK_LIMITS`; without strict, `limits` alone turns them
        on). `time_scale` multiplies every limit's window and the redelivery delays (0.05: a minute
        lasts 3 s); `ack_deadline` is how long a delivery waits for its ack."""
        self.bot_user_id, self.bot_id, self.team_id, self.app_id = bot_user_id, bot_id, team_id, app_id
        self.limits: Mapping[str, tuple[Limit, ...]] = SLACK_LIMITS if strict else {}
        if limits is not None:
            self.limits = limits
        self.time_scale = time_scale
        self.ack_deadline = ack_deadline
        self.teams: dict[str, str] = {}  # token -> the workspace it belongs to (others: team_id)
        self.limited: list[Json] = []  # every call answered 429 by a limit: method, team, channel, retry_after
        self.deliveries: list[Delivery] = []  # every deliver / deliver_socket, in order
        self._windows: dict[tuple[str, ...], deque[float]] = {}
        self._buckets: dict[tuple[str, ...], tuple[float, float]] = {}  # key -> (tokens, at)
        self._screens: dict[str, list[str]] = {}  # response_url id -> what its user sees, in order
        self._lingering: set[asyncio.Task[Any]] = set()
        self.team_name = "Fake Team"
        self.bot_name = "advisor"
        self.base_url = ""  # "http://127.0.0.1:PORT/api/" (slack_sdk urljoin()s the method onto it)
        self.root = ""  # "http://127.0.0.1:PORT"
        self.ws_url = ""  # "ws://127.0.0.1:PORT/link/"; apps.connections.open adds ?ticket=...&app_id=...
        self.calls: list[Json] = []
        self.admins: set[str] = set()  # users.info reports is_admin for these ids
        self.owners: set[str] = set()  # ... is_owner (and is_admin) for these
        self.socket_messages: list[Json] = []  # every JSON frame the Socket Mode client sent
        self.socket_acks: list[Json] = []  # the frames that carried an envelope_id
        self.socket_sent: list[Json] = []  # every frame this server pushed (hello, envelopes, ...)
        self.socket_connections = 0  # websocket connections accepted so far
        self._channels: dict[str, dict[str, Json]] = {}  # channel -> ts -> message
        self._faults: list[_Fault] = []
        self._response_urls: dict[str, int] = {}  # id -> posts so far
        self._tickets: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_changed: asyncio.Condition | None = None
        self._ack_waiters: dict[str, asyncio.Future[Json]] = {}
        self._methods = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.delete": self._delete,
            "conversations.replies": self._replies,
            "users.info": self._users_info,
            "reactions.add": self._reactions_add,
            "apps.connections.open": self._connections_open,
        }
        self.scopes: set[str] = set(BOT_SCOPES)  # the bot token's scopes (take some away to test missing_scope)
        self.assistant = AssistantThreads(
            lambda: self.scopes, lambda channel: channel in self._channels, lambda c, ts: ts in self._channels.get(c, {})
        )
        self._methods.update(self.assistant.methods())
        # chat.startStream / appendStream / stopStream; off (unknown_method, as before they existed) unless `streaming`
        self.streaming = Streaming(self, enabled=streaming)
        self._methods.update(self.streaming.methods())

    async def __aenter__(self) -> Self:
        self._socket_changed = asyncio.Condition()
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{id}", self._response_url_post)
        app.router.add_get("/link/", self._websocket)
        port = await self._serve(app)
        self.root = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.root}/api/"
        self.ws_url = f"ws://127.0.0.1:{port}/link/"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for ws in list(self._sockets):
            await ws.close()
        for waiter in self._ack_waiters.values():
            waiter.cancel()
        for task in list(self._lingering):
            task.cancel()
        await asyncio.gather(*self._lingering, return_exceptions=True)
        await self._stop()

    # ----- test controls ---------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Json]:
        """The recorded calls to one Web API method ("response_url" for posts to minted response URLs)."""
        return [call for call in self.calls if call["method"] == method]

    def fail_next(self, method: str, kind: FaultKind, times: int = 1, *, channel: str | None = None, **kw: Any) -> None:
        """Fault the next `times` calls to `method` (a Web API method name, or "response_url"), or only
        those for `channel`.

        kind "rate_limited": HTTP 429, Retry-After (kw retry_after, default 1 s; sent as whole seconds,
        rounded up, because slack_sdk int()s the header), body {"ok": false, "error": "ratelimited"};
        "error": HTTP 200 {"ok": false, "error": kw error}; "server_error": HTTP 500
        {"ok": false, "error": "internal_error"} (kw applied=True: the call is carried out first, as a
        5xx may be); "slow": answered as usual after kw seconds.
        """
        allowed = {"rate_limited": {"retry_after"}, "error": {"error"}, "server_error": {"applied"}, "slow": {"seconds"}}
        if kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {list(get_args(FaultKind))}")
        if set(kw) - allowed[kind]:
            raise ValueError(f"fault {kind!r} takes {sorted(allowed[kind])}, not {sorted(kw)}")
        if kind == "error" and not isinstance(kw.get("error"), str):
            raise ValueError("kind 'error' needs error='<slack error code>'")
        if times < 1:
            raise ValueError("times must be at least 1")
        self._faults.append(_Fault(method, kind, times, kw, channel))

    def refuse_streaming(self, team: str | None = None, error: str = "unknown_method") -> None:
        """Workspace `team` (default this fake's) answers every streaming method with `error`
        (unknown_method, not_allowed, method_deprecated, ...), as one without the feature does."""
        self.streaming.refused[team or self.team_id] = error

    def response_url(self) -> str:
        """A fresh response_url pointing at this server; posts to it land in `calls` as method "response_url"."""
        if not self.root:
            raise RuntimeError("enter the FakeSlack context first")
        url_id = f"{self.team_id}-{len(self._response_urls) + 1}-{uuid.uuid4().hex[:24]}"
        self._response_urls[url_id] = 0
        return f"{self.root}/response/{url_id}"

    def add_message(self, channel: str, message: Json) -> Json:
        """Store a message as if someone posted it (e.g. the user's mention that starts a thread).

        `message` needs a "ts"; pass an event_callback body's ["event"] straight in.
        """
        if not isinstance(message.get("ts"), str):
            raise TypeError("message needs a string 'ts'")
        stored = {key: value for key, value in copy.deepcopy(message).items() if key not in ("channel", "event_ts")}
        stored.setdefault("type", "message")
        if stored["type"] == "app_mention":
            stored["type"] = "message"
        self._channels.setdefault(channel, {})[stored["ts"]] = stored
        return copy.deepcopy(stored)

    def open_assistant_thread(self, user: str = "U1", channel: str = "D1", context_channel: str | None = "C1", **more: Any) -> Json:
        """A user opens the assistant container: its root message (subtype assistant_app_thread) is stored
        and the thread registered; the assistant_thread_started body Slack then sends is returned
        (`more`: thread_ts, event_id, team, bot_user_id of the builder)."""
        from tests.harness import slack_payloads as sp

        body = sp.assistant_thread_started(user, channel, context_channel, bot_user_id=more.pop("bot_user_id", self.bot_user_id), **more)
        thread = body["event"]["assistant_thread"]
        root = {"type": "message", "subtype": "assistant_app_thread", "user": self.bot_user_id, "text": "", "ts": thread["thread_ts"]}
        self._channels.setdefault(channel, {})[thread["thread_ts"]] = root
        self.assistant.open(channel, thread["thread_ts"], user, thread["context"])
        return body

    def assistant_thread(self, channel: str, thread_ts: str) -> AssistantThread:
        """What the user sees of an assistant thread: status, title, suggested prompts (KeyError if none)."""
        return self.assistant.threads[(channel, thread_ts)]

    def thread(self, channel: str, thread_ts: str) -> list[Json]:
        """The thread's messages (parent first, then replies by ts), as conversations.replies returns them."""
        stored = self._channels.get(channel, {})
        parent = stored.get(thread_ts)
        replies = sorted(
            (m for ts, m in stored.items() if ts != thread_ts and m.get("thread_ts") == thread_ts),
            key=lambda m: _ts_key(m["ts"]),
        )
        out: list[Json] = []
        if parent is not None:
            head = copy.deepcopy(parent)
            if replies:
                users = list(dict.fromkeys(m.get("user", "") for m in replies if m.get("user")))
                head.update(
                    thread_ts=thread_ts,
                    reply_count=len(replies),
                    reply_users_count=len(users),
                    latest_reply=replies[-1]["ts"],
                    reply_users=users,
                    is_locked=False,
                    subscribed=False,
                )
            out.append(head)
        for reply in replies:
            item = copy.deepcopy(reply)
            if parent is not None and parent.get("user"):
                item.setdefault("parent_user_id", parent["user"])
            out.append(item)
        return out

    @property
    def socket_connected(self) -> bool:
        return any(not ws.closed for ws in self._sockets)

    async def wait_for_socket(self, timeout: float = 3.0) -> None:
        """Wait until a Socket Mode client is connected (TimeoutError if none within `timeout`)."""
        assert self._socket_changed is not None, "enter the FakeSlack context first"
        async with self._socket_changed:
            await asyncio.wait_for(self._socket_changed.wait_for(lambda: self.socket_connected), timeout)

    async def send_socket_message(self, message: Json, timeout: float = 3.0) -> None:
        """Push any frame to the newest Socket Mode connection.

        E.g. {"type": "disconnect", "reason": "refresh_requested"}, after which slack_sdk reconnects.
        """
        try:
            await self.wait_for_socket(timeout)
        except TimeoutError:
            raise RuntimeError(f"no Socket Mode client connected within {timeout} s") from None
        ws = [ws for ws in self._sockets if not ws.closed][-1]
        self.socket_sent.append(copy.deepcopy(message))
        await ws.send_str(json.dumps(message))

    async def send_socket_envelope(self, envelope: Json, timeout: float = 3.0) -> Json | None:
        """Push an envelope to the Socket Mode client and return its ack ({"envelope_id", "payload"?}).

        None if no ack arrives within `timeout` s; RuntimeError if no client connects within it. An
        envelope_id is added if missing.
        """
        envelope = dict(envelope)
        envelope.setdefault("envelope_id", str(uuid.uuid4()))
        envelope_id = envelope["envelope_id"]
        waiter: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._ack_waiters[envelope_id] = waiter
        try:
            await self.send_socket_message(envelope, timeout)
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return None
        finally:
            self._ack_waiters.pop(envelope_id, None)

    # ----- Web API plumbing ------------------------------------------------------------------------

    async def _record(self, request: web.Request, method: str, **extra: Any) -> Json:
        """Parse query + form or JSON body into one args dict and record the call."""
        args: Json = dict(request.query)
        if request.content_type == "application/json":
            try:
                body = json.loads(await request.read() or b"{}")
            except ValueError:
                body = None
            if isinstance(body, dict):
                args.update(body)
            else:
                extra["invalid_json"] = True
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            args.update({key: value for key, value in form.items() if isinstance(value, str)})
        call = {
            "method": method,
            "args": args,
            "headers": {key.lower(): value for key, value in request.headers.items()},
            "at": time.monotonic(),
            **extra,
        }
        self.calls.append(call)
        return call

    def _take_fault(self, method: str, channel: Any = None) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.channel in (None, channel):
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _fault_response(fault: _Fault) -> web.Response:
        if fault.kind == "rate_limited":
            seconds = max(0, math.ceil(float(fault.options.get("retry_after", 1))))
            return _json({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(seconds)})
        if fault.kind == "error":
            return _json({"ok": False, "error": fault.options["error"]})
        return _json({"ok": False, "error": "internal_error"}, status=500)

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        call = await self._record(request, method)
        if method not in self._methods:
            return _json({"ok": False, "error": "unknown_method", "req_method": method})
        fault = self._take_fault(method, call["args"].get("channel"))
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(float(fault.options.get("seconds", 1.0)))
        elif fault is not None and not fault.options.get("applied"):
            return self._fault_response(fault)
        try:
            if call.get("invalid_json"):
                raise SlackError("invalid_json")
            token = self._authorise(method, request, call["args"])
            if (limited := self._rate_limit(method, token, call)) is not None:
                return limited
            answer = self._methods[method](call["args"], token)
            return self._fault_response(fault) if fault is not None and fault.options.get("applied") else _json(answer)
        except SlackError as error:
            return _json({"ok": False, "error": error.code})
        except AssistantError as error:
            return _json({"ok": False, "error": error.code, **error.extra})

    # ----- rate limits -----------------------------------------------------------------------------

    def limited_calls(self, method: str | None = None) -> list[Json]:
        """The calls a limit answered with 429 (all methods, or one)."""
        return [entry for entry in self.limited if method is None or entry["method"] == method]

    def _rate_limit(self, method: str, token: str, call: Json) -> web.Response | None:
        """A 429 if any of `method`'s limits is used up for this workspace (and channel); else count the call."""
        team = self.teams.get(token, self.team_id)
        channel = str(call["args"].get("channel") or "")
        now = time.monotonic()
        keys = {False: (method, team), True: (method, team, channel)}
        checks = [(limit, keys[limit.per_channel]) for limit in self.limits.get(method, ())]
        wait = max((self._wait(limit, key, now) for limit, key in checks), default=0.0)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))  # whole seconds: slack_sdk int()s the header
            self.limited.append({"method": method, "team": team, "channel": channel, "retry_after": retry_after})
            call["limited"] = True
            return _json({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(retry_after)})
        for limit, key in checks:
            self._count(limit, key, now)
        return None

    def _wait(self, limit: Limit, key: tuple[str, ...], now: float) -> float:
        """Seconds until `limit` allows one more call for `key` (0: now)."""
        seconds = limit.seconds * self.time_scale
        if limit.burst is not None:
            tokens, at = self._buckets.get(key, (float(limit.burst), now))
            tokens = min(float(limit.burst), tokens + (now - at) * limit.calls / seconds)
            return 0.0 if tokens >= 1 else (1 - tokens) * seconds / limit.calls
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - seconds:
            window.popleft()
        return 0.0 if len(window) < limit.calls else window[0] + seconds - now

    def _count(self, limit: Limit, key: tuple[str, ...], now: float) -> None:
        if limit.burst is not None:
            seconds = limit.seconds * self.time_scale
            tokens, at = self._buckets.get(key, (float(limit.burst), now))
            tokens = min(float(limit.burst), tokens + (now - at) * limit.calls / seconds)
            self._buckets[key] = (tokens - 1, now)
        else:
            self._windows.setdefault(key, deque()).append(now)

    # ----- deliveries (Slack calling the app) -----------------------------------------------------

    def screen(self, response_url: str) -> list[str]:
        """What the user of a slash command sees, in order: its ack's text (if acked in time and not
        empty), then each post to its response_url, or the timeout error Slack shows for a late ack.
        Slack does not replace or delete a command's earlier messages from its response_url
        (replace_original is ignored there: slackapi/bolt-python#1268), so every post adds one."""
        return list(self._screens.get(response_url.rstrip("/").rsplit("/", 1)[-1], []))

    def _show_ack(self, response_url: str, text: str) -> None:
        if response_url.startswith(self.root + "/response/") and text:
            self._screens.setdefault(response_url.rsplit("/", 1)[-1], []).append(text)

    async def deliver(self, url: str, body: Json | bytes, secret: str) -> Delivery:
        """POST a signed request to the app at `url` as Slack does, and retry as Slack does.

        An event_callback (a dict, sent as JSON) not acked with a 2xx within `ack_deadline` is sent
        again with X-Slack-Retry-Num and X-Slack-Retry-Reason (http_timeout at once, without waiting
        for the first; http_error / connection_failed), after RETRY_DELAYS; a slash command or an
        interaction (form bytes) is sent once, and a late ack shows its user an error."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        content_type = FORM_CONTENT_TYPE if isinstance(body, bytes) else "application/json"
        is_event = isinstance(body, dict) and body.get("type") == "event_callback"
        delivery = Delivery()
        self.deliveries.append(delivery)
        reason = ""
        for retry_num in range(len(RETRY_DELAYS) + 1 if is_event else 1):
            if retry_num:
                await asyncio.sleep(RETRY_DELAYS[retry_num - 1] * self.time_scale)
            attempt = Attempt(retry_num, reason)
            delivery.attempts.append(attempt)
            headers = {"Content-Type": content_type, **sign(raw, secret)}
            if retry_num:
                headers.update({"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": reason})
            reason = await self._attempt(url, raw, headers, attempt)
            if not reason:
                break
        if not is_event:
            self._after_command(body, delivery)
        return delivery

    async def _attempt(self, url: str, raw: bytes, headers: dict[str, str], attempt: Attempt) -> str:
        """One POST; "" when acked in time, else why it failed (the request may stay open, answered late)."""

        async def post() -> None:
            async with aiohttp.ClientSession() as session:  # its own: a late request may outlive deliver()
                try:
                    async with session.post(url, data=raw, headers=headers) as response:
                        attempt.status, attempt.body = response.status, await response.text()
                except aiohttp.ClientError:
                    attempt.status = 0

        task = asyncio.create_task(post())
        done, _ = await asyncio.wait({task}, timeout=self.ack_deadline)
        if not done:
            self._linger(task, attempt)
            return "http_timeout"
        if attempt.status == 0:
            return "connection_failed"
        return "" if attempt.status is not None and 200 <= attempt.status < 300 else "http_error"

    def _linger(self, task: asyncio.Task[Any], attempt: Attempt) -> None:
        """Keep a request Slack gave up on running, and mark its answer late when it comes."""

        def done(_: asyncio.Task[Any]) -> None:
            self._lingering.discard(task)
            attempt.late = bool(attempt.status)

        self._lingering.add(task)
        task.add_done_callback(done)

    def _after_command(self, body: Json | bytes, delivery: Delivery) -> None:
        """What the user of a command or click sees from its ack: the ack's text, or Slack's timeout error."""
        fields = decode_form(body) if isinstance(body, bytes) else body
        response_url = str(fields.get("response_url") or "")
        if not delivery.acked:
            self._show_ack(response_url, TIMEOUT_NOTICE)
            return
        self._show_ack(response_url, _ack_text(delivery.ack_body))

    async def deliver_socket(self, envelope: Json) -> Delivery:
        """Push an envelope over Socket Mode as Slack does: an events_api envelope not acked within
        `ack_deadline` is pushed again as a new envelope with retry_attempt and retry_reason "timeout",
        after RETRY_DELAYS; a slash command or interaction is pushed once (late: its user sees an error)."""
        is_event = envelope.get("type") == "events_api"
        delivery = Delivery()
        self.deliveries.append(delivery)
        for retry_num in range(len(RETRY_DELAYS) + 1 if is_event else 1):
            if retry_num:
                await asyncio.sleep(RETRY_DELAYS[retry_num - 1] * self.time_scale)
            attempt = Attempt(retry_num, "timeout" if retry_num else "")
            delivery.attempts.append(attempt)
            pushed = {**envelope, "envelope_id": str(uuid.uuid4())}
            if is_event:
                pushed.update(retry_attempt=retry_num, retry_reason=attempt.reason)
            if await self._push_until_acked(pushed, attempt):
                break
        if not is_event:
            payload = envelope.get("payload") or {}
            ack = json.loads(delivery.ack_body or "{}").get("payload") or {}
            if not delivery.acked:
                self._show_ack(str(payload.get("response_url") or ""), TIMEOUT_NOTICE)
            else:
                self._show_ack(str(payload.get("response_url") or ""), str(ack.get("text") or ""))
        return delivery

    async def _push_until_acked(self, envelope: Json, attempt: Attempt) -> bool:
        """Push one envelope and wait `ack_deadline` for its ack; a later ack marks the attempt late."""
        envelope_id = envelope["envelope_id"]
        waiter: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._ack_waiters[envelope_id] = waiter
        await self.send_socket_message(envelope, self.ack_deadline)
        timed_out = False

        def acked(future: asyncio.Future[Json]) -> None:
            self._ack_waiters.pop(envelope_id, None)
            if not future.cancelled():
                attempt.status, attempt.body, attempt.late = 200, json.dumps(future.result()), timed_out

        waiter.add_done_callback(acked)
        done, _ = await asyncio.wait({waiter}, timeout=self.ack_deadline)
        timed_out = not done  # an ack that comes after this is late; the waiter stays to see it
        return bool(done)

    @staticmethod
    def _authorise(method: str, request: web.Request, args: Json) -> str:
        """The caller's token, checked the way Slack does: Bearer header (or a token argument)."""
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""
        if not token:
            if method == "apps.connections.open" and args.get("token"):
                raise SlackError("invalid_auth")  # this method takes its token in the header only
            token = str(args.get("token") or "")
        if not token:
            raise SlackError("not_authed")
        if not token.startswith(("xoxb-", "xoxp-", "xapp-")):
            raise SlackError("invalid_auth")
        is_app_token = token.startswith("xapp-")
        if method == "apps.connections.open" and not is_app_token:
            raise SlackError("not_allowed_token_type")
        if is_app_token and method not in _APP_TOKEN_METHODS:
            raise SlackError("not_allowed_token_type")
        return token

    # ----- Web API methods -------------------------------------------------------------------------

    @staticmethod
    def _required(args: Json, name: str, error: str = "invalid_arguments") -> str:
        value = args.get(name)
        if not isinstance(value, str) or not value:
            raise SlackError(error)
        return value

    def _auth_test(self, args: Json, token: str) -> Json:
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _bot_profile(self) -> Json:
        return {
            "id": self.bot_id,
            "app_id": self.app_id,
            "name": self.bot_name,
            "icons": {"image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png"},
            "deleted": False,
            "updated": 1700000000,
            "team_id": self.team_id,
        }

    def _content(self, args: Json) -> Json:
        """text / blocks / attachments of a chat.* call, validated like Slack does."""
        text = args.get("text")
        blocks = args.get("blocks")
        attachments = _maybe_json(args.get("attachments"))
        content: Json = {}
        if text is not None:
            if not isinstance(text, str):
                raise SlackError("invalid_arguments")
            if len(text) > TEXT_LIMIT:
                raise SlackError("msg_too_long")
            content["text"] = text
        if blocks is not None:
            content["blocks"] = validate_blocks(blocks)
        if attachments:
            content["attachments"] = attachments
        if not content.get("text") and not content.get("blocks") and not content.get("attachments"):
            raise SlackError("no_text")
        content.setdefault("text", "")
        return content

    def _post_message(self, args: Json, token: str) -> Json:
        channel = self._required(args, "channel", "channel_not_found")
        message: Json = {
            "user": self.bot_user_id,
            "type": "message",
            "ts": new_ts(),
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            **self._content(args),
            "team": self.team_id,
            "bot_profile": self._bot_profile(),
        }
        thread_ts = args.get("thread_ts")
        if isinstance(thread_ts, str) and thread_ts:
            message["thread_ts"] = thread_ts
            parent = self._channels.get(channel, {}).get(thread_ts)
            if parent is not None and parent.get("user"):
                message["parent_user_id"] = parent["user"]
            if _truthy(args.get("reply_broadcast")):
                message["subtype"] = "thread_broadcast"
        if args.get("metadata") is not None:
            message["metadata"] = _maybe_json(args["metadata"])
        self._channels.setdefault(channel, {})[message["ts"]] = message
        self.assistant.posted(channel, message.get("thread_ts"))
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": copy.deepcopy(message)}

    def _own_message(self, args: Json, forbidden: str) -> tuple[str, Json]:
        channel = self._required(args, "channel", "channel_not_found")
        ts = self._required(args, "ts", "message_not_found")
        message = self._channels.get(channel, {}).get(ts)
        if message is None:
            raise SlackError("message_not_found")
        if message.get("user") != self.bot_user_id and message.get("bot_id") != self.bot_id:
            raise SlackError(forbidden)
        return channel, message

    def _update(self, args: Json, token: str) -> Json:
        channel, message = self._own_message(args, "cant_update_message")
        if self.streaming.streaming(channel, message["ts"]):  # measured by others; undocumented
            raise SlackError("streaming_state_conflict")
        if args.get("text") is None and args.get("blocks") is None and args.get("attachments") is None:
            raise SlackError("no_text")
        content = self._content({"text": message.get("text", ""), **args})
        if args.get("blocks") is None:
            content.pop("blocks", None)
        message.update(content)
        message["edited"] = {"user": self.bot_user_id, "ts": new_ts()}
        body = {key: value for key, value in copy.deepcopy(message).items() if key != "ts"}
        return {"ok": True, "channel": channel, "ts": message["ts"], "text": message["text"], "message": body}

    def _post_ephemeral(self, args: Json, token: str) -> Json:
        self._required(args, "channel", "channel_not_found")
        self._required(args, "user", "user_not_found")
        self._content(args)
        return {"ok": True, "message_ts": new_ts()}

    def _delete(self, args: Json, token: str) -> Json:
        channel, message = self._own_message(args, "cant_delete_message")
        if self.streaming.streaming(channel, message["ts"]):  # measured by others; undocumented
            raise SlackError("cant_delete_message")
        del self._channels[channel][message["ts"]]
        return {"ok": True, "channel": channel, "ts": message["ts"]}

    def _replies(self, args: Json, token: str) -> Json:
        channel = self._required(args, "channel", "channel_not_found")
        ts = self._required(args, "ts", "thread_not_found")
        messages = self.thread(channel, ts)
        if not messages:
            raise SlackError("thread_not_found")
        limit = int(args.get("limit") or 1000)
        if limit < 1:
            raise SlackError("invalid_limit")
        start = 0
        if args.get("cursor"):
            try:
                start = int(base64.b64decode(str(args["cursor"])).decode().removeprefix("offset:"))
            except ValueError as error:
                raise SlackError("invalid_cursor") from error
        page = messages[start : start + limit]
        has_more = start + limit < len(messages)
        cursor = base64.b64encode(f"offset:{start + limit}".encode()).decode() if has_more else ""
        return {"ok": True, "messages": page, "has_more": has_more, "response_metadata": {"next_cursor": cursor}}

    def _users_info(self, args: Json, token: str) -> Json:
        user = self._required(args, "user", "user_not_found")
        if not user.startswith(("U", "W")):
            raise SlackError("user_not_found")
        is_bot = user == self.bot_user_id
        name = self.bot_name if is_bot else user.lower()
        return {
            "ok": True,
            "user": {
                "id": user,
                "team_id": self.team_id,
                "name": name,
                "deleted": False,
                "color": "9f69e7",
                "real_name": name,
                "tz": "Europe/London",
                "tz_label": "Greenwich Mean Time",
                "tz_offset": 0,
                "profile": {
                    "real_name": name,
                    "display_name": name,
                    "real_name_normalized": name,
                    "display_name_normalized": name,
                    "team": self.team_id,
                    **({"bot_id": self.bot_id, "api_app_id": self.app_id} if is_bot else {}),
                },
                "is_admin": user in self.admins or user in self.owners,
                "is_owner": user in self.owners,
                "is_primary_owner": False,
                "is_restricted": False,
                "is_ultra_restricted": False,
                "is_bot": is_bot,
                "is_app_user": False,
                "updated": 1700000000,
                "is_email_confirmed": not is_bot,
                "who_can_share_contact_card": "EVERYONE",
            },
        }

    def _reactions_add(self, args: Json, token: str) -> Json:
        channel = self._required(args, "channel", "channel_not_found")
        name = self._required(args, "name", "invalid_name").strip(":")
        timestamp = self._required(args, "timestamp", "message_not_found")
        message = self._channels.get(channel, {}).get(timestamp)
        if message is not None:  # unknown messages (never posted nor added) are accepted as-is
            reactions = message.setdefault("reactions", [])
            reaction = next((r for r in reactions if r["name"] == name), None)
            if reaction is None:
                reaction = {"name": name, "users": [], "count": 0}
                reactions.append(reaction)
            if self.bot_user_id in reaction["users"]:
                raise SlackError("already_reacted")
            reaction["users"].append(self.bot_user_id)
            reaction["count"] += 1
        return {"ok": True}

    def _connections_open(self, args: Json, token: str) -> Json:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return {"ok": True, "url": f"{self.ws_url}?ticket={ticket}&app_id={self.app_id}"}

    # ----- response_url ----------------------------------------------------------------------------

    async def _response_url_post(self, request: web.Request) -> web.Response:
        url_id = request.match_info["id"]
        call = await self._record(request, "response_url", url=str(request.url))
        fault = self._take_fault("response_url")
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(float(fault.options.get("seconds", 1.0)))
        elif fault is not None:
            return self._fault_response(fault)
        if url_id not in self._response_urls:
            return web.Response(status=404, text="no_service")
        if self._response_urls[url_id] >= RESPONSE_URL_USES:
            return web.Response(status=404, text="used_url")
        self._response_urls[url_id] += 1
        if call["args"].get("text"):
            self._screens.setdefault(url_id, []).append(str(call["args"]["text"]))
        return web.Response(text="ok")

    # ----- Socket Mode -----------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("ticket") not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.socket_connections += 1
        hello = {
            "type": "hello",
            "num_connections": sum(not s.closed for s in self._sockets) + 1,
            "debug_info": {
                "host": "applink-fake-1",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }
        self.socket_sent.append(hello)
        await ws.send_str(json.dumps(hello))
        assert self._socket_changed is not None
        async with self._socket_changed:
            self._sockets.append(ws)
            self._socket_changed.notify_all()
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                try:
                    message = json.loads(frame.data)
                except ValueError:
                    message = {"raw": frame.data}
                self.socket_messages.append(message)
                if isinstance(message, dict) and "envelope_id" in message:
                    self.socket_acks.append(message)
                    waiter = self._ack_waiters.get(message["envelope_id"])
                    if waiter is not None and not waiter.done():
                        waiter.set_result(message)
        finally:
            async with self._socket_changed:
                self._sockets.remove(ws)
                self._socket_changed.notify_all()
        return ws
