"""Discord adapter on discord.py: DMs, mentions and reply chains, streamed edits, /advisor.

Rules: a DM is answered; in a guild, a message that mentions the bot or replies to one
of its messages is answered as a reply. A reply chain (followed back through
message_reference, cached) or a thread is one conversation. Every message id is answered
once, whatever resumes and reconnects replay. Nothing the model writes can ping anyone.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import discord
from discord import app_commands

from adapters.discord.installs import NOT_HERE
from adapters.discord.pacing import Pacer
from adapters.progress import ReindexProgress
from adapters.render import SHOWN_NOTICES, split_message
from bot.ops import metrics
from bot.ops.admin import Admin, AdminError
from bot.ops.alerts import alert_channel, alert_text, undelivered_text
from bot.state import local_dedupe
from bot.ops.inflight import InFlight
from bot.ops.logs import new_turn_id, turn_context
from bot.models import Citation, Final, IncomingMessage, Notice, TextDelta
from config.settings import Settings

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000
EDIT_INTERVAL = 1.2  # seconds between edits: Discord allows about 5 per 5 s per channel
ANSWERED_TYPES = {discord.MessageType.default, discord.MessageType.reply}
FEEDBACK_PREFIX = "advisor:feedback:"
NO_PINGS = discord.AllowedMentions.none()
SORRY = "Sorry, something went wrong on my side and I couldn't answer. Please try again in a moment."
BUSY = "A reindex is already running; try again when it's done."
REFUSED = "Sorry, only admins can reindex the knowledge base."


def gateway_client(shard_count: int | None = None) -> discord.AutoShardedClient:
    """A sharded gateway client: `shard_count` shards, or as many as Discord recommends for the
    bot's guild count (GET /gateway/bot: one shard below 2,500 guilds, more as it grows)."""
    return discord.AutoShardedClient(intents=intents(), allowed_mentions=NO_PINGS, shard_count=shard_count)


def intents() -> discord.Intents:
    """What the bot needs; message content is privileged and must be enabled in the portal."""
    wanted = discord.Intents.default()
    wanted.message_content = True
    return wanted


def reindex_allowed_here(interaction: discord.Interaction) -> bool:
    """Not in group DMs or DMs between people (context 2), nor in a guild that only has the user
    install (the bot is not a member there); the bot's own DM and the guilds it serves are fine."""
    if interaction.context.private_channel:
        return False
    return interaction.guild_id is None or interaction.is_guild_integration()


def failure(exc: discord.HTTPException) -> str:
    """A failed write for logs and alerts: status and Discord's error code, never a message's text."""
    return f"HTTP {exc.status}, Discord code {exc.code}"


def dm_parts(parts: list[str], channel_id: int) -> list[str]:
    """The answer as a DM, saying where it was meant to go."""
    note = f"-# I couldn't post this in <#{channel_id}>, so here it is."
    if len(note) + 1 + len(parts[0]) <= MESSAGE_LIMIT:
        return [f"{note}\n{parts[0]}", *parts[1:]]
    return [note, *parts]


def sources_line(citations: tuple[Citation, ...]) -> str:
    items = [f"[{c.number}] {c.title}" + (f", {c.location}" if c.location else "") for c in citations]
    return "-# Sources: " + " · ".join(items) if items else ""


def answer_parts(final: Final, notices: list[Notice]) -> list[str]:
    """Messages of at most 2,000 characters: notices, the answer, then the sources line."""
    body = "\n\n".join([*(f"*{n.text}*" for n in notices), final.text])
    parts = split_message(body, MESSAGE_LIMIT)
    tail = sources_line(final.citations)
    if tail and len(parts[-1]) + 2 + len(tail) <= MESSAGE_LIMIT:
        parts[-1] = f"{parts[-1]}\n\n{tail}"
    elif tail:
        parts.append(tail)
    return parts


class FeedbackView(discord.ui.View):
    """👍/👎 under an answer; custom ids carry the turn id, so clicks work after a restart."""

    def __init__(self, turn_id: int) -> None:
        super().__init__(timeout=None)
        for emoji, value in (("👍", "up"), ("👎", "down")):
            self.add_item(discord.ui.Button(emoji=emoji, custom_id=f"{FEEDBACK_PREFIX}{value}:{turn_id}"))


class ChainCache:
    """message id -> root id of its reply chain, bounded (oldest forgotten first)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._roots: OrderedDict[int, int] = OrderedDict()

    def get(self, message_id: int) -> int | None:
        root = self._roots.get(message_id)
        if root is not None:
            self._roots.move_to_end(message_id)
        return root

    def put(self, message_id: int, root: int) -> None:
        self._roots[message_id] = root
        self._roots.move_to_end(message_id)
        while len(self._roots) > self.size:
            self._roots.popitem(last=False)


class OnceTree(app_commands.CommandTree):
    """A command tree that runs each interaction id once: a gateway replay of one already handled (a
    resume, a duplicate delivery) is dropped before it is acked again. In memory, so no I/O comes before
    the 3-second ack; across processes Discord's own 40060 "already acknowledged" stops the rest."""

    def __init__(self, client: discord.Client, size: int = 10_000) -> None:
        super().__init__(client)
        self.size = size
        self._seen: OrderedDict[int, None] = OrderedDict()

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if interaction.id in self._seen:
            log.info("duplicate delivery of interaction %s: not run again", interaction.id)
            metrics.duplicate_dropped("discord")
            return False
        self._seen[interaction.id] = None
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True


class DiscordAdapter:
    def __init__(
        self,
        engine: Any,
        admin: Admin,
        settings: Settings,
        client: discord.Client | None = None,
        edit_interval: float = EDIT_INTERVAL,
        dedupe: Any = None,
        journal: Any = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.engine = engine
        self.admin = admin
        self.settings = settings.discord
        self.admins = settings.admins
        self.safety = settings.safety
        self.client = client or gateway_client(settings.discord.shard_count)
        self.tree = OnceTree(self.client)
        self.dedupe = dedupe or local_dedupe()  # shared (Redis) across processes and shards when given
        self.inflight = InFlight()
        self.journal = journal  # answers in progress in Redis, finished elsewhere if this process dies
        self._working: set[str] = set()
        self.chains = ChainCache()
        self.edit_interval = edit_interval
        self.pacer = pacer or Pacer()  # one per process: streaming edits stay inside Discord's limits
        self.ignored: deque[str] = deque(maxlen=100)
        self._synced = False
        self._reindex_claimed = False
        self._register()

    def _register(self) -> None:
        self.client.event(self.on_ready)
        self.client.event(self.on_message)
        self.client.event(self.on_interaction)
        self.tree.add_command(self._commands())

    async def on_ready(self) -> None:
        if not self._synced:  # once per process, not on every reconnect
            self._synced = True
            commands = await self._sync()
            log.info("Discord ready as %s; %d slash command group(s) synced", self.client.user, len(commands))

    async def _sync(self) -> list[app_commands.AppCommand]:
        """Register /advisor for guild and user installs; if Discord refuses the user install (the app does
        not offer it: Developer Portal > Installation), register it for servers and the bot's DM only."""
        try:
            return await self.tree.sync()
        except discord.HTTPException as exc:
            if exc.status != 400 or "integration_types" not in str(exc):
                raise
        log.warning(
            "Discord refused /advisor for user installs; enable User Install under Installation in the Developer "
            "Portal. Registered for servers and the bot's DM only."
        )
        group = self.tree.get_command("advisor")
        assert isinstance(group, app_commands.Group)
        group.allowed_installs = app_commands.AppInstallationType(guild=True)
        group.allowed_contexts = app_commands.AppCommandContext(guild=True, dm_channel=True)
        return await self.tree.sync()

    def _ignore(self, reason: str) -> None:
        log.debug("not answering: %s", reason)
        self.ignored.append(reason)

    # -- messages -----------------------------------------------------------

    def skip_reason(self, message: discord.Message) -> str | None:
        me = self.client.user
        if me is not None and message.author.id == me.id:
            return "the bot's own message"
        if message.type not in ANSWERED_TYPES:
            return f"a system message ({message.type.name})"
        if (message.author.bot or message.webhook_id) and str(message.author.id) not in self.settings.bot_allowlist:
            return "a message from a bot or webhook"
        guild = message.guild
        if guild is not None:
            if self.settings.allowed_guild_ids and str(guild.id) not in self.settings.allowed_guild_ids:
                return "a guild that is not allowed"
            channel_ids = {str(message.channel.id), str(getattr(message.channel, "parent_id", "") or "")}
            if self.settings.allowed_channel_ids and not channel_ids & set(self.settings.allowed_channel_ids):
                return "a channel that is not allowed"
        return None

    async def _replied_to_bot(self, message: discord.Message) -> bool:
        reference = message.reference
        if reference is None or reference.message_id is None or self.client.user is None:
            return False
        target = reference.resolved if isinstance(reference.resolved, discord.Message) else None
        if target is None:
            try:
                target = await message.channel.fetch_message(reference.message_id)
            except discord.HTTPException:
                return False
        return target.author.id == self.client.user.id

    async def _answered_in_thread(self, message: discord.Message) -> bool:
        """A thread the bot was summoned into is one conversation: later messages need no mention."""
        key = f"discord:{message.guild.id if message.guild else 'dm'}:{message.channel.parent_id}:{message.channel.id}"  # type: ignore[union-attr]
        return any(turn.role == "assistant" for turn in await self.engine.memory.history(key))

    async def _root(self, message: discord.Message) -> int:
        """The first message of the reply chain (cached, bounded; at most 50 hops back)."""
        current, seen = message, [message.id]
        for _ in range(50):
            cached = self.chains.get(current.id)
            if cached is not None:
                root = cached
                break
            reference = current.reference
            if reference is None or reference.message_id is None:
                root = current.id
                break
            parent = reference.resolved if isinstance(reference.resolved, discord.Message) else None
            if parent is None:
                try:
                    parent = await current.channel.fetch_message(reference.message_id)
                except discord.HTTPException:
                    root = reference.message_id
                    break
            current = parent
            seen.append(current.id)
        else:
            root = current.id
        for message_id in seen:
            self.chains.put(message_id, root)
        return root

    async def on_message(self, message: discord.Message) -> None:
        if reason := self.skip_reason(message):
            self._ignore(reason)
            return
        me = self.client.user
        text = message.content or ""
        if me is not None:
            text = re.sub(rf"<@!?{me.id}>", "", text).strip()
        in_dm = message.guild is None
        addressed = in_dm or (me is not None and me in message.mentions) or await self._replied_to_bot(message)
        if not addressed and isinstance(message.channel, discord.Thread):
            addressed = await self._answered_in_thread(message)
        if not addressed:
            self._ignore("a guild message that neither mentions nor replies to the bot")
            return
        if not text:
            self._ignore("no text for the bot")
            return
        metrics.event_in("discord", "dm" if message.guild is None else "message")
        if not await self.dedupe.claim(str(message.id)):
            metrics.duplicate_dropped("discord")
            self._ignore(f"duplicate delivery of message {message.id}")
            return
        channel = message.channel
        thread = channel.id if isinstance(channel, discord.Thread) else await self._root(message)
        incoming = IncomingMessage(
            platform="discord",
            workspace=str(message.guild.id) if message.guild else "dm",
            channel=str(getattr(channel, "parent_id", None) or channel.id),
            thread=str(thread),
            author=str(message.author.id),
            text=text,
            sent_at=message.created_at.timestamp(),
            message_id=str(message.id),
        )
        key = str(message.id)
        work = {"channel_id": str(channel.id), "message_id": key, "incoming": asdict(incoming), "posted": []}
        if self.journal is not None:
            await self.journal.begin(key, work)
        await self._work(key, work, message, incoming, [])

    async def _work(
        self,
        key: str,
        work: dict[str, Any],
        message: discord.Message,
        incoming: IncomingMessage,
        posted: list[discord.Message],
    ) -> None:
        """Answer a journalled message (new, or taken over from a process that died mid-answer)."""
        self._working.add(key)
        done = False
        try:
            with turn_context(new_turn_id(), str(incoming.conversation), "discord"):
                async with self.inflight.track():
                    await self._stream(message, incoming, posted, key, work)
            done = True
        except Exception:  # a bug or an outage inside the engine: say so rather than stay silent
            done = True
            log.exception("answering message %s failed", message.id)
            await self._deliver(message, posted, [SORRY], None, incoming.author)
        finally:
            self._working.discard(key)
            if done and self.journal is not None:
                await self.journal.finish(key)
    async def _resume(self, key: str, work: dict[str, Any]) -> None:
        """Finish an answer a dead process started: fetch the question and the parts already posted.
        Only a question or channel that is gone gives the answer up; a deleted part is answered anew."""
        try:
            channel_id = int(work["channel_id"])
            channel = self.client.get_channel(channel_id) or await self.client.fetch_channel(channel_id)
            message = await channel.fetch_message(int(work["message_id"]))  # type: ignore[union-attr]
        except (discord.HTTPException, KeyError, ValueError, AttributeError) as exc:
            log.error("cannot finish answer %s (the message or channel is gone): %s", key, exc)
            if self.journal is not None:
                await self.journal.finish(key)
            return
        posted = await self._parts_still_there(channel, work.get("posted", []))
        await self._work(key, work, message, IncomingMessage(**work["incoming"]), posted)

    @staticmethod
    async def _parts_still_there(channel: Any, ids: list[str]) -> list[discord.Message]:
        """The parts of a half-shown answer that can still be edited; from the first one gone, none
        (the answer then starts again as a new reply; a later part is deleted so nothing shows twice)."""
        parts: list[discord.Message] = []
        for number, part_id in enumerate(ids):
            try:
                parts.append(await channel.fetch_message(int(part_id)))
            except (discord.NotFound, discord.Forbidden, ValueError):
                for later in ids[number + 1 :]:
                    with contextlib.suppress(discord.HTTPException, ValueError):
                        await channel.get_partial_message(int(later)).delete()
                for part in parts:
                    with contextlib.suppress(discord.HTTPException):
                        await part.delete()
                return []
        return parts

    async def recover(self, interval: float | None = None) -> None:
        """Keep this process's journal leases alive and finish answers whose process died, forever
        (a task of the worker; returns at once without a journal)."""
        if self.journal is not None:
            await self.client.wait_until_ready()
            await self.journal.watch(lambda: self._working, self._resume, lambda: self.inflight.draining, interval)

    async def _stream(
        self,
        message: discord.Message,
        incoming: IncomingMessage,
        posted: list[discord.Message] | None = None,
        key: str = "",
        work: dict[str, Any] | None = None,
    ) -> None:
        """Typing, the first part as soon as there is text, paced edits, further parts as needed."""
        posted = posted if posted is not None else []
        text = ""
        last_edit = 0.0
        live = True  # streaming updates stop at the first failed write; the final delivery finds a way
        final: Final | None = None
        notices: list[Notice] = []
        await self._typing(message.channel)
        async for event in self.engine.answer(incoming):
            if isinstance(event, TextDelta):
                text += event.text
                if live and time.monotonic() - last_edit >= self.edit_interval:
                    shown = len(posted)
                    live = await self._update(message, posted, split_message(text, MESSAGE_LIMIT))
                    last_edit = time.monotonic()
                    if len(posted) > shown and work is not None and self.journal is not None:
                        await self.journal.update(key, {**work, "posted": [str(p.id) for p in posted]})
            elif isinstance(event, Notice) and event.kind in SHOWN_NOTICES:
                notices.append(event)
            elif isinstance(event, Final):
                final = event
        assert final is not None
        await self._deliver(message, posted, answer_parts(final, notices), final.turn_id, incoming.author)
        await self._alert_admins(final, incoming, message.jump_url)

    async def _typing(self, channel: Any) -> None:
        """One typing indicator, when the pacer has room; it may fail (no Send Messages): the answer goes on."""
        if not self.pacer.try_take():
            return
        try:
            await channel.typing()
        except discord.HTTPException as exc:
            log.info("no typing indicator in channel %s (%s)", channel.id, failure(exc))

    async def _update(self, source: discord.Message, posted: list[discord.Message], parts: list[str]) -> bool:
        """A streaming update; False once a write failed (no more updates; the final text is delivered anyway)."""
        try:
            await self._show(source, posted, parts, final=False)
        except discord.HTTPException as exc:
            log.warning("a streaming update in channel %s failed (%s)", source.channel.id, failure(exc))
            return False
        return True

    async def _alert_admins(self, final: Final, incoming: IncomingMessage, where: str) -> None:
        """Post the engine's admin alert, if any, to ADVISOR_SAFETY_ALERT_CHANNEL; a failure is only logged."""
        text = alert_text(final, incoming, where)
        if text is not None:
            await self._post_alert(text)

    async def _post_alert(self, text: str) -> None:
        """One line to the admins' channel (ADVISOR_SAFETY_ALERT_CHANNEL), if one is set; a failure is logged."""
        target = alert_channel(self.safety.alert_channel, "discord")
        if target is None:
            return
        try:
            channel = self.client.get_channel(int(target)) or await self.client.fetch_channel(int(target))
            await self.pacer.wait()
            await channel.send(text, allowed_mentions=NO_PINGS)  # type: ignore[union-attr]
        except (ValueError, discord.HTTPException, AttributeError) as exc:
            log.error("could not post an admin alert to channel %s: %s", target, type(exc).__name__)

    async def _show(
        self, source: discord.Message, posted: list[discord.Message], parts: list[str], final: bool, turn_id: int | None = None
    ) -> None:
        """Make the posted messages read `parts`: edit what changed, send what is new.

        Streaming edits take an optional pacer slot and are skipped without one; sends and the final
        edits wait for theirs."""
        channel_id = str(source.channel.id)
        for index, part in enumerate(parts):
            last = final and index == len(parts) - 1
            view = FeedbackView(turn_id) if last and turn_id is not None else None
            kwargs: dict[str, Any] = {"content": part, "allowed_mentions": NO_PINGS}
            if view is not None:
                kwargs["view"] = view
            if index < len(posted):
                if posted[index].content == part and view is None:
                    continue
                if final:
                    await self.pacer.wait(channel_id)
                elif not self.pacer.try_take(channel_id):
                    continue
                posted[index] = await posted[index].edit(**kwargs)
            elif index == 0:
                await self.pacer.wait()
                posted.append(await source.reply(mention_author=False, **kwargs))
            else:
                await self.pacer.wait()
                posted.append(await source.channel.send(**kwargs))

    # -- delivery when a write fails ------------------------------------------------

    async def _deliver(
        self, source: discord.Message, posted: list[discord.Message], parts: list[str], turn_id: int | None, author: str
    ) -> None:
        """The final text in the posted messages; if a write fails, as new messages, else as a DM, else
        a log line, a metric and an admin alert. Never silence."""
        try:
            await self._show(source, posted, parts, final=True, turn_id=turn_id)
            return
        except discord.HTTPException as exc:
            reason = failure(exc)
        channel = source.channel
        log.warning("posting the answer to message %s in channel %s failed (%s)", source.id, channel.id, reason)
        if await self._send_all(channel, parts, turn_id, source.to_reference(fail_if_not_exists=False)):
            metrics.write_failed("discord", "new_message")
            await self._remove(posted)
        elif source.guild is not None and await self._send_all(source.author, dm_parts(parts, channel.id), turn_id):
            metrics.write_failed("discord", "dm")
            await self._remove(posted)
        else:
            await self._undelivered(f"<#{channel.id}>", author, reason)

    async def _send_all(
        self, target: discord.abc.Messageable, parts: list[str], turn_id: int | None, reference: Any = None
    ) -> bool:
        """Every part as a new message to `target` (a channel, or a user for a DM); False if one failed."""
        try:
            for index, part in enumerate(parts):
                kwargs: dict[str, Any] = {"content": part, "allowed_mentions": NO_PINGS}
                if index == len(parts) - 1 and turn_id is not None:
                    kwargs["view"] = FeedbackView(turn_id)
                if index == 0 and reference is not None:
                    kwargs["reference"] = reference
                await self.pacer.wait()
                await target.send(**kwargs)
        except discord.HTTPException as exc:
            log.warning("a fallback delivery failed too (%s)", failure(exc))
            return False
        return True

    async def _remove(self, stale: list[discord.Message]) -> None:
        """Delete the half-shown answer a fallback replaced (best effort: it may be gone or locked)."""
        for message in stale:
            try:
                await self.pacer.wait()
                await message.delete()
            except discord.HTTPException as exc:
                log.info("could not remove a half-shown answer %s (%s)", message.id, failure(exc))

    async def _undelivered(self, where: str, author: str, reason: str) -> None:
        """No route reached the user: a log line (ids and codes only), a metric and an admin alert."""
        metrics.write_failed("discord", "lost")
        log.error("an answer to user %s in %s could not be delivered by any route (%s)", author, where, reason)
        await self._post_alert(undelivered_text(where, author, reason))

    # -- /advisor -----------------------------------------------------------

    def _is_admin(self, interaction: discord.Interaction) -> bool:
        user = interaction.user
        if str(user.id) in self.admins.discord_user_ids:
            return True
        roles = {str(role.id) for role in getattr(user, "roles", [])}
        if roles & set(self.admins.discord_role_ids):
            return True
        if not interaction.guild_id or not interaction.is_guild_integration():
            return False  # a guild reached through a user install is not one advisor serves
        permissions = interaction.permissions  # as Discord resolved them for this member and channel
        return bool(permissions.manage_guild or permissions.administrator)

    def _commands(self) -> app_commands.Group:
        # Discord sets default_member_permissions, contexts and integration_types per top-level command
        # only, so /advisor stays open to all, installable to servers and to users' accounts and usable
        # in servers, the bot's DM and group DMs; reindex checks where it runs and who asks itself.
        group = app_commands.Group(
            name="advisor",
            description="Ask the advisor, or manage it",
            allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True),
        )
        adapter = self

        @group.command(name="ask", description="Ask a question")
        @app_commands.describe(question="What you want advice on", private="Only you see the answer")
        async def ask(interaction: discord.Interaction, question: str, private: bool = True) -> None:
            await interaction.response.defer(ephemeral=private, thinking=True)
            await adapter._ask(interaction, question, private)

        @group.command(name="status", description="Index size, model, uptime and version")
        async def status(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await adapter._later(interaction, adapter._status_text)

        @group.command(name="forget", description="Forget your conversations in this channel")
        async def forget(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await adapter._later(interaction, lambda: adapter._forget(interaction))

        @group.command(name="reindex", description="Rebuild the knowledge base (admins)")
        @app_commands.describe(path="A file or folder inside the configured knowledge paths")
        async def reindex(interaction: discord.Interaction, path: str | None = None) -> None:
            await adapter._reindex(interaction, path)

        return group

    # Every command acks (defers, or answers from memory) before any I/O: Discord voids an
    # interaction not answered within 3 seconds, whatever the store or Redis is doing.

    async def _later(self, interaction: discord.Interaction, make: Callable[[], Awaitable[str]]) -> None:
        """Fill a deferred response with `make()`'s text (an apology if it fails)."""
        try:
            text = await make()
        except Exception:
            log.exception("the /advisor command in interaction %s failed", interaction.id)
            text = SORRY
        await self._reply(interaction, [text], private=True)

    async def _status_text(self) -> str:
        facts = await self.admin.status()
        return "\n".join(f"**{key.replace('_', ' ')}**: {value}" for key, value in facts.items())

    async def _forget(self, interaction: discord.Interaction) -> str:
        prefix = f"discord:{interaction.guild_id or 'dm'}:{interaction.channel_id}:"
        removed = 0
        for conversation in await self.engine.memory.conversations_of(prefix, str(interaction.user.id)):
            removed += await self.engine.forget(conversation)
        return f"Done: I forgot our conversations here ({removed} messages)."

    async def _ask(self, interaction: discord.Interaction, question: str, private: bool) -> None:
        """The answer in the deferred response; an engine failure replaces "Thinking…" with an apology."""
        incoming = IncomingMessage(
            "discord",
            str(interaction.guild_id or "dm"),
            str(interaction.channel_id),
            f"slash-{interaction.user.id}",
            str(interaction.user.id),
            question,
            time.time(),
            str(interaction.id),
        )
        try:
            final = [e async for e in self.engine.answer(incoming) if isinstance(e, Final)][0]
        except Exception:
            log.exception("answering interaction %s failed", interaction.id)
            await self._reply(interaction, [SORRY], private)
            return
        parts = split_message(final.text, MESSAGE_LIMIT)
        tail = sources_line(final.citations)
        if tail:
            parts.append(tail)
        await self._reply(interaction, parts, private)

    async def _reply(self, interaction: discord.Interaction, parts: list[str], private: bool) -> None:
        """Parts into the deferred response and follow-ups; if the response cannot be edited (deleted,
        token expired), as follow-ups, else a DM, else a log line, a metric and an admin alert."""
        try:
            await interaction.edit_original_response(content=parts[0], allowed_mentions=NO_PINGS)
            rest = parts[1:]
        except discord.HTTPException as exc:
            reason = failure(exc)
            log.warning("editing the response to interaction %s failed (%s)", interaction.id, reason)
            rest = parts
        else:
            reason = ""
        try:
            for part in rest:
                await interaction.followup.send(part, ephemeral=private, allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            reason = failure(exc)
            log.warning("a follow-up to interaction %s failed (%s)", interaction.id, reason)
        else:
            if reason:
                metrics.write_failed("discord", "follow_up")
            return
        channel_id = interaction.channel_id or 0
        if interaction.guild_id is not None and await self._send_all(interaction.user, dm_parts(rest, channel_id), None):
            metrics.write_failed("discord", "dm")
            return
        await self._undelivered(f"<#{channel_id}>", str(interaction.user.id), reason)

    async def _reindex(self, interaction: discord.Interaction, path: str | None) -> None:
        if not reindex_allowed_here(interaction):
            await interaction.response.send_message(NOT_HERE, ephemeral=True)
            return
        if not self._is_admin(interaction):
            await interaction.response.send_message(REFUSED, ephemeral=True)
            return
        if self.admin.reindexing or self._reindex_claimed:  # in memory; another process's run is checked below
            await interaction.response.send_message(BUSY, ephemeral=True)
            return
        self._reindex_claimed = True  # before the first await, so a second request right after is refused
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await self._later(interaction, lambda: self._run_reindex(interaction, path))
        finally:
            self._reindex_claimed = False

    async def _run_reindex(self, interaction: discord.Interaction, path: str | None) -> str:
        """The reindex's closing line (or why it did not run), with progress edits on the way."""
        if await self.admin.reindex_running():
            return BUSY
        progress = ReindexProgress(lambda text: interaction.edit_original_response(content=text))
        try:
            self.admin.resolve(path)
            report = await self.admin.reindex(path, progress)
        except AdminError as exc:
            return str(exc)
        await progress.settle()
        return f"Reindex finished.\n```\n{report.summary()[:1800]}\n```"

    # -- feedback -----------------------------------------------------------

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        custom_id = (interaction.data or {}).get("custom_id", "") if interaction.type == discord.InteractionType.component else ""
        if not custom_id.startswith(FEEDBACK_PREFIX):
            return
        value, _, turn = custom_id.removeprefix(FEEDBACK_PREFIX).partition(":")
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self._later(interaction, lambda: self._feedback(turn, 1 if value == "up" else -1))

    async def _feedback(self, turn: str, value: int) -> str:
        stored = await self.engine.record_feedback(turn, value)
        return "Thanks for the feedback." if stored else "Sorry, I couldn't find that answer any more."


__all__ = ["DiscordAdapter", "intents", "sources_line"]
