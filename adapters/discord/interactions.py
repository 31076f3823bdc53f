"""Discord HTTP interactions: /advisor and the feedback buttons at POST /discord/interactions, no gateway needed.

Set the application's Interactions Endpoint URL to `https://HOST/discord/interactions` (with DISCORD_PUBLIC_KEY
and DISCORD_APPLICATION_ID); Discord then sends every interaction here instead of over the gateway.

Every request is checked before anything is parsed or dispatched, in this order:
413 body over `max_body` (64 KiB; never read past it), 415 not application/json, 408 body not received in 10 s,
401 X-Signature-Ed25519 / X-Signature-Timestamp missing or malformed, timestamp more than 5 minutes old (or
ahead), or signature not valid for timestamp + raw body under the public key; then 400 body not a JSON object,
no interaction id, or an interaction type this endpoint does not know (anything but 1-5). A known type it has
nothing for (an unknown command, subcommand or button, a modal) gets 200 with a polite ephemeral message;
autocomplete gets an empty choice list. Errors are short JSON bodies `{"error": ...}`, never a 500.

Every interaction is answered (acked) before any I/O: Discord gives the endpoint 3 seconds, so `status`,
`forget`, `reindex`, `ask` and the feedback buttons answer "deferred" at once and do their work in background
tasks. Answers reach Discord through the interaction webhook: the deferred response is edited (PATCH
.../messages/@original), further parts are follow-ups (POST /webhooks/APP/TOKEN), all with
`allowed_mentions: {"parse": []}`. A 429 is retried after its `retry_after`. When the response cannot be
edited (deleted; the 15-minute token expired) the text goes as follow-ups, else (with DISCORD_TOKEN) as a DM,
else a log line, a metric and an admin alert (ADVISOR_SAFETY_ALERT_CHANNEL, with DISCORD_TOKEN): never
silence. Interaction ids are de-duplicated: a re-delivery gets the first delivery's response and runs
nothing. Tokens are never logged.

Through a user install (a group DM, a DM between people, a server without the bot; adapters/discord/installs.py)
the same answers go through the same webhook; `reindex` is refused there, and Manage Server from a server
the bot is not installed to does not make an admin.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from adapters.discord.gateway import (
    BUSY,
    EDIT_INTERVAL,
    FEEDBACK_PREFIX,
    MESSAGE_LIMIT,
    REFUSED,
    SORRY,
    answer_parts,
    dm_parts,
)
from adapters.discord.installs import NOT_HERE, bot_can_act, reindex_allowed_here
from adapters.progress import ReindexProgress
from adapters.render import SHOWN_NOTICES, split_message
from bot.ops import metrics
from bot.ops.admin import Admin, AdminError, advisor_version
from bot.ops.alerts import alert_channel, undelivered_text
from bot.models import Final, IncomingMessage, Notice, TextDelta
from config.settings import AdminSettings, Settings

log = logging.getLogger(__name__)

API_BASE = "https://discord.com/api/v10"
ROUTE = "/discord/interactions"
MAX_BODY = 64 * 1024
READ_TIMEOUT = 10.0
MAX_SKEW = 300.0  # seconds a signed timestamp may be old (or ahead): replays of older requests are refused
REPLAY_TTL = 15 * 60.0  # an interaction token lives 15 minutes; so does our memory of its id
RETRIES = 3  # extra attempts after a 429
MAX_RETRY_WAIT = 30.0
DRAIN_TIMEOUT = 25.0

# interaction types and response types (docs/interactions/receiving-and-responding)
PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
KNOWN_TYPES = (PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT)
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, AUTOCOMPLETE_RESULT = 1, 4, 5, 8
EPHEMERAL = 1 << 6
ADMINISTRATOR, MANAGE_GUILD = 1 << 3, 1 << 5
NO_PINGS: dict[str, list[str]] = {"parse": []}

UNKNOWN_COMMAND = "Sorry, I don't know that command. Try `/advisor ask`."

Json = dict[str, Any]
_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{128}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def ephemeral(text: str) -> Json:
    """An immediate message only the invoker sees."""
    return {"type": CHANNEL_MESSAGE, "data": {"content": text, "flags": EPHEMERAL, "allowed_mentions": NO_PINGS}}


def deferred(private: bool) -> Json:
    """The "thinking…" acknowledgement; the answer edits it later."""
    return (
        {"type": DEFERRED_CHANNEL_MESSAGE, "data": {"flags": EPHEMERAL}}
        if private
        else {"type": DEFERRED_CHANNEL_MESSAGE}
    )


def invoker(payload: Mapping[str, Any]) -> Json:
    """The user who invoked: `member.user` in a guild, `user` in a DM."""
    member = payload.get("member")
    found = member.get("user") if isinstance(member, dict) else payload.get("user")
    return found if isinstance(found, dict) else {}


def subcommand(data: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """("ask", {"question": ...}) from a chat-input command's options (type 1 = SUB_COMMAND)."""
    for option in data.get("options") or []:
        if isinstance(option, dict) and option.get("type") == 1:
            leaves = option.get("options") or []
            return str(option.get("name", "")), {
                str(o.get("name")): o.get("value") for o in leaves if isinstance(o, dict) and "name" in o
            }
    return "", {}


def is_admin(payload: Mapping[str, Any], admins: AdminSettings) -> bool:
    """Listed user, else a listed role or Manage Server / Administrator as Discord resolved them for this member,
    in a guild the bot serves (not one reached through a user install: its roles and admins are not ours)."""
    if str(invoker(payload).get("id", "")) in admins.discord_user_ids:
        return True
    member = payload.get("member")
    if not isinstance(member, dict) or not payload.get("guild_id") or not bot_can_act(payload):
        return False
    if {str(role) for role in member.get("roles") or []} & set(admins.discord_role_ids):
        return True
    try:
        permissions = int(str(member.get("permissions", "0")))
    except ValueError:
        return False
    return bool(permissions & (MANAGE_GUILD | ADMINISTRATOR))


class WebhookError(Exception):
    """A REST call that failed; the message names the call and the status, never the URL (it holds the token)."""


class _Webhook:
    """One interaction's webhook: edit the original response, send follow-ups; who asked, and where."""

    def __init__(
        self, owner: DiscordInteractions, application_id: str, token: str, private: bool, payload: Json
    ) -> None:
        self.owner = owner
        self.path = f"/webhooks/{quote(application_id, safe='')}/{quote(token, safe='')}"
        self.private = private
        self.label = f"interaction {payload['id']}"  # for logs: the interaction id, never the token
        self.user = str(invoker(payload).get("id", ""))
        self.channel = str(payload.get("channel_id", ""))
        self.in_guild = bool(payload.get("guild_id"))

    async def edit(self, content: str) -> None:
        body = {"content": content, "allowed_mentions": NO_PINGS}
        await self.owner.rest("PATCH", f"{self.path}/messages/@original", body, f"editing the response to {self.label}")

    async def follow(self, content: str) -> None:
        body: Json = {"content": content, "allowed_mentions": NO_PINGS}
        if self.private:
            body["flags"] = EPHEMERAL
        await self.owner.rest("POST", self.path, body, f"a follow-up to {self.label}")


class _Replays:
    """Interaction id -> its immediate response (a future while it is being worked out), bounded, for REPLAY_TTL."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, tuple[float, asyncio.Future[Json]]] = OrderedDict()

    def get(self, key: str) -> asyncio.Future[Json] | None:
        now = time.monotonic()
        while self._seen and (next(iter(self._seen.values()))[0] <= now or len(self._seen) > self.size):
            self._seen.popitem(last=False)
        entry = self._seen.get(key)
        return entry[1] if entry else None

    def put(self, key: str, future: asyncio.Future[Json]) -> None:
        self._seen[key] = (time.monotonic() + REPLAY_TTL, future)

    def drop(self, key: str) -> None:
        self._seen.pop(key, None)


class DiscordInteractions:
    def __init__(
        self,
        engine: Any,
        admin: Admin,
        settings: Settings,
        api_base: str = API_BASE,
        session: aiohttp.ClientSession | None = None,
        *,
        edit_interval: float | None = EDIT_INTERVAL,
        max_body: int = MAX_BODY,
    ) -> None:
        """`edit_interval`: seconds between edits while an answer streams (None: only the final text)."""
        if not settings.discord.public_key:
            raise ValueError("Discord HTTP interactions need DISCORD_PUBLIC_KEY (the application's public key)")
        self.engine = engine
        self.admin = admin
        self.admins = settings.admins
        self.application_id = settings.discord.application_id
        token = settings.discord.token
        self.bot_token = token.get_secret_value() if token is not None else None  # for DMs and alerts only
        self.alert_channel = alert_channel(settings.safety.alert_channel, "discord")
        self.verify_key = VerifyKey(bytes.fromhex(settings.discord.public_key))
        self.api_base = api_base.rstrip("/")
        self.edit_interval = edit_interval
        self.max_body = max_body
        self.tasks: set[asyncio.Task[None]] = set()
        self.replays = _Replays()
        self._session = session
        self._own_session = session is None
        self._reindex_claimed = False

    # -- HTTP ---------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(ROUTE, self.handle)

    def web_app(self) -> web.Application:
        """An app serving only the endpoint; at shutdown it waits for answers in flight, then closes."""
        app = web.Application(client_max_size=self.max_body)
        self.add_routes(app)

        async def shutdown(_: web.Application) -> None:
            if not await self.drain(DRAIN_TIMEOUT):
                log.warning("shutting down with %d Discord answer(s) unfinished", len(self.tasks))
            await self.close()

        app.on_shutdown.append(shutdown)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > self.max_body:
            return _error(413, "request body too large")
        if request.content_type != "application/json":
            return _error(415, "expected application/json")
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                body = await self._read(request)
        except TimeoutError:
            return _error(408, "request body not received in time")
        if body is None:
            return _error(413, "request body too large")
        if not self.verified(request.headers, body):
            return _error(401, "invalid request signature")
        try:
            payload = json.loads(body)
        except ValueError:  # UnicodeDecodeError included
            return _error(400, "malformed JSON")
        if not isinstance(payload, dict):
            return _error(400, "expected a JSON object")
        kind = payload.get("type")
        if type(kind) is not int or kind not in KNOWN_TYPES:
            return _error(400, "unsupported interaction type")
        if kind == PING:
            return web.json_response({"type": PONG})
        interaction_id = payload.get("id")
        if not isinstance(interaction_id, str) or not interaction_id:
            return _error(400, "missing interaction id")
        return web.json_response(await self._once(interaction_id, payload))

    async def _read(self, request: web.Request) -> bytes | None:
        """The body, or None once it grows past max_body (the rest is never read)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def verified(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Ed25519 over timestamp + raw body, and a timestamp within MAX_SKEW of now."""
        signature = headers.get("X-Signature-Ed25519", "")
        timestamp = headers.get("X-Signature-Timestamp", "")
        if not _HEX_SIGNATURE.fullmatch(signature) or not _TIMESTAMP.fullmatch(timestamp):
            return False
        if abs(time.time() - int(timestamp)) > MAX_SKEW:
            return False
        try:
            self.verify_key.verify(timestamp.encode() + body, bytes.fromhex(signature))
        except (BadSignatureError, ValueError):
            return False
        return True

    # -- dispatch -------------------------------------------------------------

    async def _once(self, interaction_id: str, payload: Json) -> Json:
        """The immediate response, worked out once per interaction id; a re-delivery gets the same one."""
        metrics.event_in("discord", "interaction")
        seen = self.replays.get(interaction_id)
        if seen is not None:
            log.info("duplicate delivery of interaction %s: answered as before, not run again", interaction_id)
            metrics.duplicate_dropped("discord")
            return await asyncio.shield(seen)
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self.replays.put(interaction_id, future)
        try:
            response = await self._respond(payload)
        except Exception:
            log.exception("handling interaction %s failed", interaction_id)
            response = ephemeral(SORRY)
        except BaseException:  # cancelled: waiting duplicates get the apology, a later re-delivery runs
            self.replays.drop(interaction_id)
            future.set_result(ephemeral(SORRY))
            raise
        future.set_result(response)
        return response

    async def _respond(self, payload: Json) -> Json:
        kind = payload["type"]
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        if kind == AUTOCOMPLETE:
            return {"type": AUTOCOMPLETE_RESULT, "data": {"choices": []}}
        if kind == MESSAGE_COMPONENT:
            return self._component(payload, str(data.get("custom_id", "")))
        if kind != APPLICATION_COMMAND or data.get("name") != "advisor":
            return ephemeral(UNKNOWN_COMMAND)
        name, options = subcommand(data)
        if name == "ask":
            return self._ask(payload, str(options.get("question") or ""), options.get("private") is not False)
        if name == "status":
            return self._later(payload, self._status_text)
        if name == "forget":
            return self._later(payload, lambda: self._forget(payload))
        if name == "reindex":
            path = options.get("path")
            return self._reindex(payload, path if isinstance(path, str) and path else None)
        return ephemeral(UNKNOWN_COMMAND)

    def _webhook(self, payload: Json, private: bool) -> _Webhook | None:
        application_id = self.application_id or payload.get("application_id")
        token = payload.get("token")
        if not isinstance(application_id, str) or not isinstance(token, str) or not application_id or not token:
            return None
        return _Webhook(self, application_id, token, private, payload)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _later(self, payload: Json, make: Callable[[], Awaitable[str]]) -> Json:
        """Defer now (an ack before any I/O); `make()`'s text fills the response in a background task."""
        hook = self._webhook(payload, private=True)
        if hook is None:
            return ephemeral(SORRY)
        self._spawn(self._fill(hook, make))
        return deferred(private=True)

    async def _fill(self, hook: _Webhook, make: Callable[[], Awaitable[str]]) -> None:
        try:
            text = await make()
        except Exception:
            log.exception("the command in %s failed", hook.label)
            text = SORRY
        await self._deliver(hook, [text])

    async def _status_text(self) -> str:
        facts = await self.admin.status()
        return "\n".join(f"**{key.replace('_', ' ')}**: {value}" for key, value in facts.items())

    def _component(self, payload: Json, custom_id: str) -> Json:
        if not custom_id.startswith(FEEDBACK_PREFIX):
            return ephemeral("Sorry, that button doesn't do anything any more.")
        value, _, turn = custom_id.removeprefix(FEEDBACK_PREFIX).partition(":")
        return self._later(payload, lambda: self._feedback(turn, 1 if value == "up" else -1))

    async def _feedback(self, turn: str, value: int) -> str:
        stored = await self.engine.record_feedback(turn, value)
        return "Thanks for the feedback." if stored else "Sorry, I couldn't find that answer any more."

    async def _forget(self, payload: Json) -> str:
        prefix = f"discord:{payload.get('guild_id') or 'dm'}:{payload.get('channel_id')}:"
        removed = 0
        for conversation in await self.engine.memory.conversations_of(prefix, str(invoker(payload).get("id", ""))):
            removed += await self.engine.forget(conversation)
        return f"Done: I forgot our conversations here ({removed} messages)."

    # -- /advisor ask ---------------------------------------------------------

    def _ask(self, payload: Json, question: str, private: bool) -> Json:
        hook = self._webhook(payload, private)
        if hook is None:
            return ephemeral(SORRY)
        author = str(invoker(payload).get("id", ""))
        incoming = IncomingMessage(
            platform="discord",
            workspace=str(payload.get("guild_id") or "dm"),
            channel=str(payload.get("channel_id", "")),
            thread=f"slash-{author}",  # as the gateway adapter keys slash asks
            author=author,
            text=question,
            sent_at=time.time(),
            message_id=str(payload["id"]),
        )
        self._spawn(self._answer(hook, incoming))
        return deferred(private)

    async def _answer(self, hook: _Webhook, incoming: IncomingMessage) -> None:
        try:
            parts = await self._stream(hook, incoming)
        except Exception:  # a bug or an outage inside the engine: say so rather than leave "thinking…"
            log.exception("answering %s failed", hook.label)
            parts = [SORRY]
        await self._deliver(hook, parts)

    async def _stream(self, hook: _Webhook, incoming: IncomingMessage) -> list[str]:
        """Throttled edits of the first part while the answer streams (until one fails); the final parts."""
        text, shown, last_edit = "", "", 0.0
        live = self.edit_interval is not None
        final: Final | None = None
        notices: list[Notice] = []
        async for event in self.engine.answer(incoming):
            if isinstance(event, TextDelta):
                text += event.text
                if live and time.monotonic() - last_edit >= self.edit_interval:  # type: ignore[operator]
                    first = split_message(text, MESSAGE_LIMIT)[0]
                    if first.strip() and first != shown:
                        live = await self._update(hook, first)
                        shown, last_edit = first, time.monotonic()
            elif isinstance(event, Notice) and event.kind in SHOWN_NOTICES:
                notices.append(event)
            elif isinstance(event, Final):
                final = event
        if final is None:
            raise RuntimeError("the engine ended without a final answer")
        return answer_parts(final, notices)

    async def _update(self, hook: _Webhook, text: str) -> bool:
        """A streaming edit; False once one failed (the final text is delivered another way)."""
        try:
            await hook.edit(text)
        except WebhookError as exc:
            log.warning("a streaming edit failed: %s", exc)
            return False
        return True

    # -- delivery when a write fails -----------------------------------------------

    async def _deliver(self, hook: _Webhook, parts: list[str]) -> None:
        """Parts into the deferred response and follow-ups; if the response cannot be edited, as follow-ups,
        else as a DM, else a log line, a metric and an admin alert. Never silence."""
        try:
            await hook.edit(parts[0])  # the first follow-up after a deferral would replace "thinking…" too; be explicit
            rest, reason = parts[1:], ""
        except WebhookError as exc:
            log.warning("the response could not be edited: %s", exc)
            rest, reason = parts, str(exc)
        try:
            for part in rest:
                await hook.follow(part)
        except WebhookError as exc:
            log.warning("a follow-up failed: %s", exc)
            reason = str(exc)
        else:
            if reason:
                metrics.write_failed("discord", "follow_up")
            return
        if hook.in_guild and await self._direct_message(hook.user, dm_parts(rest, int(hook.channel or 0))):
            metrics.write_failed("discord", "dm")
            return
        metrics.write_failed("discord", "lost")
        log.error("an answer to user %s in channel %s could not be delivered by any route (%s)", hook.user, hook.channel, reason)
        await self._alert(undelivered_text(f"<#{hook.channel}>", hook.user, reason))

    def _bot_headers(self) -> dict[str, str] | None:
        return {"Authorization": f"Bot {self.bot_token}"} if self.bot_token else None

    async def _direct_message(self, user: str, parts: list[str]) -> bool:
        """The parts as a DM to `user` (needs DISCORD_TOKEN); False if that is impossible or fails."""
        headers = self._bot_headers()
        if headers is None or not user:
            return False
        try:
            channel = await self.rest("POST", "/users/@me/channels", {"recipient_id": user}, "opening a DM", headers)
            for part in parts:
                body = {"content": part, "allowed_mentions": NO_PINGS}
                await self.rest("POST", f"/channels/{channel['id']}/messages", body, "a DM", headers)
        except (WebhookError, KeyError, TypeError) as exc:
            log.warning("the DM fallback failed: %s", type(exc).__name__ if not isinstance(exc, WebhookError) else exc)
            return False
        return True

    async def _alert(self, text: str) -> None:
        """One line to the admins' channel (ADVISOR_SAFETY_ALERT_CHANNEL, needs DISCORD_TOKEN); a failure is logged."""
        headers = self._bot_headers()
        if headers is None or self.alert_channel is None:
            log.error("no admin alert posted (it needs DISCORD_TOKEN and ADVISOR_SAFETY_ALERT_CHANNEL)")
            return
        body = {"content": text, "allowed_mentions": NO_PINGS}
        try:
            await self.rest("POST", f"/channels/{quote(self.alert_channel, safe='')}/messages", body, "an admin alert", headers)
        except WebhookError as exc:
            log.error("could not post an admin alert: %s", exc)

    # -- /advisor reindex -------------------------------------------------------

    def _reindex(self, payload: Json, path: str | None) -> Json:
        if not reindex_allowed_here(payload):
            return ephemeral(NOT_HERE)
        if not is_admin(payload, self.admins):
            return ephemeral(REFUSED)
        if self.admin.reindexing or self._reindex_claimed:
            return ephemeral(BUSY)
        self._reindex_claimed = True  # before the task starts, so a second request right after is refused
        answer = self._later(payload, lambda: self._run_reindex(payload, path))
        if answer["type"] != DEFERRED_CHANNEL_MESSAGE:
            self._reindex_claimed = False
        return answer

    async def _run_reindex(self, payload: Json, path: str | None) -> str:
        """The reindex's closing line (or why it did not run), with progress edits on the way."""
        hook = self._webhook(payload, private=True)
        progress = ReindexProgress(hook.edit if hook is not None else _ignore)
        try:
            self.admin.resolve(path)
            report = await self.admin.reindex(path, progress)
        except AdminError as exc:
            return str(exc)
        finally:
            self._reindex_claimed = False
        await progress.settle()
        return f"Reindex finished.\n```\n{report.summary()[:1800]}\n```"

    # -- REST -------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=15),
                headers={"User-Agent": f"DiscordBot (https://github.com/advisor, {advisor_version()})"},
            )
            self._own_session = True
        return self._session

    async def rest(
        self, method: str, path: str, body: Json, what: str, headers: dict[str, str] | None = None
    ) -> Any:
        """One REST call (its JSON, or None); a 429 waits its retry_after (up to RETRIES times, MAX_RETRY_WAIT
        each), and the last one is a WebhookError like any other status."""
        for attempt in range(RETRIES + 1):
            try:
                url = f"{self.api_base}{path}"
                async with self._client().request(method, url, json=body, headers=headers) as response:
                    if response.status == 429:
                        wait = await _retry_after(response)
                        if attempt < RETRIES and wait <= MAX_RETRY_WAIT:
                            log.warning("Discord rate-limited %s; retrying in %.2f s", what, wait)
                            await asyncio.sleep(wait)
                            continue
                    if response.status >= 400:
                        raise WebhookError(f"{what}: HTTP {response.status}{await _error_code(response)}")
                    return _json_or_none(await response.text())
            except (aiohttp.ClientError, TimeoutError) as exc:  # their text may hold the URL: name the type only
                raise WebhookError(f"{what}: {type(exc).__name__}") from None

    # -- lifecycle --------------------------------------------------------------

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for answers in flight; True when none is left."""
        deadline = time.monotonic() + timeout
        while self.tasks:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.wait(set(self.tasks), timeout=left)
        return True

    async def close(self) -> None:
        """Cancel what is still running and close the HTTP session (if this object made it)."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


async def _ignore(text: str) -> None:
    """Progress with nowhere to go."""


async def _error_code(response: aiohttp.ClientResponse) -> str:
    """", Discord code N" from an error body (the code says why: 10015 unknown webhook, 50027 expired token)."""
    try:
        code = (await response.json(content_type=None)).get("code")
    except (ValueError, AttributeError, aiohttp.ClientError):
        return ""
    return f", Discord code {code}" if isinstance(code, int) else ""


async def _retry_after(response: aiohttp.ClientResponse) -> float:
    """Seconds to wait from a 429: the JSON body's retry_after, else the Retry-After header, else 1."""
    try:
        value = (await response.json(content_type=None)).get("retry_after")
    except (ValueError, AttributeError, aiohttp.ClientError):
        value = None
    if value is None:
        value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except (TypeError, ValueError):
        return 1.0


__all__ = ["DiscordInteractions", "WebhookError", "answer_parts", "is_admin", "subcommand"]
