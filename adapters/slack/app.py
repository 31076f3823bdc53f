"""Slack adapter on slack-bolt (async): events, the /advisor command, feedback buttons.

Rules: a mention in a channel is answered in a thread under it; a DM is answered in the
DM (in its thread if the user wrote in one); a reply in a thread the bot answered
continues it without a mention. Bolt acks every request at once and the work runs
after; each message (channel + ts) is answered once, whatever the retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.ops_http import CountingRateLimitHandler
from adapters.progress import ReindexProgress
from adapters.render import SHOWN_NOTICES
from adapters.slack.format import FEEDBACK_DOWN, FEEDBACK_UP, answer_messages, preview, sources_text
from bot.ops import metrics
from bot.ops.admin import Admin, AdminError
from bot.ops.alerts import alert_channel, alert_text
from bot.state import local_dedupe
from bot.ops.inflight import InFlight
from bot.ops.logs import new_turn_id, turn_context
from bot.models import Final, IncomingMessage, Notice, TextDelta
from bot.ports import StateUnavailable
from config.settings import Settings

log = logging.getLogger(__name__)

USER_SUBTYPES = {None, "file_share", "thread_broadcast"}
UPDATE_INTERVAL = 1.0  # seconds between edits of one channel's messages (chat.update is Tier 3)
PLACEHOLDER = "_Thinking…_"
SORRY = "Sorry, something went wrong on my side and I couldn't answer. Please try again in a moment."
HELP = (
    "*/advisor* commands:\n"
    "• `ask <question>`: an answer only you can see\n"
    "• `forget`: forget our conversations in this channel\n"
    "• `status`: index size, model, uptime, version\n"
    "• `reindex [path]`: rebuild the knowledge base (admins)\n"
    "• `help`: this message\n"
    "Mention me in a channel or message me directly to talk."
)


def _well_formed(body: Any) -> bool:
    """Shapes bolt relies on: an object, and an event callback's `event` an object too."""
    if not isinstance(body, dict):
        return False
    return body.get("type") != "event_callback" or isinstance(body.get("event"), dict)


def skip_reason(event: dict[str, Any], bot_user_id: str | None, bot_id: str | None, allowlist: list[str]) -> str | None:
    """Why a message event gets no answer, or None when it should be answered."""
    if not isinstance(event.get("channel"), str) or not isinstance(event.get("ts"), str):
        return "an event without a channel or timestamp"
    subtype = event.get("subtype")
    if event.get("hidden"):
        return "hidden event"
    if (bot_user_id and event.get("user") == bot_user_id) or (bot_id and event.get("bot_id") == bot_id):
        return "the bot's own message"
    from_bot = bool(event.get("bot_id") or event.get("bot_profile") or subtype == "bot_message")
    if from_bot and event.get("bot_id") not in allowlist:
        return "message from another bot"
    if subtype not in USER_SUBTYPES and not (from_bot and subtype == "bot_message"):
        return f"subtype {subtype}"
    if not event.get("user") and not event.get("bot_id"):
        return "no author"
    return None


class ChannelPacer:
    """Spaces out posts and edits per channel so streaming stays inside Slack's limits."""

    def __init__(self, interval: float = UPDATE_INTERVAL) -> None:
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

    def ready(self, channel: str) -> bool:
        return time.monotonic() >= self._next.get(channel, 0.0)


def _not_the_token_warning(record: logging.LogRecord) -> bool:
    """bolt reads SLACK_BOT_TOKEN itself and warns that our client's token wins: true, and expected."""
    return "`token` will be unused" not in record.getMessage()


logging.getLogger("slack_bolt.AsyncApp").addFilter(_not_the_token_warning)

MAX_BODY = 1024 * 1024  # Slack's payloads are a few KiB; anything near this is not Slack
ACCEPTED_TYPES = ("application/json", "application/x-www-form-urlencoded")


def build_client(token: str, base_url: str | None = None) -> AsyncWebClient:
    """A Web API client that honours 429 Retry-After on every call."""
    kwargs = {"base_url": base_url} if base_url else {}
    return AsyncWebClient(token=token, retry_handlers=[CountingRateLimitHandler(max_retry_count=3)], **kwargs)


class SlackAdapter:
    """One bolt app for both transports (HTTP Events API and Socket Mode)."""

    def __init__(
        self,
        engine: Any,
        admin: Admin,
        settings: Settings,
        client: AsyncWebClient | None = None,
        bot_user_id: str | None = None,
        update_interval: float = UPDATE_INTERVAL,
        dedupe: Any = None,
        gate: Callable[[], Awaitable[None]] | None = None,
        journal: Any = None,
    ) -> None:
        """`dedupe`: shared (Redis) de-duplication, else in-process. `gate`: raises `StateUnavailable`
        when shared state is down, so deliveries are refused (503, Slack retries) rather than lost.
        `journal`: answers in progress in Redis (bot.state.journal_redis), taken over by `recover()`
        elsewhere if this process dies mid-answer."""
        slack = settings.slack
        token = slack.bot_token.get_secret_value() if slack.bot_token else ""
        self.engine = engine
        self.admin = admin
        self.settings = settings
        self.client = client or build_client(token, slack.api_url)
        self.dedupe = dedupe or local_dedupe()
        self.gate = gate
        self._secret = slack.signing_secret.get_secret_value().encode() if slack.signing_secret else b""
        self.journal = journal
        self._working: set[str] = set()
        self.inflight = InFlight()
        # Slack allows about one chat.postMessage a second per channel, and chat.update is rate-limited
        # per method (Tier 3): posts and edits are paced separately, so the first streamed text can
        # replace the placeholder at once instead of a second later
        self.pacer = ChannelPacer(update_interval)
        self.edit_pacer = ChannelPacer(update_interval)
        self.ignored: deque[str] = deque(maxlen=100)  # recent reasons for not answering (simulate reads them)
        self.follow_threads = slack.follow_threads
        self.allowlist = slack.bot_allowlist
        kwargs: dict[str, Any] = {}
        if bot_user_id:  # known already (simulation): no auth.test round trip
            kwargs["authorize"] = self._fixed_authorize(token, bot_user_id)
        self.app = AsyncApp(
            client=self.client,
            signing_secret=slack.signing_secret.get_secret_value() if slack.signing_secret else None,
            process_before_response=False,
            raise_error_for_unhandled_request=False,
            ignoring_self_events_enabled=False,  # skip_reason handles them, and says so
            **kwargs,
        )
        self._register()

    @staticmethod
    def _fixed_authorize(token: str, bot_user_id: str) -> Callable[..., Awaitable[AuthorizeResult]]:
        async def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult:
            return AuthorizeResult(
                enterprise_id=enterprise_id, team_id=team_id, bot_user_id=bot_user_id, bot_id=None, bot_token=token
            )

        return authorize

    def _register(self) -> None:
        app = self.app
        app.event("app_mention")(self._on_mention)
        app.event("message")(self._on_message)
        app.command("/advisor")(self._on_command)
        app.action(FEEDBACK_UP)(self._on_feedback)
        app.action(FEEDBACK_DOWN)(self._on_feedback)
        app.error(self._on_error)

    def _ignore(self, reason: str) -> None:
        log.debug("not answering: %s", reason)
        self.ignored.append(reason)

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error("slack handler failed for %s: %s", body.get("type", "request"), error, exc_info=error)

    # -- events -------------------------------------------------------------

    async def _on_mention(self, event: dict[str, Any], context: Any, body: dict[str, Any]) -> None:
        if reason := skip_reason(event, context.bot_user_id, context.bot_id, self.allowlist):
            self._ignore(reason)
            return
        thread_ts = event.get("thread_ts") or event["ts"]
        await self._answer(event, body, thread_ts, context.bot_user_id)

    async def _on_message(self, event: dict[str, Any], context: Any, body: dict[str, Any]) -> None:
        if reason := skip_reason(event, context.bot_user_id, context.bot_id, self.allowlist):
            self._ignore(reason)
            return
        if event.get("channel_type") == "im":
            await self._answer(event, body, event.get("thread_ts"), context.bot_user_id)
            return
        thread_ts = event.get("thread_ts")
        mentioned = context.bot_user_id and f"<@{context.bot_user_id}>" in (event.get("text") or "")
        if mentioned:
            self._ignore("a mention: answered from its app_mention event")
        elif not thread_ts:
            self._ignore("a channel message that does not mention the bot")
        elif not self.follow_threads:
            self._ignore("a thread reply without a mention (following threads is off)")
        else:
            key = self._conversation(body, event, thread_ts)
            if any(turn.role == "assistant" for turn in await self.engine.memory.history(str(key.conversation))):
                await self._answer(event, body, thread_ts, context.bot_user_id)
            else:
                self._ignore("a reply in a thread the bot has not answered")

    def _conversation(self, body: dict[str, Any], event: dict[str, Any], thread_ts: str | None) -> IncomingMessage:
        channel = event["channel"]
        return IncomingMessage(
            platform="slack",
            workspace=body.get("team_id") or event.get("team") or "",
            channel=channel,
            thread=thread_ts or channel,
            author=event.get("user") or event.get("bot_id") or "",
            text=event.get("text") or "",
            sent_at=float(event.get("ts") or time.time()),
            message_id=event.get("ts") or "",
        )

    async def _answer(self, event: dict[str, Any], body: dict[str, Any], thread_ts: str | None, bot_user_id: str | None) -> None:
        channel, ts = event["channel"], event["ts"]
        key = f"{channel}:{ts}"
        metrics.event_in("slack", "dm" if event.get("channel_type") == "im" else "message")
        if not await self.dedupe.claim(key):
            log.info("duplicate delivery of %s ignored (event %s)", key, body.get("event_id"))
            metrics.duplicate_dropped("slack")
            self.ignored.append(f"duplicate delivery of message {ts} in {channel}")
            return
        work = {"event": event, "team_id": body.get("team_id"), "thread_ts": thread_ts, "bot_user_id": bot_user_id}
        if self.journal is not None:
            await self.journal.begin(key, work)
        await self._work(key, work)

    async def _work(self, key: str, work: dict[str, Any]) -> None:
        """Answer a journalled message (new, or taken over from a process that died mid-answer)."""
        event, thread_ts, bot_user_id = work["event"], work.get("thread_ts"), work.get("bot_user_id")
        channel = event["channel"]
        message = self._conversation({"team_id": work.get("team_id")}, event, thread_ts)
        text = re.sub(rf"<@{re.escape(bot_user_id)}>\s*", "", message.text).strip() if bot_user_id else message.text
        message = IncomingMessage(**{**message.__dict__, "text": text})
        self._working.add(key)
        done = False
        try:
            with turn_context(new_turn_id(), str(message.conversation), "slack"):
                async with self.inflight.track():
                    await self._stream(message, channel, thread_ts, key, work)
            done = True
        except SlackApiError as exc:
            done = True  # a retry (if Slack sends one) starts afresh
            await self.dedupe.release(key)  # nothing (or not all) reached Slack: a retry may try again
            log.error("posting the answer to %s failed: %s", channel, exc.response.get("error"))
        finally:
            self._working.discard(key)
            if done and self.journal is not None:
                await self.journal.finish(key)

    async def recover(self, interval: float | None = None) -> None:
        """Keep this process's journal leases alive and finish answers whose process died, forever
        (a task of the web process; returns at once without a journal)."""
        if self.journal is not None:
            await self.journal.watch(lambda: self._working, self._work, lambda: self.inflight.draining, interval)

    async def _stream(
        self, message: IncomingMessage, channel: str, thread_ts: str | None, key: str = "", work: dict[str, Any] | None = None
    ) -> None:
        if work and work.get("placeholder"):  # taken over: the placeholder is already on screen
            message_ts = work["placeholder"]
        else:
            await self.pacer.wait(channel)
            posted = await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=PLACEHOLDER)
            message_ts = posted["ts"]
            if work is not None and self.journal is not None:
                await self.journal.update(key, {**work, "placeholder": message_ts})
        streamed = ""
        final: Final | None = None
        notices: list[Notice] = []
        try:
            async for event in self.engine.answer(message):
                if isinstance(event, TextDelta):
                    streamed += event.text
                    if self.edit_pacer.ready(channel):
                        await self.edit_pacer.wait(channel)
                        await self.client.chat_update(channel=channel, ts=message_ts, text=preview(streamed))
                elif isinstance(event, Notice) and event.kind in SHOWN_NOTICES:
                    notices.append(event)
                elif isinstance(event, Final):
                    final = event
        except SlackApiError:
            raise
        except Exception:  # a bug or an outage inside the engine: say so instead of "Thinking…" forever
            log.exception("answering %s failed", message.message_id)
            await self.client.chat_update(channel=channel, ts=message_ts, text=SORRY)
            return
        assert final is not None
        text = "\n\n".join([*(f"_{n.text}_" for n in notices), final.text]) if notices else final.text
        messages = answer_messages(text, final.citations, final.turn_id)
        for index, (fallback, blocks) in enumerate(messages):
            if index == 0:
                await self.edit_pacer.wait(channel)
                await self.client.chat_update(channel=channel, ts=message_ts, text=fallback, blocks=blocks)
            else:
                await self.pacer.wait(channel)
                await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=fallback, blocks=blocks)
        await self._alert_admins(final, message, channel, thread_ts or message_ts)

    async def _alert_admins(self, final: Final, message: IncomingMessage, channel: str, thread_ts: str) -> None:
        """Post the engine's admin alert, if any, to ADVISOR_SAFETY_ALERT_CHANNEL; a failure is only logged."""
        target = alert_channel(self.settings.safety.alert_channel, "slack")
        text = alert_text(final, message, f"<#{channel}> (thread {thread_ts})")
        if target is None or text is None:
            return
        try:
            await self.client.chat_postMessage(channel=target, text=text)
        except SlackApiError as exc:
            log.error("could not post a safety alert to %s: %s", target, exc.response.get("error"))

    # -- /advisor -----------------------------------------------------------

    async def _is_admin(self, user_id: str) -> bool:
        if user_id in self.settings.admins.slack_user_ids:
            return True
        try:
            user = (await self.client.users_info(user=user_id))["user"]
        except SlackApiError as exc:
            log.warning("users.info failed for an admin check: %s", exc.response.get("error"))
            return False
        return bool(user.get("is_admin") or user.get("is_owner"))

    async def _on_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        verb, _, rest = (command.get("text") or "").strip().partition(" ")
        verb = verb.lower()
        user, channel = command.get("user_id", ""), command.get("channel_id", "")
        team = command.get("team_id", "")
        if verb == "ask" and rest.strip():
            await ack(response_type="ephemeral", text=PLACEHOLDER)
            message = IncomingMessage("slack", team, channel, f"slash-{user}", user, rest.strip(), time.time())
            final = [e async for e in self.engine.answer(message) if isinstance(e, Final)][0]
            parts = answer_messages(final.text, final.citations, None)
            for fallback, blocks in parts:
                await respond(response_type="ephemeral", text=fallback, blocks=blocks)
        elif verb == "status":
            status = await self.admin.status()
            await ack(response_type="ephemeral", text="\n".join(f"*{k.replace('_', ' ')}*: {v}" for k, v in status.items()))
        elif verb == "forget":
            removed = await self._forget(team, channel, user)
            await ack(response_type="ephemeral", text=f"Done: I forgot our conversations here ({removed} messages).")
        elif verb == "reindex":
            await self._reindex(ack, respond, user, rest.strip() or None)
        else:
            await ack(response_type="ephemeral", text=HELP)

    async def _forget(self, team: str, channel: str, user: str) -> int:
        prefix = f"slack:{team}:{channel}:"
        removed = 0
        for conversation in await self.engine.memory.conversations_of(prefix, user):
            removed += await self.engine.forget(conversation)
        return removed

    async def _reindex(self, ack: Any, respond: Any, user: str, path: str | None) -> None:
        if not await self._is_admin(user):
            await ack(response_type="ephemeral", text="Sorry, only workspace admins can reindex the knowledge base.")
            return
        if await self.admin.reindex_running():
            await ack(response_type="ephemeral", text="A reindex is already running; I'll post here when it's done.")
            return
        try:
            self.admin.resolve(path)
        except AdminError as exc:
            await ack(response_type="ephemeral", text=str(exc))
            return
        await ack(response_type="ephemeral", text="Reindexing the knowledge base… I'll post progress here.")
        progress = ReindexProgress(lambda text: respond(response_type="ephemeral", text=text), 5, "…{files} files read")
        try:
            report = await self.admin.reindex(path, progress)
        except AdminError as exc:
            await respond(response_type="ephemeral", text=str(exc))
            return
        await progress.settle()
        await respond(response_type="ephemeral", text=f"Reindex finished.\n```{report.summary()}```")

    # -- feedback -----------------------------------------------------------

    async def _on_feedback(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        action = (body.get("actions") or [{}])[0]
        value = 1 if action.get("action_id") == FEEDBACK_UP else -1
        stored = await self.engine.record_feedback(action.get("value", ""), value)
        text = "Thanks for the feedback." if stored else "Sorry, I couldn't find that answer any more."
        await respond(response_type="ephemeral", replace_original=False, text=text)

    # -- transports ---------------------------------------------------------

    def web_app(self) -> web.Application:
        """HTTP mode: events, slash commands and interactivity all at /slack/events, and /healthz."""

        async def health(_: web.Request) -> web.Response:
            return web.json_response({"ok": True})

        application = web.Application(client_max_size=MAX_BODY)
        self.add_routes(application)
        application.router.add_get("/healthz", health)
        return application

    def _signed(self, raw: bytes, headers: Any) -> bool:
        """Slack's v0 signature over the raw bytes (bolt's own check needs a body it can parse)."""
        timestamp = headers.get("X-Slack-Request-Timestamp", "")
        if not self._secret or not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
            return False
        expected = "v0=" + hmac.new(self._secret, b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, headers.get("X-Slack-Signature", ""))

    def add_routes(self, application: web.Application) -> None:
        """POST /slack/events on an existing app (the web process serves other routes beside it)."""

        async def events(request: web.Request) -> web.Response:
            if self.inflight.draining:  # shutting down: Slack retries the delivery (to another worker)
                return web.json_response({"error": "shutting down"}, status=503, headers={"Retry-After": "1"})
            if request.content_type not in ACCEPTED_TYPES:
                return web.json_response({"error": f"unsupported content type {request.content_type!r}"}, status=415)
            if (request.content_length or 0) > MAX_BODY:
                return web.json_response({"error": "request body too large"}, status=413)
            timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
            well_shaped = timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12
            if not well_shaped or not request.headers.get("X-Slack-Signature"):
                return web.json_response({"error": "missing or malformed Slack signature headers"}, status=401)
            # the signature is checked on the raw bytes before anything parses them: an unsigned body
            # (10,000-deep JSON, say) never reaches a parser, and bolt never logs it
            if not self._signed(await request.read(), request.headers):
                return web.json_response({"error": "invalid request signature"}, status=401)
            if self.gate is not None:
                try:
                    await self.gate()
                except StateUnavailable as exc:  # not acknowledged, so not lost: Slack delivers it again
                    log.error("refusing a delivery while shared state is down: %s", exc)
                    return web.json_response({"error": "temporarily unavailable"}, status=503, headers={"Retry-After": "5"})
            try:
                bolt_request = await to_bolt_request(request)
                well_formed = _well_formed(bolt_request.body)
            except (ValueError, TypeError, AttributeError, RecursionError):  # not UTF-8, JSON or an object
                well_formed = False
            if not well_formed:  # signed, but not a body Slack sends
                return web.json_response({"error": "malformed request body"}, status=400)
            response = await self.app.async_dispatch(bolt_request)
            if response.status == 404:  # verified, but nothing handles it (a new event type): ack so Slack won't retry
                return web.Response(status=200)
            return await to_aiohttp_response(response)

        application.router.add_post("/slack/events", events)

    def socket_mode(self, app_token: str) -> Any:
        """Socket Mode over the same app: `await handler.start_async()` runs until stopped."""
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        return AsyncSocketModeHandler(self.app, app_token, web_client=self.client)


__all__ = ["SlackAdapter", "build_client", "skip_reason", "sources_text"]
