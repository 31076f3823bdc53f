"""Slack adapter on slack-bolt (async): events, the /advisor command, feedback buttons.

Rules: a mention in a channel is answered in a thread under it; a DM is answered in the
DM (in its thread if the user wrote in one); a reply in a thread the bot answered
continues it without a mention. Every request is acked before any I/O (bolt acks events at
once; commands and clicks ack first and reply through their response_url) and the work runs
after; each message (channel + ts) is answered once, whatever the retries. Every answer
reaches its user even when a write fails (adapters/slack/writer.py), or the failure is logged,
counted and alerted; one pacer per workspace keeps all the answers' edits inside chat.update's
limit (adapters/pacer.py). No user text is logged, by us or by bolt (adapters/slack/quiet.py).
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

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters import pacer as pacing
from adapters.ops_http import CountingRateLimitHandler
from adapters.progress import ReindexProgress
from adapters.render import SHOWN_NOTICES
from adapters.slack import quiet
from adapters.slack.assistant import AssistantSurface, AssistantTurn
from adapters.slack.format import FEEDBACK_DOWN, FEEDBACK_NATIVE, FEEDBACK_UP, Answer, answer_messages, feedback_of
from adapters.slack.format import sources_text
from adapters.slack.native_stream import NativeWriter, Streams
from adapters.slack.writer import PLACEHOLDER, AnswerWriter, ChannelPacer, error_code
from bot.ops import metrics
from bot.ops.admin import Admin, AdminError
from bot.ops.alerts import alert_channel, alert_text, undelivered_text
from bot.state import local_dedupe
from bot.ops.inflight import InFlight
from bot.ops.logs import new_turn_id, turn_context
from bot.models import Final, IncomingMessage, Notice, TextDelta
from bot.ports import StateUnavailable
from config.settings import Settings

log = logging.getLogger(__name__)

USER_SUBTYPES = {None, "file_share", "thread_broadcast"}
UPDATE_INTERVAL = 1.0  # least seconds between one answer's edits, and between posts in one channel
# chat.update is Tier 3 (about 50 a minute per workspace): every answer's edits share 45 a minute
EDIT_LIMIT, EDIT_WINDOW = 45, 60.0
GATE_TIMEOUT = 1.0  # a shared-state check slower than this refuses the delivery (well inside Slack's 3 s)
SORRY = "Sorry, something went wrong on my side and I couldn't answer. Please try again in a moment."
COMMANDS = frozenset({"ask", "status", "forget", "reindex"})
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


def _without_retries(client: AsyncWebClient) -> AsyncWebClient:
    """`client` that gives up at the first 429 (still counted): for previews, which a later edit supersedes."""
    return AsyncWebClient(
        token=client.token, base_url=client.base_url, timeout=client.timeout, ssl=client.ssl, proxy=client.proxy,
        headers=client.headers, retry_handlers=[CountingRateLimitHandler(max_retry_count=0)],
    )  # fmt: skip


class _Reply:
    """A command's or a click's private reply: through its response_url, else chat.postEphemeral."""

    def __init__(self, client: AsyncWebClient, respond: Any, channel: str, user: str) -> None:
        self.client, self.respond, self.channel, self.user = client, respond, channel, user
        self.failures: list[str] = []

    async def __call__(self, text: str, blocks: list[dict[str, Any]] | None = None) -> bool:
        """Show `text` (and `blocks`) to the user; False (logged) if neither way could."""
        try:
            response = await self.respond(response_type="ephemeral", replace_original=False, text=text, blocks=blocks)
            if response.status_code == 200:
                return True
            self.failures.append(f"response_url: HTTP {response.status_code}")
        except (ValueError, aiohttp.ClientError, TimeoutError) as exc:  # no response_url, or unreachable
            self.failures.append(f"response_url: {type(exc).__name__}")
        log.warning("a reply through the response_url failed (%s): trying chat.postEphemeral", self.failures[-1])
        try:
            extra = {"blocks": blocks} if blocks else {}
            await self.client.chat_postEphemeral(channel=self.channel, user=self.user, text=text, **extra)
            return True
        except SlackApiError as exc:
            self.failures.append(f"chat.postEphemeral: {error_code(exc)}")
        log.error("a reply to %s in %s could not be shown: %s", self.user, self.channel, "; ".join(self.failures))
        return False


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
        edit_limit: float = EDIT_LIMIT,
        edit_window: float = EDIT_WINDOW,
    ) -> None:
        """`dedupe`: shared (Redis) de-duplication, else in-process. `gate`: raises `StateUnavailable`
        when shared state is down, so events are refused (503, Slack retries) rather than lost.
        `journal`: answers in progress in Redis (bot.state.journal_redis), taken over by `recover()`
        elsewhere if this process dies mid-answer. `edit_limit` edits in any `edit_window` seconds:
        the chat.update budget all answers in a workspace share (several processes: divide it)."""
        slack = settings.slack
        token = slack.bot_token.get_secret_value() if slack.bot_token else ""
        self.engine = engine
        self.admin = admin
        self.settings = settings
        self.client = client or build_client(token, slack.api_url)
        self._preview_client = _without_retries(self.client)
        self.dedupe = dedupe or local_dedupe()
        self.gate = gate
        self._secret = slack.signing_secret.get_secret_value().encode() if slack.signing_secret else b""
        self.journal = journal
        self._working: set[str] = set()
        self.inflight = InFlight()
        # Slack allows about one chat.postMessage a second per channel, and chat.update per workspace
        # (Tier 3): posts are paced per channel, edits per workspace, so the first streamed text can
        # replace the placeholder at once instead of a second later
        self.pacer = ChannelPacer(update_interval)
        self.edits = pacing.Pacer(edit_limit, edit_window, update_interval)
        # native streaming (chat.startStream...) where the workspace has it; its budgets use the same minute
        self.streams = Streams(slack.native_streaming, window=edit_window, min_interval=update_interval)
        self.ignored: deque[str] = deque(maxlen=100)  # recent reasons for not answering (simulate reads them)
        self.follow_threads = slack.follow_threads
        self.allowlist = slack.bot_allowlist
        kwargs: dict[str, Any] = {}
        if bot_user_id:  # known already (simulation): no auth.test round trip
            kwargs["authorize"] = self._fixed_authorize(token, bot_user_id)
        self.app = AsyncApp(
            client=self.client,
            logger=quiet.install(),  # bolt's loggers, and slack_sdk's, print no payload
            signing_secret=slack.signing_secret.get_secret_value() if slack.signing_secret else None,
            process_before_response=False,
            raise_error_for_unhandled_request=False,
            ignoring_self_events_enabled=False,  # skip_reason handles them, and says so
            **kwargs,
        )
        self.assistant = AssistantSurface(self, slack.suggested_prompts)  # the AI app split view
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
        app.assistant(self.assistant.middleware)  # assistant threads first; other DMs fall through to _on_message
        app.event("app_mention")(self._on_mention)
        app.event("message")(self._on_message)
        app.command("/advisor")(self._on_command)
        app.action(FEEDBACK_UP)(self._on_feedback)
        app.action(FEEDBACK_DOWN)(self._on_feedback)
        app.action(FEEDBACK_NATIVE)(self._on_feedback)  # Slack's feedback_buttons under a streamed answer
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
        if thread_ts and self.assistant.is_thread(event):
            work["assistant"] = True  # journalled: a process taking it over sets the status too
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
                    if not await self._stream(message, channel, thread_ts, key, work):
                        await self.dedupe.release(key)  # not (all) shown: a retry, if Slack sends one, tries again
            done = True
        finally:
            self._working.discard(key)
            if done and self.journal is not None:  # else (cancelled, state down) another process takes it over
                await self.journal.finish(key)

    async def recover(self, interval: float | None = None) -> None:
        """Keep this process's journal leases alive and finish answers whose process died, forever
        (a task of the web process; returns at once without a journal)."""
        if self.journal is not None:
            await self.journal.watch(lambda: self._working, self._work, lambda: self.inflight.draining, interval)

    async def _stream(
        self, message: IncomingMessage, channel: str, thread_ts: str | None, key: str = "", work: dict[str, Any] | None = None
    ) -> bool:
        """Answer `message` in the channel (thread); False if the answer could not all be shown."""
        assistant = await self._assistant_turn(message, channel, thread_ts, work)
        with self.edits.answer(message.workspace) as paced:
            fallback = AnswerWriter(
                self.client, self._preview_client, self.pacer, self.edits, paced, message.workspace, channel, thread_ts
            )
            writer = self.streams.writer(fallback, thread_ts, message.author, message.workspace, self._remember(key, work))

            async def start() -> None:
                if await writer.start() and work is not None and self.journal is not None:
                    await self.journal.update(key, {**work, "placeholder": writer.ts})

            if work and work.get("placeholder"):  # taken over: the placeholder is already on screen
                writer.ts = work["placeholder"]
            elif work and work.get("stream"):  # taken over: its native streams are stopped and rewritten
                await writer.adopt(work)
            elif assistant is None:
                await start()
            # in an assistant thread the status shows until the first text: a placeholder would clear it
            answer, final = await self._compose(message, writer, start if assistant and writer.ts is None else None)
            delivered = await writer.finish(answer)
        if assistant is not None:
            await assistant.end()
        where = f"<#{channel}> (thread {thread_ts or message.message_id})"
        if assistant is not None and assistant.viewing:
            where += f", assistant thread while viewing <#{assistant.viewing}>"
        if not delivered:
            await self._undelivered(message, where, writer.failures)
        elif final is not None:
            await self._alert_admins(final, message, where)
        return delivered

    async def _assistant_turn(
        self, message: IncomingMessage, channel: str, thread_ts: str | None, work: dict[str, Any] | None
    ) -> AssistantTurn | None:
        """In an assistant thread: its title (first question) and status set, else None."""
        if not (work and work.get("assistant") and thread_ts):
            return None
        turn = self.assistant.turn(channel, thread_ts)
        try:
            first = not any(t.role == "user" for t in await self.engine.memory.history(str(message.conversation)))
        except Exception:  # memory down: no title this time; the engine reports the outage itself
            log.warning("could not read the history of an assistant thread in %s", channel)
            first = False
        await turn.begin(message.text, first)
        return turn

    async def _compose(
        self, message: IncomingMessage, writer: NativeWriter, first_text: Callable[[], Awaitable[None]] | None = None
    ) -> tuple[Answer, Final | None]:
        """Run the engine, previewing the text as it comes: the final's messages, or SORRY if it failed.
        `first_text` runs before the first text is shown (an assistant thread's deferred placeholder)."""
        streamed = ""
        final: Final | None = None
        notices: list[Notice] = []
        try:
            async for event in self.engine.answer(message):
                if isinstance(event, TextDelta):
                    if first_text is not None:
                        await first_text()
                        first_text = None
                    streamed += event.text
                    await writer.preview(streamed)
                elif isinstance(event, Notice) and event.kind in SHOWN_NOTICES:
                    notices.append(event)
                elif isinstance(event, Final):
                    final = event
        except Exception:  # a bug or an outage inside the engine: say so instead of "Thinking…" forever
            log.exception("answering %s failed", message.message_id)
            return Answer(SORRY, plain=True), None
        assert final is not None
        text = "\n\n".join([*(f"_{n.text}_" for n in notices), final.text]) if notices else final.text
        return Answer(text, final.citations, final.turn_id), final

    def _remember(self, key: str, work: dict[str, Any] | None) -> Callable[[dict[str, Any]], Awaitable[None]] | None:
        """Keeps what the answer has on screen (its streams' ts) in the journal, for a takeover."""
        if work is None or self.journal is None:
            return None

        async def remember(entry: dict[str, Any]) -> None:
            await self.journal.update(key, {**work, **entry})

        return remember

    async def _undelivered(self, message: IncomingMessage, where: str, failures: list[str]) -> None:
        """No write could show (all of) the answer: a log line, a metric and an admin alert, never silence."""
        reason = failures[-1] if failures else "unknown"
        log.error(
            "the answer to message %s in %s could not be shown (%s)",
            message.message_id, where, "; ".join(failures),
        )
        metrics.write_failed("slack", "lost")
        await self._post_alert(undelivered_text(where, message.author, reason))

    async def _alert_admins(self, final: Final, message: IncomingMessage, where: str) -> None:
        """Post the engine's admin alert, if any, to ADVISOR_SAFETY_ALERT_CHANNEL."""
        text = alert_text(final, message, where)
        if text is not None:
            await self._post_alert(text)

    async def _post_alert(self, text: str) -> None:
        """An alert to ADVISOR_SAFETY_ALERT_CHANNEL (when set); a failure to post it is only logged."""
        target = alert_channel(self.settings.safety.alert_channel, "slack")
        if target is None:
            log.warning("no slack alert channel is set (ADVISOR_SAFETY_ALERT_CHANNEL): an admin alert was not posted")
            return
        try:
            await self.client.chat_postMessage(channel=target, text=text)
        except SlackApiError as exc:
            log.error("could not post an admin alert to %s: %s", target, error_code(exc))

    # -- /advisor -----------------------------------------------------------

    async def _is_admin(self, user_id: str) -> bool:
        if user_id in self.settings.admins.slack_user_ids:
            return True
        try:
            user = (await self.client.users_info(user=user_id))["user"]
        except SlackApiError as exc:
            log.warning("users.info failed for an admin check: %s", error_code(exc))
            return False
        return bool(user.get("is_admin") or user.get("is_owner"))

    async def _on_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        """Ack first (nothing on screen: Slack cannot replace a command's ack later), then do the
        work and reply through the response_url (or chat.postEphemeral if that fails)."""
        verb, _, rest = (command.get("text") or "").strip().partition(" ")
        verb, rest = verb.lower(), rest.strip()
        if verb not in COMMANDS or (verb == "ask" and not rest):
            await ack(response_type="ephemeral", text=HELP)
            return
        await ack(response_type="ephemeral")
        user, channel = command.get("user_id", ""), command.get("channel_id", "")
        team = command.get("team_id", "")
        reply = _Reply(self.client, respond, channel, user)
        try:
            if verb == "ask":
                question = IncomingMessage("slack", team, channel, f"slash-{user}", user, rest, time.time())
                await self._ask(reply, question)
            elif verb == "status":
                status = await self.admin.status()
                await reply("\n".join(f"*{k.replace('_', ' ')}*: {v}" for k, v in status.items()))
            elif verb == "forget":
                removed = await self._forget(team, channel, user)
                await reply(f"Done: I forgot our conversations here ({removed} messages).")
            else:
                await self._reindex(reply, user, rest or None)
        except Exception:  # the engine, memory or store failed: say so rather than leave the user waiting
            log.exception("/advisor %s failed", verb)
            await reply(SORRY)

    async def _ask(self, reply: _Reply, message: IncomingMessage) -> None:
        final = [e async for e in self.engine.answer(message) if isinstance(e, Final)][0]
        for fallback, blocks in answer_messages(final.text, final.citations, None):
            if not await reply(fallback, blocks):
                await self._undelivered(message, f"<#{message.channel}> (/advisor ask)", reply.failures)
                return

    async def _forget(self, team: str, channel: str, user: str) -> int:
        prefix = f"slack:{team}:{channel}:"
        removed = 0
        for conversation in await self.engine.memory.conversations_of(prefix, user):
            removed += await self.engine.forget(conversation)
        return removed

    async def _reindex(self, reply: _Reply, user: str, path: str | None) -> None:
        if not await self._is_admin(user):
            await reply("Sorry, only workspace admins can reindex the knowledge base.")
            return
        if await self.admin.reindex_running():
            await reply("A reindex is already running; try again when it's done.")
            return
        try:
            self.admin.resolve(path)
        except AdminError as exc:
            await reply(str(exc))
            return
        await reply("Reindexing the knowledge base… I'll post progress here.")
        progress = ReindexProgress(reply, 5, "…{files} files read")
        try:
            report = await self.admin.reindex(path, progress)
        except AdminError as exc:
            await reply(str(exc))
            return
        await progress.settle()
        await reply(f"Reindex finished.\n```{report.summary()}```")

    # -- feedback -----------------------------------------------------------

    async def _on_feedback(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        action = (body.get("actions") or [{}])[0]
        turn, value = feedback_of(action) or ("", -1)
        channel, user = (body.get("channel") or {}).get("id", ""), (body.get("user") or {}).get("id", "")
        reply = _Reply(self.client, respond, channel, user)
        try:
            stored = await self.engine.record_feedback(turn, value)
        except Exception:  # memory down: the click is not lost silently
            log.exception("storing feedback failed")
            await reply("Sorry, I couldn't record that just now. Please try again in a moment.")
            return
        await reply("Thanks for the feedback." if stored else "Sorry, I couldn't find that answer any more.")

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

    async def _state_up(self) -> bool:
        """Shared state answers (within GATE_TIMEOUT: the ack must stay inside Slack's 3 s). Events only:
        a refused event is delivered again, a refused command or click would only show its user an error."""
        if self.gate is None:
            return True
        try:
            await asyncio.wait_for(self.gate(), GATE_TIMEOUT)
        except (StateUnavailable, TimeoutError) as exc:  # not acknowledged, so not lost: Slack delivers it again
            log.error("refusing a delivery while shared state is down or slow: %s", exc or "no answer in time")
            return False
        return True

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
            try:
                bolt_request = await to_bolt_request(request)
                well_formed = _well_formed(bolt_request.body)
            except (ValueError, TypeError, AttributeError, RecursionError):  # not UTF-8, JSON or an object
                well_formed = False
            if not well_formed:  # signed, but not a body Slack sends
                return web.json_response({"error": "malformed request body"}, status=400)
            if bolt_request.body.get("type") == "event_callback" and not await self._state_up():
                return web.json_response({"error": "temporarily unavailable"}, status=503, headers={"Retry-After": "5"})
            response = await self.app.async_dispatch(bolt_request)
            if response.status == 404:  # verified, but nothing handles it (a new event type): ack so Slack won't retry
                return web.Response(status=200)
            return await to_aiohttp_response(response)

        application.router.add_post("/slack/events", events)

    def socket_mode(self, app_token: str) -> Any:
        """Socket Mode over the same app: `await handler.start_async()` runs until stopped."""
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        return AsyncSocketModeHandler(self.app, app_token, web_client=self.client)


__all__ = ["PLACEHOLDER", "SlackAdapter", "build_client", "skip_reason", "sources_text"]
