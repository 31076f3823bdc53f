"""A fake Discord for tests: the gateway websocket and the REST API the real `discord.py` client talks to.

It plays the server side of the gateway (docs/events/gateway): HELLO, heartbeat ACKs, IDENTIFY ->
READY + one GUILD_CREATE per guild, RESUME -> replay of the missed dispatches + RESUMED, RECONNECT
(op 7), INVALID_SESSION (op 9), the 4xxx close codes, zlib-stream transport compression, intent
filtering and the MESSAGE_CONTENT blanking Discord applies. The REST side answers the endpoints an
advice bot uses (messages, typing, DMs, reactions, threads, application commands, interaction
callbacks and webhooks) with the objects Discord documents, keeps the messages it knows so edits,
replies and history work, echoes the bot's own messages back over the gateway like Discord does,
and injects faults (429 with Discord's body and headers, 500, 403). Everything is in memory.

Pointing discord.py at it (`FakeDiscord.patch`): discord.py builds every REST url from
`discord.http.Route.BASE` (read when each Route is made, webhooks and interaction callbacks
included), and `discord.Client` connects to `discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`
directly (it never calls GET /gateway; only AutoShardedClient calls /gateway/bot), falling back to
it again after a non-resumable INVALID_SESSION. Resumes go to READY's resume_gateway_url, which
this fake serves too. So:

    async with FakeDiscord() as fake:
        fake.patch(monkeypatch)          # or: with fake.patched(): ...
        client = discord.Client(intents=intents, guild_ready_timeout=0.05)
        task = asyncio.create_task(client.start(BOT_TOKEN))
        await fake.wait_ready()
        await fake.dispatch("MESSAGE_CREATE", message_create("hello"))
        ...
        await client.close()

Pass a small `guild_ready_timeout` to the client: discord.py waits that long (default 2 s) after the
last GUILD_CREATE before on_ready. `patch` also removes the 5 s sleep discord.py's default
`Client.before_identify_hook` takes before every re-IDENTIFY (fast_reidentify=False keeps it).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import math
import re
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, get_args
from urllib.parse import unquote

from aiohttp import WSMsgType, web

from tests.harness import discord_payloads as dp
from tests.harness.discord_payloads import Intents
from tests.harness.loopback import LoopbackServer

if TYPE_CHECKING:
    import pytest

Json = dict[str, Any]
FaultKind = Literal["rate_limited", "server_error", "forbidden"]

# Strict limits, from Discord's docs (docs/topics/rate-limits, docs/interactions/receiving-and-responding).
GLOBAL_LIMIT = 50  # requests per second per bot token, over every route but the interaction ones
INITIAL_RESPONSE_DEADLINE = 3.0  # seconds to the first interaction callback, else 10062 and the token is void
TOKEN_LIFETIME = 15 * 60.0  # seconds an interaction token can edit the response or send follow-ups
DEFAULT_ZLIB_CHUNK = 512  # zlib-stream: bytes per websocket frame; a payload may span several frames
DEFAULT_ROUTE_LIMIT = (5, 1.0)
FORBIDDEN_MESSAGES = {50001: "Missing Access", 50007: "Cannot send messages to this user", 50013: "Missing Permissions"}
# (limit, per seconds) per route and top-level resource (channel, guild, webhook id + token): the values
# Discord sends for these routes; message edits are 5 per 5 s in a channel.
ROUTE_LIMITS: dict[tuple[str, str], tuple[int, float]] = {
    ("POST", "/channels/{}/messages"): (5, 5.0),
    ("PATCH", "/channels/{}/messages/{}"): (5, 5.0),
    ("POST", "/channels/{}/typing"): (5, 5.0),
    ("PUT", "/channels/{}/messages/{}/reactions/{}/@me"): (1, 0.25),
    ("POST", "/webhooks/{}/{}"): (5, 2.0),
    ("PATCH", "/webhooks/{}/{}/messages/{}"): (5, 2.0),
}

CONTENT_LIMIT = 2000
INSTALL_TYPES = (0, 1)  # GUILD_INSTALL, USER_INSTALL (docs/resources/application#application-integration-types)
CONTEXT_TYPES = (0, 1, 2)  # GUILD, BOT_DM, PRIVATE_CHANNEL (docs/interactions/receiving-and-responding)
EMBED_LIMIT = 10
COMMAND_LIMIT = 100
EPHEMERAL = 1 << 6
LOADING = 1 << 7
HAS_THREAD = 1 << 5
USE_EXTERNAL_APPS = 1 << 50  # lets user-installed apps answer publicly in a guild they are not installed to
_SENDABLE_FLAGS = (1 << 2) | (1 << 6) | (1 << 12) | (1 << 13) | (1 << 15)  # SUPPRESS_EMBEDS, EPHEMERAL, ...
_COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")
_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")

# Application flags: unverified apps with a privileged intent switched on get the *_LIMITED flag.
_APP_FLAG_FOR_INTENT = {
    Intents.GUILD_PRESENCES: 1 << 13,
    Intents.GUILD_MEMBERS: 1 << 15,
    Intents.MESSAGE_CONTENT: 1 << 19,
}
_APPLICATION_COMMAND_BADGE = 1 << 23

CLOSE_REASONS = {
    4000: "Unknown error.",
    4001: "Unknown opcode.",
    4002: "Error while decoding payload.",
    4003: "Not authenticated.",
    4004: "Authentication failed.",
    4005: "Already authenticated.",
    4007: "Invalid seq.",
    4008: "Rate limited.",
    4009: "Session timed out.",
    4010: "Invalid shard.",
    4011: "Sharding required.",
    4012: "Invalid API version.",
    4013: "Invalid intent(s).",
    4014: "Disallowed intent(s).",
}

# Which intent a dispatch needs, for guild events and for DM events.
_GUILD_INTENT = {
    "MESSAGE_CREATE": Intents.GUILD_MESSAGES,
    "MESSAGE_UPDATE": Intents.GUILD_MESSAGES,
    "MESSAGE_DELETE": Intents.GUILD_MESSAGES,
    "MESSAGE_DELETE_BULK": Intents.GUILD_MESSAGES,
    "MESSAGE_REACTION_ADD": Intents.GUILD_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE": Intents.GUILD_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE_ALL": Intents.GUILD_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE_EMOJI": Intents.GUILD_MESSAGE_REACTIONS,
    "TYPING_START": Intents.GUILD_MESSAGE_TYPING,
    "GUILD_CREATE": Intents.GUILDS,
    "GUILD_UPDATE": Intents.GUILDS,
    "GUILD_DELETE": Intents.GUILDS,
    "GUILD_ROLE_CREATE": Intents.GUILDS,
    "GUILD_ROLE_UPDATE": Intents.GUILDS,
    "GUILD_ROLE_DELETE": Intents.GUILDS,
    "CHANNEL_CREATE": Intents.GUILDS,
    "CHANNEL_UPDATE": Intents.GUILDS,
    "CHANNEL_DELETE": Intents.GUILDS,
    "CHANNEL_PINS_UPDATE": Intents.GUILDS,
    "THREAD_CREATE": Intents.GUILDS,
    "THREAD_UPDATE": Intents.GUILDS,
    "THREAD_DELETE": Intents.GUILDS,
    "THREAD_LIST_SYNC": Intents.GUILDS,
    "THREAD_MEMBER_UPDATE": Intents.GUILDS,
    "GUILD_MEMBER_ADD": Intents.GUILD_MEMBERS,
    "GUILD_MEMBER_UPDATE": Intents.GUILD_MEMBERS,
    "GUILD_MEMBER_REMOVE": Intents.GUILD_MEMBERS,
    "PRESENCE_UPDATE": Intents.GUILD_PRESENCES,
}
_DM_INTENT = {
    "MESSAGE_CREATE": Intents.DIRECT_MESSAGES,
    "MESSAGE_UPDATE": Intents.DIRECT_MESSAGES,
    "MESSAGE_DELETE": Intents.DIRECT_MESSAGES,
    "CHANNEL_PINS_UPDATE": Intents.DIRECT_MESSAGES,
    "MESSAGE_REACTION_ADD": Intents.DIRECT_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE": Intents.DIRECT_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE_ALL": Intents.DIRECT_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE_EMOJI": Intents.DIRECT_MESSAGE_REACTIONS,
    "TYPING_START": Intents.DIRECT_MESSAGE_TYPING,
}


class ApiError(Exception):
    """A REST failure in Discord's shape: {"message", "code"} (+ "errors" for 50035 Invalid Form Body)."""

    def __init__(self, status: int, message: str, code: int = 0, errors: Json | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code
        self.body: Json = {"message": message, "code": code}
        if errors is not None:
            self.body["errors"] = errors


def _form_error(field_path: list[str | int], code: str, message: str) -> ApiError:
    """400 Invalid Form Body with the nested `errors` object Discord sends."""
    errors: Json = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(field_path):
        errors = {str(part): errors}
    return ApiError(400, "Invalid Form Body", 50035, errors)


def unknown(what: str, code: int) -> ApiError:
    return ApiError(404, f"Unknown {what}", code)


@dataclass
class _Fault:
    method: str
    path_prefix: str
    kind: str
    times: int
    options: dict[str, Any]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Awaitable[web.Response]]
    auth: bool = True
    bucket: str = ""
    limit: tuple[int, float] | None = DEFAULT_ROUTE_LIMIT  # None: no per-route limit (interaction callbacks)
    majors: tuple[int, ...] = ()  # which path groups are top-level resources (separate buckets)


class FakeClock:
    """The fake's sense of time: the real monotonic clock plus whatever a test moved it forward.

    Deadlines (the 3-second initial interaction response, the 15-minute interaction token) and
    rate-limit windows are measured on it, so a test can jump 15 minutes without waiting.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds


@dataclass
class _Window:
    """One rate-limit bucket for one top-level resource: `limit` requests per `per` seconds, fixed windows."""

    limit: int
    per: float
    used: int = 0
    reset_at: float = 0.0

    def take(self, now: float) -> bool:
        if now >= self.reset_at:
            self.used, self.reset_at = 0, now + self.per
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def reset_after(self, now: float) -> float:
        return max(0.0, self.reset_at - now)

    def headers(self, now: float, bucket: str) -> dict[str, str]:
        """docs/topics/rate-limits#header-format, as sent on every rate-limited route's response."""
        after = self.reset_after(now)
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - self.used)),
            "X-RateLimit-Reset": f"{time.time() + after:.3f}",
            "X-RateLimit-Reset-After": f"{after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }


@dataclass(eq=False)
class _Conn:
    """One websocket connection."""

    ws: web.WebSocketResponse
    request: web.Request
    record: Json
    compress: str | None
    compressor: Any = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    session: _Session | None = None
    closed_by_server: bool = False
    zombie: bool = False  # heartbeats go unanswered and nothing is sent: a "zombied" connection


@dataclass(eq=False)
class _Session:
    """A gateway session: what IDENTIFY starts and RESUME continues."""

    id: str
    intents: int
    identify: Json
    shard: list[int] | None
    seq: int = 0
    log: list[Json] = field(default_factory=list)  # every dispatch sent in this session, in seq order
    conn: _Conn | None = None
    ready: bool = False
    invalid: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _frame(op: int, d: Any = None, s: int | None = None, t: str | None = None) -> Json:
    return {"op": op, "d": d, "s": s, "t": t}


def _json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json": discord.py compares the header verbatim and reads anything else as text.
    body = json.dumps(data, ensure_ascii=False).encode()
    return web.Response(body=body, status=status, headers={"Content-Type": "application/json", **(headers or {})})


def _majors(shape: str) -> tuple[int, ...]:
    """Which path groups of a route shape ("/channels/{}/messages/{}") are top-level resources: a
    channel, a guild, or a webhook id and its token (docs/topics/rate-limits: separate buckets)."""
    majors: list[int] = []
    index, previous = 0, ""
    for segment in shape.strip("/").split("/"):
        if segment != "{}":
            previous = segment
            continue
        if previous in ("channels", "guilds", "webhooks", "<webhook>"):
            majors.append(index)
        previous = "<webhook>" if previous == "webhooks" else "<group>"
        index += 1
    return tuple(majors)


def _trace(name: str) -> list[str]:
    return [json.dumps([f"gateway-prd-fake-{name}", {"micros": 1000, "calls": []}])]


class FakeDiscord(LoopbackServer):
    """Async context manager on 127.0.0.1 (a free port) serving the gateway websocket and the REST API."""

    def __init__(
        self,
        *,
        token: str | None = dp.BOT_TOKEN,
        guilds: list[Json] | None = None,
        bot_user: Json | None = None,
        application_id: str = dp.APPLICATION_ID,
        heartbeat_interval_ms: int = 1000,
        require_message_content: bool = False,
        enabled_privileged_intents: int = Intents.PRIVILEGED,
        echo_bot_messages: bool = True,
        rate_limits: bool = True,
        interaction_deadlines: bool = True,
        zlib_chunk_size: int | None = DEFAULT_ZLIB_CHUNK,
        clock: FakeClock | None = None,
        install_types: tuple[int, ...] = (0, 1),
    ) -> None:
        """`token`: what IDENTIFY/RESUME and `Authorization: Bot ...` must carry (None accepts any).

        `enabled_privileged_intents`: the Developer Portal switches; IDENTIFY asking for a privileged
        intent outside them is closed with 4014, as Discord does. `require_message_content=True`
        additionally closes with 4014 a client that did NOT ask for MESSAGE_CONTENT (a test
        guard; real Discord would connect it and blank message content instead, which this fake
        also does). `echo_bot_messages`: dispatch MESSAGE_CREATE/UPDATE/DELETE for the bot's own
        REST writes, as Discord does.

        Strict by default, each rule from Discord's docs: `rate_limits` (per-route buckets per
        channel/guild/webhook with X-RateLimit-* headers counting down, 429 with Discord's body when
        one is spent, message edits 5 per 5 s per channel, and the global 50 requests/s per bot);
        `interaction_deadlines` (the first callback more than 3 s after INTERACTION_CREATE gets
        404 10062 Unknown interaction and voids the token; webhook calls with a token older than
        15 minutes get 401 50027 Invalid Webhook Token), both on `clock`, which tests may move
        forward; `zlib_chunk_size`: a zlib-stream payload goes out in frames of at most this many
        bytes (None: one frame per payload), so clients must buffer to the Z_SYNC_FLUSH suffix.

        `install_types`: the installation contexts the app supports in the portal (0 guild install, 1 user
        install); a command whose `integration_types` asks for another is refused at sync. Commands are
        checked and kept with their `contexts` and `integration_types`, and `dispatch` refuses (ValueError)
        an interaction Discord would never deliver: a command used in a context or through an install it
        was not registered for. Channels reached only through the user install (no "0" key in
        `authorizing_integration_owners`: group DMs, DMs between people, guilds without the bot) are not
        the bot's: REST calls to them get 403 50001 Missing Access and nothing there is echoed over the
        gateway; the interaction webhook still works.
        """
        self.token = token
        self.install_types = tuple(install_types)
        self.foreign_channels: set[str] = set()  # reached only through user installs: the bot is not a member
        self.bot_user: Json = bot_user or dp.bot_user()
        self.application_id = application_id
        self.guilds: list[Json] = [dp.guild()] if guilds is None else guilds
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.require_message_content = require_message_content
        self.enabled_privileged_intents = enabled_privileged_intents
        self.echo_bot_messages = echo_bot_messages
        self.rate_limits = rate_limits
        self.interaction_deadlines = interaction_deadlines
        if zlib_chunk_size is not None and zlib_chunk_size < 4:
            raise ValueError("zlib_chunk_size must be at least 4, the Z_SYNC_FLUSH suffix (or None)")
        self.zlib_chunk_size = zlib_chunk_size
        self.clock = clock or FakeClock()
        # every 429 the strict limits answered: {"method", "path", "scope" ("user" or "global"), "bucket", "retry_after"}
        self.rate_limited: list[Json] = []
        self.acks_withheld = 0  # heartbeats a zombied connection left unanswered
        self.frames_sent = 0  # websocket frames (a split zlib-stream payload counts each frame)
        self._windows: dict[str, _Window] = {}
        self._global_windows: dict[str, _Window] = {}
        self.root = ""  # "http://127.0.0.1:PORT"
        self.api_base = ""  # "http://127.0.0.1:PORT/api/v10" (for discord.http.Route.BASE)
        self.gateway_url = ""  # "ws://127.0.0.1:PORT/gateway" (GET /gateway's url; DEFAULT_GATEWAY)
        self.resume_gateway_url = ""  # "ws://127.0.0.1:PORT/resume" (READY's resume_gateway_url)
        # every REST call, in order: {"method", "path" (after /api/v10), "query", "json" (the body, or
        # payload_json of a multipart upload, else None), "headers" (lower-case names), "at"
        # (time.monotonic()), "status" (what the fake answered), "response_headers", "files" (uploads, if any)}
        self.calls: list[Json] = []
        self.identifies = 0
        self.resumes = 0  # successful RESUMEs
        self.rejected_resumes = 0  # RESUMEs answered with op 9 false
        self.heartbeats = 0
        self.replayed = 0  # dispatches re-sent during RESUMEs
        self.connections: list[Json] = []  # per websocket: {"path", "query", "at", "close_code", "closed_by"}
        self.gateway_received: list[Json] = []  # every frame clients sent
        self.gateway_sent: list[Json] = []  # every frame this server sent (before compression)
        self.presence_updates: list[Json] = []
        self.commands: list[Json] = []  # global application commands, as GET returns them
        self.guild_commands: dict[str, list[Json]] = {}
        self.interactions: dict[str, Json] = {}  # id -> {"payload", "token", "response_type", "response", ...}
        self._channels: dict[str, Json] = {}  # DMs and channels added at runtime
        self._messages: dict[str, dict[str, Json]] = {}  # channel -> id -> message (REST shape)
        self._users: dict[str, Json] = {}
        self._faults: list[_Fault] = []
        self._sessions: dict[str, _Session] = {}
        self._session: _Session | None = None
        self._conns: list[_Conn] = []
        self._changed: asyncio.Condition | None = None
        self._routes = self._build_routes()

    # ----- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_route("*", "/api/{tail:.*}", self._api)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/resume", self._gateway)
        port = await self._serve(app)
        self.root = f"http://127.0.0.1:{port}"
        self.api_base = f"{self.root}/api/v{dp.API_VERSION}"
        self.gateway_url = f"ws://127.0.0.1:{port}/gateway"
        self.resume_gateway_url = f"ws://127.0.0.1:{port}/resume"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for conn in list(self._conns):
            conn.closed_by_server = True
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"Going away")
        await self._stop()

    def patch(self, monkeypatch: pytest.MonkeyPatch, *, fast_reidentify: bool = True) -> None:
        """Point discord.py at this fake for the test (undone by monkeypatch).

        Sets discord.http.Route.BASE (every REST call, webhooks and interaction callbacks included)
        and discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY (the first connection and every
        re-IDENTIFY; resumes use READY's resume_gateway_url, which is this fake). With
        `fast_reidentify`, discord.Client.before_identify_hook stops sleeping 5 s before a
        non-initial IDENTIFY (after op 9 false).
        """
        import discord
        import discord.gateway
        import discord.http
        import yarl

        if not self.api_base:
            raise RuntimeError("enter the FakeDiscord context first")
        monkeypatch.setattr(discord.http.Route, "BASE", self.api_base)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(self.gateway_url))
        if fast_reidentify:

            async def before_identify_hook(client: Any, shard_id: int | None, *, initial: bool = False) -> None:
                return None

            monkeypatch.setattr(discord.Client, "before_identify_hook", before_identify_hook)

    @contextlib.contextmanager
    def patched(self, *, fast_reidentify: bool = True) -> Iterator[Self]:
        """`patch` as a context manager, for code without a monkeypatch fixture."""
        import pytest

        with pytest.MonkeyPatch.context() as monkeypatch:
            self.patch(monkeypatch, fast_reidentify=fast_reidentify)
            yield self

    # ----- test controls: REST ---------------------------------------------------------------------

    def calls_to(self, method: str, path_prefix: str) -> list[Json]:
        """Recorded REST calls with this HTTP method whose path (after /api/v10) starts with `path_prefix`."""
        return [c for c in self.calls if c["method"] == method.upper() and c["path"].startswith(path_prefix)]

    def fail_next(self, method: str, path_prefix: str, kind: FaultKind, times: int = 1, **kw: Any) -> None:
        """Fault the next `times` calls matching method + path prefix (checked after routing, before auth).

        "rate_limited": 429 {"message": "You are being rate limited.", "retry_after": kw retry_after
        (default 0.2), "global": kw global (default False)} with Retry-After, X-RateLimit-* and the
        `Via` header (discord.py treats a 429 without Via as a Cloudflare ban and does not retry);
        "server_error": 500 (discord.py retries after 1 s, 3 s, ...); "forbidden": 403 {"code": kw code
        (default 50013), "message": "Missing Permissions"}; code 50001 is "Missing Access" (a channel the
        bot cannot see), 50007 "Cannot send messages to this user" (DMs closed).
        """
        allowed = {"rate_limited": {"retry_after", "global"}, "server_error": set(), "forbidden": {"code"}}
        if kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {list(get_args(FaultKind))}")
        if set(kw) - allowed[kind]:
            raise ValueError(f"fault {kind!r} takes {sorted(allowed[kind])}, not {sorted(kw)}")
        if times < 1:
            raise ValueError("times must be at least 1")
        self._faults.append(_Fault(method.upper(), path_prefix, kind, times, kw))

    def add_message(self, channel_id: str, message: Json) -> Json:
        """Make a message known (for GET, replies, reactions, history); a MESSAGE_CREATE body is fine."""
        stored = {k: copy.deepcopy(v) for k, v in message.items() if k not in ("guild_id", "member")}
        stored["channel_id"] = str(channel_id)
        stored.setdefault("id", dp.snowflake())
        self._messages.setdefault(str(channel_id), {})[stored["id"]] = stored
        self._remember_user(stored.get("author"))
        return copy.deepcopy(stored)

    def get_message(self, channel_id: str, message_id: str) -> Json | None:
        found = self._messages.get(str(channel_id), {}).get(str(message_id))
        return copy.deepcopy(found) if found is not None else None

    def messages_in(self, channel_id: str) -> list[Json]:
        """The messages the fake knows in a channel, oldest first."""
        return [
            copy.deepcopy(m)
            for _, m in sorted(self._messages.get(str(channel_id), {}).items(), key=lambda kv: int(kv[0]))
        ]

    def add_channel(self, channel: Json) -> Json:
        """Make a channel known to GET /channels/{id} and message routes (a DM, or a guild channel added later)."""
        self._channels[str(channel["id"])] = copy.deepcopy(channel)
        for recipient in channel.get("recipients", []):
            self._remember_user(recipient)
        return copy.deepcopy(channel)

    def add_user(self, user: Json) -> None:
        self._remember_user(user)

    # ----- test controls: gateway ------------------------------------------------------------------

    @property
    def session_id(self) -> str | None:
        return self._session.id if self._session is not None else None

    @property
    def connected(self) -> bool:
        """Whether the current session has a live websocket."""
        return self._session is not None and self._session.conn is not None and not self._session.conn.ws.closed

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5) -> None:
        """Wait until predicate() holds; it is re-checked whenever gateway state changes (TimeoutError)."""
        assert self._changed is not None, "enter the FakeDiscord context first"
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def wait_ready(self, timeout: float = 5) -> None:
        """Wait until a client identified and was sent READY and every GUILD_CREATE."""
        await self.wait_until(lambda: self._session is not None and self._session.ready, timeout)

    async def dispatch(self, event: str, data: Json) -> int | None:
        """Send {"op": 0, "t": event, "s": next_seq, "d": data} in the current session.

        Returns the sequence number, or None when Discord would not send it to this client (its
        intents lack the one the event needs). While the client is disconnected the event is kept
        and replayed when it RESUMEs. MESSAGE_CREATE/UPDATE are blanked (content, embeds,
        attachments, components, poll) without the MESSAGE_CONTENT intent, except DMs, the bot's
        own messages and messages mentioning it. The fake also learns from what it dispatches:
        messages, DM channels, channels, threads, guilds and interactions become known to REST.
        """
        if self._session is None:
            raise RuntimeError("no gateway session: start a client and await fake.wait_ready() first")
        self._learn(event, data)
        return await self._deliver(event, data)

    async def drop_connection(self, code: int | None = None) -> None:
        """Close the current session's socket abruptly (TCP reset, no close frame), or with close `code`.

        The session stays resumable: discord.py reconnects to resume_gateway_url and RESUMEs.
        """
        _session, conn = await self._detach()
        conn.closed_by_server = True
        if code is None:
            transport = conn.request.transport
            if transport is not None:
                transport.abort()
        else:
            await self._close(conn, code)
        await self._notify()

    async def send_reconnect(self) -> None:
        """Op 7 RECONNECT: the client should reconnect and RESUME."""
        _, conn = await self._detach()
        await self._send(conn, _frame(7))

    async def send_invalid_session(self, resumable: bool) -> None:
        """Op 9 INVALID_SESSION with d=resumable; false ends the session (the client must IDENTIFY again)."""
        session, conn = await self._detach()
        if not resumable:
            self._invalidate(session)
        await self._send(conn, _frame(9, resumable))
        await self._notify()

    def zombie(self) -> None:
        """Turn the current connection into a zombie (docs/topics/gateway#heartbeat-interval): heartbeats
        get no ACK and nothing more is sent on it, dispatches included (they are kept for the RESUME).

        The client should notice the missing ACKs, close with a code other than 1000/1001, reconnect
        and RESUME; connections after that behave normally.
        """
        if self._session is None or self._session.conn is None:
            raise RuntimeError("no connected client")
        self._session.conn.zombie = True

    async def send_heartbeat_request(self) -> None:
        """Op 1 HEARTBEAT from the server: the client should heartbeat at once."""
        if self._session is None or self._session.conn is None:
            raise RuntimeError("no connected client")
        await self._send(self._session.conn, _frame(1, self._session.seq))

    # ----- gateway ---------------------------------------------------------------------------------

    async def _notify(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    async def _detach(self) -> tuple[_Session, _Conn]:
        """Unhook the current session from its socket (later dispatches are kept for the RESUME)."""
        session = self._session
        if session is None or session.conn is None:
            raise RuntimeError("no connected client")
        async with session.lock:
            conn = session.conn
            session.conn = None
        return session, conn

    def _invalidate(self, session: _Session) -> None:
        session.invalid = True
        session.conn = None
        self._sessions.pop(session.id, None)
        if self._session is session:
            self._session = None

    async def _send(self, conn: _Conn, payload: Json) -> bool:
        async with conn.lock:
            if conn.ws.closed or conn.zombie:
                return False
            raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
            try:
                if conn.compressor is not None:
                    data = conn.compressor.compress(raw.encode()) + conn.compressor.flush(zlib.Z_SYNC_FLUSH)
                    for frame in self._frames(data):
                        await conn.ws.send_bytes(frame)
                        self.frames_sent += 1
                else:
                    await conn.ws.send_str(raw)
                    self.frames_sent += 1
            except (ConnectionError, RuntimeError):
                return False
            self.gateway_sent.append(payload)
            return True

    def _frames(self, data: bytes) -> list[bytes]:
        """One compressed payload as websocket frames of at most zlib_chunk_size bytes (docs/topics/gateway#zlib-stream:
        a payload may be split across messages; only the last ends with the 00 00 ff ff suffix).

        The suffix is never split: discord.py looks for it in the last frame alone, and waits forever
        for a payload whose last frame is shorter than 4 bytes."""
        size = self.zlib_chunk_size or len(data)
        head, suffix = data[:-4], data[-4:]
        frames = [head[start : start + size] for start in range(0, len(head), size)]
        if frames and len(frames[-1]) + len(suffix) <= size:
            frames[-1] += suffix
        else:
            frames.append(suffix)
        return frames

    async def _close(self, conn: _Conn, code: int, reason: str | None = None) -> None:
        conn.closed_by_server = True
        conn.record["close_code"] = code
        await conn.ws.close(code=code, message=(reason or CLOSE_REASONS.get(code, "")).encode())

    async def _send_dispatch(self, session: _Session, event: str, data: Json) -> int:
        """Give the event the next seq, log it and send it if connected. Hold session.lock."""
        session.seq += 1
        payload = _frame(0, data, session.seq, event)
        session.log.append(payload)
        if session.conn is not None:
            await self._send(session.conn, payload)
        return session.seq

    async def _deliver(self, event: str, data: Json) -> int | None:
        session = self._session
        if session is None:
            return None
        filtered = self._filter_for(event, data, session.intents)
        if filtered is None:
            return None
        async with session.lock:
            return await self._send_dispatch(session, event, filtered)

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        record: Json = {
            "path": request.path,
            "query": dict(request.query),
            "at": time.monotonic(),
            "close_code": None,
            "closed_by": None,
        }
        compress = request.query.get("compress")
        conn = _Conn(ws=ws, request=request, record=record, compress=compress)
        if compress == "zlib-stream":
            conn.compressor = zlib.compressobj()
        # "zstd-stream" is answered with plain text frames, which discord.py also accepts.
        self.connections.append(record)
        self._conns.append(conn)
        await self._notify()
        try:
            if request.query.get("v") not in ("9", "10"):
                await self._close(conn, 4012)
            elif request.query.get("encoding", "json") != "json":
                await self._close(conn, 4002, "This fake speaks encoding=json only.")
            else:
                await self._send(
                    conn, _frame(10, {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": _trace("hello")})
                )
                async for frame in ws:
                    if frame.type == WSMsgType.TEXT:
                        await self._on_frame(conn, frame.data)
                    elif frame.type == WSMsgType.BINARY:
                        await self._close(conn, 4002)
                    if ws.closed:
                        break
        finally:
            if record["close_code"] is None:  # the code of whoever closed first
                record["close_code"] = ws.close_code
            record["closed_by"] = "server" if conn.closed_by_server else "client"
            self._conns.remove(conn)
            session = conn.session
            if session is not None:
                async with session.lock:
                    if session.conn is conn:
                        session.conn = None
                # A client closing with 1000/1001 ends its session (docs: Initiating a Disconnect).
                if not conn.closed_by_server and ws.close_code in (1000, 1001):
                    self._invalidate(session)
            await self._notify()
        return ws

    async def _on_frame(self, conn: _Conn, raw: str) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            msg = None
        if not isinstance(msg, dict) or not isinstance(msg.get("op"), int):
            await self._close(conn, 4002)
            return
        self.gateway_received.append(msg)
        op, d = msg["op"], msg.get("d")
        if op == 1:
            self.heartbeats += 1
            if conn.zombie:
                self.acks_withheld += 1
            else:
                await self._send(conn, _frame(11))
            await self._notify()
        elif op == 2:
            await self._identify(conn, d)
        elif op == 6:
            await self._resume(conn, d)
        elif op in (3, 4, 8) and conn.session is None:
            await self._close(conn, 4003)
        elif op == 3:
            self.presence_updates.append(d)
        elif op == 4:
            pass  # voice state update: not modelled
        elif op == 8:
            await self._request_members(conn, d)
        else:
            await self._close(conn, 4001)

    def _token_ok(self, token: Any) -> bool:
        return self.token is None or token == self.token

    async def _identify(self, conn: _Conn, d: Any) -> None:
        if conn.session is not None:
            await self._close(conn, 4005)
            return
        if not isinstance(d, dict) or not isinstance(d.get("properties"), dict):
            await self._close(conn, 4002)
            return
        if not self._token_ok(d.get("token")):
            await self._close(conn, 4004)
            return
        intents = d.get("intents")
        if not isinstance(intents, int) or isinstance(intents, bool) or intents < 0 or intents & ~Intents.ALL:
            await self._close(conn, 4013)
            return
        if intents & Intents.PRIVILEGED & ~self.enabled_privileged_intents:
            await self._close(conn, 4014)
            return
        if self.require_message_content and not intents & Intents.MESSAGE_CONTENT:
            await self._close(conn, 4014)
            return
        shard = d.get("shard")
        if shard is not None and not (
            isinstance(shard, list)
            and len(shard) == 2
            and all(isinstance(x, int) for x in shard)
            and 0 <= shard[0] < shard[1]
        ):
            await self._close(conn, 4010)
            return
        self.identifies += 1
        session = _Session(id=uuid.uuid4().hex, intents=intents, identify=copy.deepcopy(d), shard=shard)
        self._sessions[session.id] = session
        self._session = session
        async with session.lock:
            session.conn, conn.session = conn, session
            ready: Json = {
                "v": dp.API_VERSION,
                "user_settings": {},
                "user": copy.deepcopy(self.bot_user),
                "guilds": [{"id": g["id"], "unavailable": True} for g in self.guilds],
                "session_id": session.id,
                "session_type": "normal",
                "resume_gateway_url": self.resume_gateway_url,
                "application": {"id": self.application_id, "flags": self._application_flags()},
                "private_channels": [],
                "presences": [],
                "relationships": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": ["rotterdam", "london", "frankfurt"],
                "auth": {},
                "_trace": _trace("ready"),
            }
            if shard is not None:
                ready["shard"] = shard
            await self._send_dispatch(session, "READY", ready)
            for guild in self.guilds:
                body = self._filter_for("GUILD_CREATE", guild, intents)
                if body is not None:
                    await self._send_dispatch(session, "GUILD_CREATE", body)
            session.ready = True
        await self._notify()

    async def _resume(self, conn: _Conn, d: Any) -> None:
        if conn.session is not None:
            await self._close(conn, 4005)
            return
        if not isinstance(d, dict):
            await self._close(conn, 4002)
            return
        if not self._token_ok(d.get("token")):
            await self._close(conn, 4004)
            return
        session = self._sessions.get(str(d.get("session_id")))
        seq = d.get("seq")
        if session is None or session.invalid or (isinstance(seq, int) and seq > session.seq):
            self.rejected_resumes += 1
            await self._send(conn, _frame(9, False))
            await self._notify()
            return
        async with session.lock:
            stale = session.conn
            session.conn, conn.session = conn, session
            self.resumes += 1
            last = seq if isinstance(seq, int) else 0
            for payload in session.log:
                if payload["s"] > last and payload["t"] not in ("READY", "RESUMED"):
                    self.replayed += 1
                    await self._send(conn, payload)
            await self._send_dispatch(session, "RESUMED", {"_trace": _trace("resume")})
        if stale is not None and stale is not conn and not stale.ws.closed:
            stale.session = None
            await self._close(stale, 4000, "Session resumed elsewhere.")
        await self._notify()

    async def _request_members(self, conn: _Conn, d: Any) -> None:
        if not isinstance(d, dict) or conn.session is None:
            await self._close(conn, 4002)
            return
        guild = self._guild(str(d.get("guild_id")))
        members = copy.deepcopy(guild["members"]) if guild is not None else []
        user_ids = [str(u) for u in d.get("user_ids") or []]
        query = str(d.get("query") or "").lower()
        if user_ids:
            members = [m for m in members if m["user"]["id"] in user_ids]
        elif query:
            members = [m for m in members if m["user"]["username"].lower().startswith(query)]
        limit = d.get("limit") or 0
        if limit:
            members = members[:limit]
        chunk: Json = {
            "guild_id": str(d.get("guild_id")),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [u for u in user_ids if u not in {m["user"]["id"] for m in members}],
        }
        if d.get("presences"):
            chunk["presences"] = []
        if d.get("nonce") is not None:
            chunk["nonce"] = d["nonce"]
        async with conn.session.lock:
            await self._send_dispatch(conn.session, "GUILD_MEMBERS_CHUNK", chunk)

    def _application_flags(self) -> int:
        flags = _APPLICATION_COMMAND_BADGE if self.commands else 0
        for intent, flag in _APP_FLAG_FOR_INTENT.items():
            if self.enabled_privileged_intents & intent:
                flags |= flag
        return flags

    def _filter_for(self, event: str, data: Json, intents: int) -> Json | None:
        """What Discord would send this client for the event, or None if its intents exclude it."""
        in_guild = data.get("guild_id") is not None or event in ("GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE")
        needed = (_GUILD_INTENT if in_guild else _DM_INTENT).get(event)
        if needed is not None and not intents & needed:
            return None
        if event == "GUILD_CREATE" and not intents & Intents.GUILD_PRESENCES:
            # docs: without GUILD_PRESENCES, members and presences hold only the bot (and voice users).
            body = copy.deepcopy(data)
            body["members"] = [m for m in body.get("members", []) if m.get("user", {}).get("id") == self.bot_user["id"]]
            body["presences"] = []
            return body
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE") and not intents & Intents.MESSAGE_CONTENT:
            author = (data.get("author") or {}).get("id")
            mentioned = any(u.get("id") == self.bot_user["id"] for u in data.get("mentions") or [])
            if data.get("guild_id") is not None and author != self.bot_user["id"] and not mentioned:
                body = copy.deepcopy(data)
                for key in ("content", "embeds", "attachments", "components"):
                    if key in body:
                        body[key] = "" if key == "content" else []
                body.pop("poll", None)
                return body
        return data

    def _learn(self, event: str, data: Json) -> None:
        """Keep what a dispatched event tells the REST side."""
        if event == "MESSAGE_CREATE":
            channel_id = str(data["channel_id"])
            if data.get("guild_id") is None and self._channel(channel_id) is None and data.get("author"):
                self.add_channel(dp.dm_channel(channel_id, data["author"]))
            self.add_message(channel_id, data)
            for mentioned in data.get("mentions") or []:
                self._remember_user({k: v for k, v in mentioned.items() if k != "member"})
        elif event == "MESSAGE_UPDATE":
            stored = self._messages.get(str(data.get("channel_id")), {}).get(str(data.get("id")))
            if stored is not None:
                stored.update({k: copy.deepcopy(v) for k, v in data.items() if k not in ("guild_id", "member")})
        elif event == "MESSAGE_DELETE":
            self._messages.get(str(data.get("channel_id")), {}).pop(str(data.get("id")), None)
        elif event in ("CHANNEL_CREATE", "CHANNEL_UPDATE", "THREAD_CREATE", "THREAD_UPDATE"):
            self.add_channel({k: v for k, v in data.items() if k != "newly_created"})
        elif event == "GUILD_CREATE" and not data.get("unavailable"):
            self.guilds = [g for g in self.guilds if g["id"] != data["id"]] + [copy.deepcopy(data)]
        elif event == "INTERACTION_CREATE":
            self._check_deliverable(data)
            if str(data["id"]) in self.interactions:
                return  # a replay: the interaction (and whether it was answered) is already known
            channel_id = str(data.get("channel_id") or (data.get("channel") or {}).get("id"))
            owners = data.get("authorizing_integration_owners")
            if owners is not None and "0" not in owners and data.get("context") != 1:  # the bot's own DM is its
                self.foreign_channels.add(channel_id)
            self.interactions[str(data["id"])] = {
                "id": str(data["id"]),
                "type": data["type"],
                "token": data["token"],
                "payload": copy.deepcopy(data),
                "channel_id": str(data.get("channel_id") or (data.get("channel") or {}).get("id")),
                "guild_id": data.get("guild_id"),
                "response_type": None,
                "response": None,
                "original_message_id": None,
                "followup_ids": [],
                "created_at": self.clock.now(),
            }
            invoker = data.get("user") or (data.get("member") or {}).get("user")
            self._remember_user(invoker)
            message = data.get("message")
            if message is not None and self.get_message(message["channel_id"], message["id"]) is None:
                self.add_message(message["channel_id"], message)

    def _check_deliverable(self, data: Json) -> None:
        """Raise ValueError for a command interaction Discord would not deliver: the command registered
        (globally, or in data.guild_id) but not for this context (`contexts`, null meaning all) or not
        through any install that authorized it (`integration_types` against the owners' keys)."""
        if data.get("type") not in (2, 4) or not isinstance(data.get("data"), dict):
            return
        command_data = data["data"]
        guild_id = command_data.get("guild_id")
        scope = self.guild_commands.get(str(guild_id), []) if guild_id else self.commands
        kind = int(command_data.get("type") or 1)
        command = next((c for c in scope if c["name"] == command_data.get("name") and c["type"] == kind), None)
        if command is None:
            return
        context = data.get("context")
        owners = {int(key) for key in (data.get("authorizing_integration_owners") or {})}
        if guild_id:
            allowed_contexts, allowed_installs = [0], [0]  # a guild command lives in its guild only
        else:
            allowed_contexts = command["contexts"] if command["contexts"] is not None else list(CONTEXT_TYPES)
            allowed_installs = command["integration_types"]
        if context is not None and context not in allowed_contexts:
            raise ValueError(
                f"Discord would not deliver /{command['name']} in context {context}: it is registered for {allowed_contexts}"
            )
        if owners and not owners & set(allowed_installs):
            raise ValueError(
                f"Discord would not deliver /{command['name']} through installs {sorted(owners)}: it is registered for {allowed_installs}"
            )
        if context == 2 and 1 not in owners:
            raise ValueError("a PRIVATE_CHANNEL interaction always comes through the user install (owners key \"1\")")

    # ----- REST plumbing ---------------------------------------------------------------------------

    def _build_routes(self) -> list[_Route]:
        S = r"(\d+)"
        table: list[tuple[str, str, Callable[..., Awaitable[web.Response]], bool]] = [
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", "/users/@me", self._get_me, True),
            ("POST", "/users/@me/channels", self._create_dm, True),
            ("GET", f"/users/{S}", self._get_user, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/applications/@me", self._get_application, True),
            ("GET", f"/guilds/{S}", self._get_guild, True),
            ("GET", f"/guilds/{S}/members/{S}", self._get_member, True),
            ("GET", f"/channels/{S}", self._get_channel, True),
            ("GET", f"/channels/{S}/messages", self._history, True),
            ("POST", f"/channels/{S}/messages", self._create_message, True),
            ("GET", f"/channels/{S}/messages/{S}", self._get_message, True),
            ("PATCH", f"/channels/{S}/messages/{S}", self._edit_message, True),
            ("DELETE", f"/channels/{S}/messages/{S}", self._delete_message, True),
            ("POST", f"/channels/{S}/typing", self._typing, True),
            ("PUT", f"/channels/{S}/messages/{S}/reactions/([^/]+)/@me", self._add_reaction, True),
            ("DELETE", f"/channels/{S}/messages/{S}/reactions/([^/]+)/@me", self._remove_reaction, True),
            ("POST", f"/channels/{S}/messages/{S}/threads", self._start_thread, True),
            ("GET", f"/applications/{S}/commands", self._get_commands, True),
            ("PUT", f"/applications/{S}/commands", self._put_commands, True),
            ("GET", f"/applications/{S}/guilds/{S}/commands", self._get_guild_commands, True),
            ("PUT", f"/applications/{S}/guilds/{S}/commands", self._put_guild_commands, True),
            ("POST", f"/interactions/{S}/([^/]+)/callback", self._interaction_callback, False),
            ("POST", f"/webhooks/{S}/([^/]+)", self._webhook_execute, False),
            ("GET", f"/webhooks/{S}/([^/]+)/messages/(@original|\\d+)", self._webhook_get, False),
            ("PATCH", f"/webhooks/{S}/([^/]+)/messages/(@original|\\d+)", self._webhook_edit, False),
            ("DELETE", f"/webhooks/{S}/([^/]+)/messages/(@original|\\d+)", self._webhook_delete, False),
        ]
        routes = []
        for method, template, handler, auth in table:
            bucket = hashlib.md5(f"{method} {template}".encode()).hexdigest()
            shape = re.sub(r"\((?:[^()]|\([^()]*\))*\)", "{}", template)  # "/channels/{}/messages"
            limit = None if template.startswith("/interactions/") else ROUTE_LIMITS.get((method, shape), DEFAULT_ROUTE_LIMIT)
            routes.append(_Route(method, re.compile(f"^{template}$"), handler, auth, bucket, limit, _majors(shape)))
        return routes

    async def _read_body(self, request: web.Request) -> tuple[Any, list[Json], bool]:
        """(parsed JSON or payload_json, uploaded files, invalid JSON?)."""
        files: list[Json] = []
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            body: Any = None
            for name, value in form.items():
                if name == "payload_json":
                    text = value.decode() if isinstance(value, (bytes, bytearray)) else str(value)
                    try:
                        body = json.loads(text)
                    except ValueError:
                        return None, files, True
                elif isinstance(value, web.FileField):
                    data = value.file.read()
                    files.append(
                        {
                            "field": name,
                            "filename": value.filename,
                            "content_type": value.content_type,
                            "size": len(data),
                        }
                    )
            return body, files, False
        raw = await request.read()
        if not raw:
            return None, files, False
        try:
            return json.loads(raw), files, False
        except ValueError:
            return None, files, True

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method and path.startswith(fault.path_prefix):
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _fault_response(fault: _Fault, bucket: str) -> web.Response:
        if fault.kind == "rate_limited":
            retry_after = float(fault.options.get("retry_after", 0.2))
            is_global = bool(fault.options.get("global", False))
            headers = {
                "Retry-After": str(max(0, math.ceil(retry_after))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                "X-RateLimit-Bucket": bucket,
                "X-RateLimit-Scope": "global" if is_global else "user",
                "Via": "1.1 google",
            }
            if is_global:
                headers["X-RateLimit-Global"] = "true"
            body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
            return _json_response(body, status=429, headers=headers)
        if fault.kind == "forbidden":
            code = int(fault.options.get("code", 50013))
            body = {"message": FORBIDDEN_MESSAGES.get(code, "Missing Permissions"), "code": code}
            return _json_response(body, status=403, headers={"Via": "1.1 google"})
        return _json_response(
            {"message": "500: Internal Server Error", "code": 0}, status=500, headers={"Via": "1.1 google"}
        )

    def _match(self, method: str, path: str) -> tuple[_Route | None, tuple[str, ...], bool]:
        """(route, path groups, path known for another method?)."""
        other_method = False
        for route in self._routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, tuple(unquote(g) for g in found.groups()), False
            other_method = True
        return None, (), other_method

    async def _api(self, request: web.Request) -> web.StreamResponse:
        """Record the call, answer it, note the status on the record and wake `wait_until` callers."""
        call: Json = {}
        try:
            response = await self._answer(request, call)
            if call:
                call["status"] = response.status
                call["response_headers"] = dict(response.headers)
            return response
        finally:
            await self._notify()

    async def _answer(self, request: web.Request, call: Json) -> web.Response:
        tail = "/" + request.match_info["tail"]
        versioned = re.match(r"^/v\d+(/.*)?$", tail)
        path = (versioned.group(1) or "/") if versioned else tail
        body, files, bad_json = await self._read_body(request)
        call.update(
            method=request.method,
            path=path,
            query=dict(request.query),
            json=body,
            headers={key.lower(): value for key, value in request.headers.items()},
            at=time.monotonic(),
        )
        if files:
            call["files"] = files
        self.calls.append(call)
        route, groups, other_method = self._match(request.method, path)
        if route is None:
            if other_method:
                return _json_response({"message": "405: Method Not Allowed", "code": 0}, status=405)
            return _json_response({"message": "404: Not Found", "code": 0}, status=404)
        fault = self._take_fault(request.method, path)
        if fault is not None:
            return self._fault_response(fault, route.bucket)
        headers = {"Via": "1.1 google"}
        if route.auth:
            if not self.rate_limits:  # polite: a bucket that never runs out
                headers.update(
                    {
                        "X-RateLimit-Limit": "5",
                        "X-RateLimit-Remaining": "4",
                        "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
                        "X-RateLimit-Reset-After": "1.000",
                        "X-RateLimit-Bucket": route.bucket,
                    }
                )
            authorization = request.headers.get("Authorization", "")
            token = authorization[len("Bot ") :] if authorization.startswith("Bot ") else None
            if token is None or not self._token_ok(token):
                return _json_response({"message": "401: Unauthorized", "code": 0}, status=401, headers=headers)
        if self.rate_limits:
            refused = self._take_limits(route, groups, request.headers.get("Authorization", ""), headers)
            if refused is not None:
                self.rate_limited.append({"method": request.method, "path": path, **refused})
                return self._too_many(refused, headers)
        if bad_json:
            return _json_response({"message": "The request body contains invalid JSON.", "code": 50109}, status=400)
        try:
            response = await route.handler(request, call, *groups)
        except ApiError as error:
            return _json_response(error.body, status=error.status, headers=headers)
        response.headers.update(headers)
        return response

    def _take_limits(self, route: _Route, groups: tuple[str, ...], authorization: str, headers: dict[str, str]) -> Json | None:
        """Count the request against the global limit and its route bucket; the refusal if either is spent.

        Adds the bucket's X-RateLimit-* headers to `headers`. Interaction callbacks and webhook routes
        (no bot token) are not bound to the global limit (docs/topics/rate-limits#global-rate-limit).
        """
        now = self.clock.now()
        if route.auth:
            overall = self._global_windows.setdefault(authorization, _Window(GLOBAL_LIMIT, 1.0))
            if not overall.take(now):
                return {"scope": "global", "bucket": None, "retry_after": round(overall.reset_after(now), 3)}
        if route.limit is None:
            return None
        key = ":".join([route.bucket, *(groups[i] for i in route.majors)])
        window = self._windows.setdefault(key, _Window(*route.limit))
        taken = window.take(now)
        headers.update(window.headers(now, route.bucket))
        if taken:
            return None
        return {"scope": "user", "bucket": route.bucket, "retry_after": round(window.reset_after(now), 3)}

    @staticmethod
    def _too_many(refused: Json, headers: dict[str, str]) -> web.Response:
        """429 as docs/topics/rate-limits#exceeding-a-rate-limit shows it (the global one without bucket headers)."""
        retry_after = refused["retry_after"]
        is_global = refused["scope"] == "global"
        out = {"Via": headers["Via"]} if is_global else dict(headers)
        out.update({"Retry-After": str(max(1, math.ceil(retry_after))), "X-RateLimit-Scope": refused["scope"]})
        if is_global:
            out["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        return _json_response(body, status=429, headers=out)

    # ----- lookups ---------------------------------------------------------------------------------

    def _guild(self, guild_id: str) -> Json | None:
        return next((g for g in self.guilds if g["id"] == str(guild_id)), None)

    def _channel(self, channel_id: str) -> Json | None:
        """A channel object as REST returns it (guild channels with guild_id)."""
        if channel_id in self._channels:
            return copy.deepcopy(self._channels[channel_id])
        for guild in self.guilds:
            for channel in [*guild.get("channels", []), *guild.get("threads", [])]:
                if channel["id"] == channel_id:
                    return {**copy.deepcopy(channel), "guild_id": guild["id"]}
        return None

    def _require_channel(self, channel_id: str) -> Json:
        if channel_id in self.foreign_channels and channel_id not in self._channels:
            raise ApiError(403, "Missing Access", 50001)  # the bot is not a member: user install only
        channel = self._channel(channel_id)
        if channel is None:
            raise unknown("Channel", 10003)
        return channel

    def _require_message(self, channel_id: str, message_id: str) -> Json:
        self._require_channel(channel_id)
        stored = self._messages.get(channel_id, {}).get(message_id)
        if stored is None:
            raise unknown("Message", 10008)
        return stored

    def _remember_user(self, user: Json | None) -> None:
        if isinstance(user, dict) and user.get("id") and user.get("discriminator") != "0000":
            self._users.setdefault(str(user["id"]), copy.deepcopy(user))

    def _user(self, user_id: str) -> Json | None:
        if user_id == self.bot_user["id"]:
            return self._bot_author()
        if user_id in self._users:
            return copy.deepcopy(self._users[user_id])
        for guild in self.guilds:
            for m in guild.get("members", []):
                if m["user"]["id"] == user_id:
                    return copy.deepcopy(m["user"])
        return None

    def _bot_author(self) -> Json:
        return {**dp.user(self.bot_user["id"], self.bot_user["username"], bot=True), **copy.deepcopy(self.bot_user)}

    def _bot_member(self, guild_id: str) -> Json:
        guild = self._guild(guild_id)
        for m in (guild or {}).get("members", []):
            if m["user"]["id"] == self.bot_user["id"]:
                return {k: copy.deepcopy(v) for k, v in m.items() if k != "user"}
        return dp.member(self.bot_user["id"], with_user=False)

    def _gateway_message(self, message: Json) -> Json:
        """The REST message plus guild_id/member, as MESSAGE_CREATE/UPDATE carry it."""
        body = copy.deepcopy(message)
        channel = self._channel(message["channel_id"]) or {}
        if channel.get("guild_id") is not None:
            body["guild_id"] = channel["guild_id"]
            if message.get("webhook_id") is None and message["author"]["id"] == self.bot_user["id"]:
                body["member"] = self._bot_member(channel["guild_id"])
        return body

    async def _echo(self, event: str, data: Json) -> None:
        if str(data.get("channel_id")) in self.foreign_channels:
            return  # the bot is not in the channel, so the gateway tells it nothing about it
        if self.echo_bot_messages:
            await self._deliver(event, data)

    # ----- message content -------------------------------------------------------------------------

    def _validate_content(self, body: Json) -> None:
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            raise _form_error(["content"], "STRING_TYPE_CONVERT", "Could not interpret the value as string.")
        if isinstance(content, str) and len(content) > CONTENT_LIMIT:
            raise _form_error(["content"], "BASE_TYPE_MAX_LENGTH", f"Must be {CONTENT_LIMIT} or fewer in length.")
        embeds = body.get("embeds")
        if embeds is not None and (not isinstance(embeds, list) or len(embeds) > EMBED_LIMIT):
            raise _form_error(["embeds"], "BASE_TYPE_MAX_LENGTH", f"Must be {EMBED_LIMIT} or fewer in length.")
        for index, embed in enumerate(embeds or []):
            if not isinstance(embed, dict):
                raise _form_error(["embeds", index], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            if len(str(embed.get("description") or "")) > 4096:
                raise _form_error(
                    ["embeds", index, "description"], "BASE_TYPE_MAX_LENGTH", "Must be 4096 or fewer in length."
                )
            if len(str(embed.get("title") or "")) > 256:
                raise _form_error(["embeds", index, "title"], "BASE_TYPE_MAX_LENGTH", "Must be 256 or fewer in length.")
        components = body.get("components")
        if components is not None and (not isinstance(components, list) or len(components) > 40):
            raise _form_error(["components"], "BASE_TYPE_MAX_LENGTH", "Must be 40 or fewer in length.")

    def _apply_content(self, message: Json, body: Json, files: list[Json]) -> None:
        """Content, embeds, components, attachments, flags and mentions from a create/edit body."""
        if "content" in body:
            message["content"] = body["content"] or ""
        if "embeds" in body or "embed" in body:
            embeds = body.get("embeds") if "embeds" in body else ([body["embed"]] if body.get("embed") else [])
            message["embeds"] = [{"type": "rich", **e, "content_scan_version": 0} for e in embeds or []]
        if "components" in body:
            message["components"] = copy.deepcopy(body["components"] or [])
        if "attachments" in body or files:
            kept = [
                a
                for a in message.get("attachments", [])
                if a["id"] in {str(x.get("id")) for x in body.get("attachments") or []}
            ]
            for upload in files:
                attachment_id = dp.snowflake()
                url = f"{self.root}/attachments/{message['channel_id']}/{attachment_id}/{upload['filename']}"
                kept.append(
                    {
                        "id": attachment_id,
                        "filename": upload["filename"],
                        "size": upload["size"],
                        "url": url,
                        "proxy_url": url,
                        "content_type": upload["content_type"],
                    }
                )
            message["attachments"] = kept
        if "flags" in body and body["flags"] is not None:
            message["flags"] = (message.get("flags", 0) & ~_SENDABLE_FLAGS) | (int(body["flags"]) & _SENDABLE_FLAGS)
        allowed = body.get("allowed_mentions")
        if "content" in body or "allowed_mentions" in body:
            content = message.get("content", "")
            parse = ["users", "roles", "everyone"] if allowed is None else list(allowed.get("parse") or [])
            users = {str(u) for u in (allowed or {}).get("users") or []}
            roles = {str(r) for r in (allowed or {}).get("roles") or []}
            mentions = []
            for user_id in dict.fromkeys(_MENTION.findall(content)):
                if "users" in parse or user_id in users:
                    found = self._user(user_id)
                    if found is not None:
                        mentions.append(found)
            replied = message.get("referenced_message")
            if replied and (allowed is None or allowed.get("replied_user")):
                author = replied.get("author") or {}
                if author.get("id") and all(m["id"] != author["id"] for m in mentions):
                    mentions.append(copy.deepcopy(author))
            message["mentions"] = mentions
            message["mention_roles"] = [
                r for r in dict.fromkeys(_ROLE_MENTION.findall(content)) if "roles" in parse or r in roles
            ]
            message["mention_everyone"] = "everyone" in parse and ("@everyone" in content or "@here" in content)

    def _has_body(self, message: Json) -> bool:
        return bool(
            message.get("content")
            or message.get("embeds")
            or message.get("components")
            or message.get("attachments")
            or message.get("sticker_items")
            or message.get("poll")
        )

    def _new_bot_message(self, channel_id: str, body: Json, files: list[Json], **extra: Any) -> Json:
        self._validate_content(body)
        message = dp.message("", channel_id=channel_id, author=self._bot_author(), message_id=dp.snowflake())
        message.update(extra)
        if body.get("nonce") is not None:
            message["nonce"] = body["nonce"]
        if body.get("tts"):
            message["tts"] = True
        if body.get("sticker_ids"):
            message["sticker_items"] = [
                {"id": str(s), "name": "sticker", "format_type": 1} for s in body["sticker_ids"]
            ]
        if body.get("poll"):
            message["poll"] = copy.deepcopy(body["poll"])
        self._apply_content(message, {"content": "", **body}, files)
        return message

    def _store(self, message: Json) -> Json:
        self._messages.setdefault(message["channel_id"], {})[message["id"]] = message
        for guild in self.guilds:
            for channel in [*guild.get("channels", []), *guild.get("threads", [])]:
                if channel["id"] == message["channel_id"]:
                    channel["last_message_id"] = message["id"]
        if message["channel_id"] in self._channels:
            self._channels[message["channel_id"]]["last_message_id"] = message["id"]
        return message

    # ----- REST endpoints --------------------------------------------------------------------------

    async def _get_gateway(self, request: web.Request, call: Json) -> web.Response:
        return _json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request, call: Json) -> web.Response:
        return _json_response(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": max(0, 1000 - self.identifies),
                    "reset_after": 14_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _get_me(self, request: web.Request, call: Json) -> web.Response:
        me = {
            **dp.user(self.bot_user["id"], self.bot_user["username"], bot=True),
            "verified": True,
            "mfa_enabled": False,
            "locale": "en-US",
            "email": None,
            "bio": "",
            **copy.deepcopy(self.bot_user),
        }
        return _json_response(me)

    async def _get_user(self, request: web.Request, call: Json, user_id: str) -> web.Response:
        found = self._user(user_id)
        if found is None:
            raise unknown("User", 10013)
        return _json_response(found)

    async def _get_application(self, request: web.Request, call: Json) -> web.Response:
        owner = self._user(dp.OWNER_ID) or dp.user(dp.OWNER_ID)
        return _json_response(
            {
                "id": self.application_id,
                "name": self.bot_user["username"],
                "icon": None,
                "description": "A professional, personable advice bot.",
                "summary": "",
                "type": None,
                "hook": True,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": self._application_flags(),
                "owner": owner,
                "team": None,
                "bot": self._bot_author(),
                "redirect_uris": [],
                "interactions_endpoint_url": None,  # set -> discord.py warns and gets no interactions
                "role_connections_verification_url": None,
                "event_webhooks_url": None,
                "event_webhooks_status": 1,
                "tags": [],
                "install_params": {"scopes": ["bot", "applications.commands"], "permissions": str(dp.BOT_PERMISSIONS)},
                "integration_types_config": {str(kind): {} for kind in self.install_types},
                "approximate_guild_count": len(self.guilds),
                "approximate_user_install_count": 0,
                "is_monetized": False,
                "storefront_available": False,
                "rpc_origins": [],
            }
        )

    async def _get_guild(self, request: web.Request, call: Json, guild_id: str) -> web.Response:
        guild = self._guild(guild_id)
        if guild is None:
            raise unknown("Guild", 10004)
        extras = {
            "joined_at",
            "large",
            "unavailable",
            "lazy",
            "member_count",
            "voice_states",
            "members",
            "channels",
            "threads",
            "presences",
            "stage_instances",
            "guild_scheduled_events",
            "soundboard_sounds",
            "embedded_activities",
            "activity_instances",
            "application_command_counts",
            "version",
        }
        out = {k: copy.deepcopy(v) for k, v in guild.items() if k not in extras}
        if request.query.get("with_counts") in ("true", "True", "1"):
            out["approximate_member_count"] = guild.get("member_count", len(guild.get("members", [])))
            out["approximate_presence_count"] = 0
        return _json_response(out)

    async def _get_member(self, request: web.Request, call: Json, guild_id: str, user_id: str) -> web.Response:
        guild = self._guild(guild_id)
        if guild is None:
            raise unknown("Guild", 10004)
        found = next((m for m in guild.get("members", []) if m["user"]["id"] == user_id), None)
        if found is None:
            raise unknown("Member", 10007)
        return _json_response(found)

    async def _get_channel(self, request: web.Request, call: Json, channel_id: str) -> web.Response:
        return _json_response(self._require_channel(channel_id))

    async def _create_dm(self, request: web.Request, call: Json) -> web.Response:
        body = call["json"] or {}
        recipient_id = str(body.get("recipient_id") or "")
        if not recipient_id.isdigit():
            raise _form_error(["recipient_id"], "NUMBER_TYPE_COERCE", f'Value "{recipient_id}" is not snowflake.')
        for channel in self._channels.values():
            if channel.get("type") == 1 and any(r["id"] == recipient_id for r in channel.get("recipients", [])):
                return _json_response(copy.deepcopy(channel))
        recipient = self._user(recipient_id) or dp.user(recipient_id)
        return _json_response(self.add_channel(dp.dm_channel(dp.snowflake(), recipient)))

    async def _history(self, request: web.Request, call: Json, channel_id: str) -> web.Response:
        self._require_channel(channel_id)
        raw_limit = request.query.get("limit", "50")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            raise _form_error(["limit"], "NUMBER_TYPE_MAX", "int value should be between 1 and 100.")
        limit = int(raw_limit)
        ordered = sorted(self._messages.get(channel_id, {}).values(), key=lambda m: int(m["id"]), reverse=True)
        if "before" in request.query:
            ordered = [m for m in ordered if int(m["id"]) < int(request.query["before"])][:limit]
        elif "after" in request.query:
            ordered = [m for m in ordered if int(m["id"]) > int(request.query["after"])][-limit:]
        elif "around" in request.query:
            pivot = int(request.query["around"])
            newer = [m for m in ordered if int(m["id"]) >= pivot][-(limit // 2 + limit % 2) :]
            older = [m for m in ordered if int(m["id"]) < pivot][: limit // 2]
            ordered = newer + older
        else:
            ordered = ordered[:limit]
        return _json_response(copy.deepcopy(ordered))

    async def _create_message(self, request: web.Request, call: Json, channel_id: str) -> web.Response:
        channel = self._require_channel(channel_id)
        body = call["json"] or {}
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid Form Body", 50035)
        extra: Json = {}
        reference = body.get("message_reference")
        if reference:
            ref_channel = str(reference.get("channel_id") or channel_id)
            ref_id = str(reference.get("message_id"))
            referenced = self._messages.get(ref_channel, {}).get(ref_id)
            if referenced is None and reference.get("fail_if_not_exists", True):
                raise _form_error(["message_reference"], "REPLIES_UNKNOWN_MESSAGE", "Unknown message")
            if referenced is not None:
                extra["type"] = 19
                extra["message_reference"] = {
                    "type": reference.get("type", 0),
                    "channel_id": ref_channel,
                    "message_id": ref_id,
                    **({"guild_id": channel["guild_id"]} if channel.get("guild_id") else {}),
                }
                extra["referenced_message"] = copy.deepcopy(referenced)
        message = self._new_bot_message(channel_id, body, call.get("files", []), **extra)
        if not self._has_body(message):
            raise ApiError(400, "Cannot send an empty message", 50006)
        self._store(message)
        await self._echo("MESSAGE_CREATE", self._gateway_message(message))
        return _json_response(copy.deepcopy(message))

    async def _get_message(self, request: web.Request, call: Json, channel_id: str, message_id: str) -> web.Response:
        return _json_response(copy.deepcopy(self._require_message(channel_id, message_id)))

    async def _edit_message(self, request: web.Request, call: Json, channel_id: str, message_id: str) -> web.Response:
        message = self._require_message(channel_id, message_id)
        if message["author"]["id"] != self.bot_user["id"] or message.get("webhook_id"):
            raise ApiError(403, "Cannot edit a message authored by another user", 50005)
        body = call["json"] or {}
        self._validate_content(body)
        edited = copy.deepcopy(message)
        self._apply_content(edited, body, call.get("files", []))
        if not self._has_body(edited):
            raise ApiError(400, "Cannot send an empty message", 50006)
        edited["edited_timestamp"] = dp.iso_timestamp()
        message.clear()
        message.update(edited)
        await self._echo("MESSAGE_UPDATE", self._gateway_message(message))
        return _json_response(copy.deepcopy(message))

    async def _delete_message(self, request: web.Request, call: Json, channel_id: str, message_id: str) -> web.Response:
        self._require_message(channel_id, message_id)
        channel = self._channel(channel_id) or {}
        del self._messages[channel_id][message_id]
        deleted: Json = {"id": message_id, "channel_id": channel_id}
        if channel.get("guild_id"):
            deleted["guild_id"] = channel["guild_id"]
        await self._echo("MESSAGE_DELETE", deleted)
        return web.Response(status=204)

    async def _typing(self, request: web.Request, call: Json, channel_id: str) -> web.Response:
        self._require_channel(channel_id)
        return web.Response(status=204)

    @staticmethod
    def _emoji(raw: str) -> Json:
        name, _, emoji_id = raw.partition(":")
        return {"id": emoji_id or None, "name": name}

    async def _add_reaction(
        self, request: web.Request, call: Json, channel_id: str, message_id: str, emoji: str
    ) -> web.Response:
        message = self._require_message(channel_id, message_id)
        parsed = self._emoji(emoji)
        reactions = message.setdefault("reactions", [])
        reaction = next((r for r in reactions if r["emoji"] == parsed), None)
        if reaction is None:
            reaction = {
                "emoji": parsed,
                "count": 0,
                "count_details": {"burst": 0, "normal": 0},
                "burst_colors": [],
                "me": False,
                "me_burst": False,
                "burst_me": False,
                "burst_count": 0,
            }
            reactions.append(reaction)
        if not reaction["me"]:
            reaction["me"] = True
            reaction["count"] += 1
            reaction["count_details"]["normal"] += 1
            channel = self._channel(channel_id) or {}
            event: Json = {
                "user_id": self.bot_user["id"],
                "channel_id": channel_id,
                "message_id": message_id,
                "emoji": parsed,
                "burst": False,
                "type": 0,
                "message_author_id": message["author"]["id"],
            }
            if channel.get("guild_id"):
                event["guild_id"] = channel["guild_id"]
                event["member"] = {**self._bot_member(channel["guild_id"]), "user": self._bot_author()}
            await self._echo("MESSAGE_REACTION_ADD", event)
        return web.Response(status=204)

    async def _remove_reaction(
        self, request: web.Request, call: Json, channel_id: str, message_id: str, emoji: str
    ) -> web.Response:
        message = self._require_message(channel_id, message_id)
        parsed = self._emoji(emoji)
        reactions = message.get("reactions", [])
        reaction = next((r for r in reactions if r["emoji"] == parsed and r["me"]), None)
        if reaction is not None:
            reaction["me"] = False
            reaction["count"] -= 1
            reaction["count_details"]["normal"] -= 1
            if reaction["count"] <= 0:
                reactions.remove(reaction)
        return web.Response(status=204)

    async def _start_thread(self, request: web.Request, call: Json, channel_id: str, message_id: str) -> web.Response:
        channel = self._require_channel(channel_id)
        message = self._require_message(channel_id, message_id)
        if channel.get("type") not in (0, 5) or not channel.get("guild_id"):
            raise ApiError(400, "Cannot execute action on this channel type", 50024)
        if message.get("thread"):
            raise ApiError(400, "A thread has already been created for this message", 160004)
        body = call["json"] or {}
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            raise _form_error(["name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        # A thread started from a message takes the message's id.
        thread = dp.thread_channel(
            message_id, name, parent_id=channel_id, guild_id=channel["guild_id"], owner_id=self.bot_user["id"]
        )
        thread["thread_metadata"]["auto_archive_duration"] = int(body.get("auto_archive_duration") or 1440)
        thread["rate_limit_per_user"] = int(body.get("rate_limit_per_user") or 0)
        thread["member"] = {
            "id": message_id,
            "user_id": self.bot_user["id"],
            "join_timestamp": dp.iso_timestamp(),
            "flags": 1,
        }
        guild = self._guild(channel["guild_id"])
        if guild is not None:
            guild.setdefault("threads", []).append({k: copy.deepcopy(v) for k, v in thread.items() if k != "guild_id"})
        message["thread"] = copy.deepcopy(thread)
        message["flags"] = message.get("flags", 0) | HAS_THREAD
        await self._echo("THREAD_CREATE", {**thread, "newly_created": True})
        return _json_response(thread, status=201)

    # ----- application commands --------------------------------------------------------------------

    def _check_app(self, application_id: str) -> None:
        if application_id != self.application_id:
            raise ApiError(403, "Missing Access", 50001)

    @staticmethod
    def _validate_option(option: Any, path: list[str | int]) -> None:
        if not isinstance(option, dict):
            raise _form_error(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        name = option.get("name")
        if not isinstance(name, str) or not _COMMAND_NAME.match(name) or name != name.lower():
            raise _form_error([*path, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        description = option.get("description")
        if not isinstance(description, str) or not 1 <= len(description) <= 100:
            raise _form_error([*path, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        if not isinstance(option.get("type"), int) or not 1 <= option["type"] <= 11:
            raise _form_error([*path, "type"], "BASE_TYPE_CHOICES", "Value must be one of (1, ..., 11).")
        children = option.get("options") or []
        if len(children) > 25:
            raise _form_error([*path, "options"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for index, child in enumerate(children):
            FakeDiscord._validate_option(child, [*path, "options", index])

    @staticmethod
    def _enum_list(command: Json, key: str, allowed: tuple[int, ...], index: int) -> list[int] | None:
        """`contexts` / `integration_types`: null or a list of known enum values, else 400 50035 as Discord
        words it (LIST_TYPE_CONVERT for a non-list, ENUM_TYPE_COERCE per bad value)."""
        value = command.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise _form_error([index, key], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        for position, item in enumerate(value):
            if type(item) is not int or item not in allowed:
                raise _form_error(
                    [index, key, position], "ENUM_TYPE_COERCE", f'Value "{item}" is not a valid enum value.'
                )
        return list(dict.fromkeys(value))

    def _overwrite_commands(self, existing: list[Json], body: Any, guild_id: str | None) -> list[Json]:
        if not isinstance(body, list):
            raise _form_error([], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        if len(body) > COMMAND_LIMIT:
            raise ApiError(400, f"Maximum number of application commands reached ({COMMAND_LIMIT})", 30032)
        seen: set[tuple[int, str]] = set()
        out: list[Json] = []
        for index, command in enumerate(body):
            if not isinstance(command, dict):
                raise _form_error([index], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            kind = int(command.get("type") or 1)
            name = command.get("name")
            if (
                not isinstance(name, str)
                or not 1 <= len(name) <= 32
                or (kind == 1 and (not _COMMAND_NAME.match(name) or name != name.lower()))
            ):
                raise _form_error([index, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            description = command.get("description", "")
            if kind == 1 and (not isinstance(description, str) or not 1 <= len(description) <= 100):
                raise _form_error(
                    [index, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
                )
            if kind != 1 and description:
                raise _form_error(
                    [index, "description"],
                    "APPLICATION_COMMAND_INVALID_DESCRIPTION",
                    "Context menu commands cannot have description",
                )
            if (kind, name) in seen:
                raise _form_error(
                    [index, "name"],
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    f"Application command names must be unique: {name}",
                )
            seen.add((kind, name))
            options = command.get("options") or []
            if len(options) > 25:
                raise _form_error([index, "options"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            for option_index, option in enumerate(options):
                self._validate_option(option, [index, "options", option_index])
            integration_types = self._enum_list(command, "integration_types", INSTALL_TYPES, index)
            contexts = self._enum_list(command, "contexts", CONTEXT_TYPES, index)
            for position, value in enumerate(integration_types or []):
                if value not in self.install_types:
                    raise _form_error(
                        [index, "integration_types", position],
                        "APPLICATION_COMMAND_INTEGRATION_TYPE_NOT_SUPPORTED",  # the fake's label: Discord's is not documented
                        f"Installation context {value} is not enabled for this application.",
                    )
            previous = next((c for c in existing if c["name"] == name and c["type"] == kind), None)
            stored: Json = {
                "id": previous["id"] if previous else dp.snowflake(),
                "application_id": self.application_id,
                "version": dp.snowflake(),
                "default_member_permissions": command.get("default_member_permissions"),
                "type": kind,
                "name": name,
                "name_localizations": command.get("name_localizations"),
                "description": description or "",
                "description_localizations": command.get("description_localizations"),
                "dm_permission": command.get("dm_permission", True),
                "contexts": contexts,
                "integration_types": integration_types or [0],
                "options": copy.deepcopy(options),
                "nsfw": bool(command.get("nsfw", False)),
            }
            if guild_id is not None:
                stored["guild_id"] = guild_id
                stored.pop("dm_permission")
            out.append(stored)
        return out

    async def _get_commands(self, request: web.Request, call: Json, application_id: str) -> web.Response:
        self._check_app(application_id)
        return _json_response(copy.deepcopy(self.commands))

    async def _put_commands(self, request: web.Request, call: Json, application_id: str) -> web.Response:
        self._check_app(application_id)
        self.commands = self._overwrite_commands(self.commands, call["json"], None)
        return _json_response(copy.deepcopy(self.commands))

    async def _get_guild_commands(
        self, request: web.Request, call: Json, application_id: str, guild_id: str
    ) -> web.Response:
        self._check_app(application_id)
        if self._guild(guild_id) is None:
            raise ApiError(403, "Missing Access", 50001)
        return _json_response(copy.deepcopy(self.guild_commands.get(guild_id, [])))

    async def _put_guild_commands(
        self, request: web.Request, call: Json, application_id: str, guild_id: str
    ) -> web.Response:
        self._check_app(application_id)
        if self._guild(guild_id) is None:
            raise ApiError(403, "Missing Access", 50001)
        self.guild_commands[guild_id] = self._overwrite_commands(
            self.guild_commands.get(guild_id, []), call["json"], guild_id
        )
        return _json_response(copy.deepcopy(self.guild_commands[guild_id]))

    # ----- interactions ----------------------------------------------------------------------------

    def _interaction_message(self, interaction: Json, body: Json, files: list[Json], *, followup: bool) -> Json:
        payload = interaction["payload"]
        invoker = payload.get("user") or (payload.get("member") or {}).get("user") or {}
        kind = 0 if followup or payload["type"] != 2 else 20  # 20 CHAT_INPUT_COMMAND
        message = self._new_bot_message(
            interaction["channel_id"],
            body,
            files,
            type=kind,
            webhook_id=self.application_id,
            application_id=self.application_id,
            interaction_metadata={
                "id": interaction["id"],
                "type": payload["type"],
                "user": copy.deepcopy(invoker),
                "authorizing_integration_owners": copy.deepcopy(payload.get("authorizing_integration_owners", {})),
                **(
                    {"name": payload["data"].get("name"), "command_type": payload["data"].get("type", 1)}
                    if payload["type"] == 2
                    else {}
                ),
            },
        )
        if self._forced_ephemeral(payload):
            message["flags"] = message.get("flags", 0) | EPHEMERAL
        if payload["type"] == 2 and not followup:
            message["interaction"] = {
                "id": interaction["id"],
                "type": 2,
                "name": payload["data"].get("name"),
                "user": copy.deepcopy(invoker),
            }
        return message

    @staticmethod
    def _forced_ephemeral(payload: Json) -> bool:
        """In a guild reached only through the user install, a member without USE_EXTERNAL_APPS gets every
        response ephemeral (docs/topics/permissions: "When disabled, users will still be allowed to use
        their apps but the responses will be ephemeral. This only applies to apps not also installed to
        the server.")."""
        owners = payload.get("authorizing_integration_owners")
        if not payload.get("guild_id") or owners is None or "0" in owners:
            return False
        try:
            permissions = int((payload.get("member") or {}).get("permissions") or 0)
        except ValueError:
            return True
        return not permissions & USE_EXTERNAL_APPS

    def _find_interaction(self, application_id: str, token: str) -> Json:
        if application_id == self.application_id:
            for interaction in self.interactions.values():
                if interaction["token"] == token:
                    if self.interaction_deadlines and self._age(interaction) > TOKEN_LIFETIME:
                        raise ApiError(401, "Invalid Webhook Token", 50027)
                    return interaction
        raise unknown("Webhook", 10015)

    def _age(self, interaction: Json) -> float:
        return self.clock.now() - interaction["created_at"]

    def _interaction_callback_body(self, interaction: Json, kind: int, message: Json | None) -> Json:
        out: Json = {"interaction": {"id": interaction["id"], "type": interaction["type"]}}
        if interaction["original_message_id"] is not None:
            ephemeral = bool(message and message.get("flags", 0) & EPHEMERAL)
            out["interaction"].update(
                response_message_id=interaction["original_message_id"],
                response_message_loading=kind == 5,
                response_message_ephemeral=ephemeral,
            )
        resource: Json = {"type": kind}
        if kind in (4, 7) and message is not None:
            resource["message"] = copy.deepcopy(message)
        out["resource"] = resource
        return out

    async def _interaction_callback(
        self, request: web.Request, call: Json, interaction_id: str, token: str
    ) -> web.Response:
        interaction = self.interactions.get(interaction_id)
        if interaction is None or interaction["token"] != token:
            raise ApiError(404, "Unknown interaction", 10062)
        late = self.interaction_deadlines and self._age(interaction) > INITIAL_RESPONSE_DEADLINE
        if late and interaction["response_type"] is None:  # the token is void: no response, no follow-ups
            raise ApiError(404, "Unknown interaction", 10062)
        if interaction["response_type"] is not None:
            raise ApiError(400, "Interaction has already been acknowledged.", 40060)
        body = call["json"] or {}
        kind = body.get("type")
        is_component = interaction["type"] in (3, 5) and interaction["payload"].get("message") is not None
        allowed = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7} if is_component else {4, 5}}.get(
            interaction["type"], set()
        )
        if kind not in allowed:
            raise _form_error(
                ["type"], "INTERACTION_RESPONSE_TYPE_INVALID", f"Interaction response type {kind} is not valid here."
            )
        data = body.get("data") or {}
        message: Json | None = None
        if kind == 4:
            message = self._interaction_message(interaction, data, call.get("files", []), followup=False)
            if not self._has_body(message):
                raise ApiError(400, "Cannot send an empty message", 50006)
            self._store(message)
            interaction["original_message_id"] = message["id"]
            if not message["flags"] & EPHEMERAL:
                await self._echo("MESSAGE_CREATE", self._gateway_message(message))
        elif kind == 5:
            message = self._interaction_message(
                interaction, {"flags": int(data.get("flags") or 0) & EPHEMERAL}, [], followup=False
            )
            message["flags"] |= LOADING
            self._store(message)
            interaction["original_message_id"] = message["id"]
            if not message["flags"] & EPHEMERAL:
                await self._echo("MESSAGE_CREATE", self._gateway_message(message))
        elif kind in (6, 7):
            source = interaction["payload"]["message"]
            message = self._require_message(str(source["channel_id"]), str(source["id"]))
            interaction["original_message_id"] = message["id"]
            if kind == 7:
                self._validate_content(data)
                self._apply_content(message, data, call.get("files", []))
                message["edited_timestamp"] = dp.iso_timestamp()
                if not message.get("flags", 0) & EPHEMERAL:
                    await self._echo("MESSAGE_UPDATE", self._gateway_message(message))
        interaction["response_type"] = kind
        interaction["response"] = copy.deepcopy(body)
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        return _json_response(self._interaction_callback_body(interaction, kind, message))

    def _webhook_message(self, interaction: Json, message_ref: str) -> Json:
        if interaction["response_type"] is None:
            raise unknown("Webhook", 10015)
        message_id = interaction["original_message_id"] if message_ref == "@original" else message_ref
        if message_id is None or (
            message_ref != "@original"
            and message_id not in interaction["followup_ids"]
            and message_id != interaction["original_message_id"]
        ):
            raise unknown("Message", 10008)
        stored = self._messages.get(interaction["channel_id"], {}).get(message_id)
        if stored is None:
            raise unknown("Message", 10008)
        return stored

    async def _webhook_execute(self, request: web.Request, call: Json, application_id: str, token: str) -> web.Response:
        interaction = self._find_interaction(application_id, token)
        if interaction["response_type"] is None:
            raise unknown("Webhook", 10015)  # followups need the initial response first
        body = call["json"] or {}
        if interaction["response_type"] == 5 and interaction["original_message_id"] is not None:
            original = self._messages.get(interaction["channel_id"], {}).get(interaction["original_message_id"])
            if original is not None and original.get("flags", 0) & LOADING:
                # The first followup after a deferral fills in the "thinking" message.
                self._validate_content(body)
                self._apply_content(original, body, call.get("files", []))
                original["flags"] &= ~LOADING
                if not self._has_body(original):
                    raise ApiError(400, "Cannot send an empty message", 50006)
                if not original["flags"] & EPHEMERAL:
                    await self._echo("MESSAGE_UPDATE", self._gateway_message(original))
                return self._webhook_result(request, original)
        message = self._interaction_message(interaction, body, call.get("files", []), followup=True)
        if not self._has_body(message):
            raise ApiError(400, "Cannot send an empty message", 50006)
        self._store(message)
        interaction["followup_ids"].append(message["id"])
        if not message["flags"] & EPHEMERAL:
            await self._echo("MESSAGE_CREATE", self._gateway_message(message))
        return self._webhook_result(request, message)

    @staticmethod
    def _webhook_result(request: web.Request, message: Json) -> web.Response:
        if request.query.get("wait") in ("1", "true", "True"):
            return _json_response(copy.deepcopy(message))
        return web.Response(status=204)

    async def _webhook_get(
        self, request: web.Request, call: Json, application_id: str, token: str, message_ref: str
    ) -> web.Response:
        interaction = self._find_interaction(application_id, token)
        return _json_response(copy.deepcopy(self._webhook_message(interaction, message_ref)))

    async def _webhook_edit(
        self, request: web.Request, call: Json, application_id: str, token: str, message_ref: str
    ) -> web.Response:
        interaction = self._find_interaction(application_id, token)
        message = self._webhook_message(interaction, message_ref)
        body = call["json"] or {}
        self._validate_content(body)
        edited = copy.deepcopy(message)
        self._apply_content(edited, body, call.get("files", []))
        edited["flags"] = edited.get("flags", 0) & ~LOADING
        if not self._has_body(edited):
            raise ApiError(400, "Cannot send an empty message", 50006)
        if not message.get("flags", 0) & LOADING:
            edited["edited_timestamp"] = dp.iso_timestamp()
        message.clear()
        message.update(edited)
        if not message["flags"] & EPHEMERAL:
            await self._echo("MESSAGE_UPDATE", self._gateway_message(message))
        return _json_response(copy.deepcopy(message))

    async def _webhook_delete(
        self, request: web.Request, call: Json, application_id: str, token: str, message_ref: str
    ) -> web.Response:
        interaction = self._find_interaction(application_id, token)
        message = self._webhook_message(interaction, message_ref)
        del self._messages[message["channel_id"]][message["id"]]
        if not message.get("flags", 0) & EPHEMERAL:
            channel = self._channel(message["channel_id"]) or {}
            deleted: Json = {"id": message["id"], "channel_id": message["channel_id"]}
            if channel.get("guild_id"):
                deleted["guild_id"] = channel["guild_id"]
            await self._echo("MESSAGE_DELETE", deleted)
        return web.Response(status=204)
