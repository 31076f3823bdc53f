"""Discord adapter on discord.py: DMs, mentions and reply chains, streamed edits, /advisor.

Rules: a DM is answered; in a guild, a message that mentions the bot or replies to one
of its messages is answered as a reply. A reply chain (followed back through
message_reference, cached) or a thread is one conversation. Every message id is answered
once, whatever resumes and reconnects replay. Nothing the model writes can ping anyone.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict, deque
from dataclasses import asdict
from typing import Any

import discord
from discord import app_commands

from adapters.progress import ReindexProgress
from adapters.render import SHOWN_NOTICES, split_message
from bot.ops import metrics
from bot.ops.admin import Admin, AdminError
from bot.ops.alerts import alert_channel, alert_text
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


def gateway_client(shard_count: int | None = None) -> discord.AutoShardedClient:
    """A sharded gateway client: `shard_count` shards, or as many as Discord recommends for the
    bot's guild count (GET /gateway/bot: one shard below 2,500 guilds, more as it grows)."""
    return discord.AutoShardedClient(intents=intents(), allowed_mentions=NO_PINGS, shard_count=shard_count)


def intents() -> discord.Intents:
    """What the bot needs; message content is privileged and must be enabled in the portal."""
    wanted = discord.Intents.default()
    wanted.message_content = True
    return wanted


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
    ) -> None:
        self.engine = engine
        self.admin = admin
        self.settings = settings.discord
        self.admins = settings.admins
        self.safety = settings.safety
        self.client = client or gateway_client(settings.discord.shard_count)
        self.tree = app_commands.CommandTree(self.client)
        self.dedupe = dedupe or local_dedupe()  # shared (Redis) across processes and shards when given
        self.inflight = InFlight()
        self.journal = journal  # answers in progress in Redis, finished elsewhere if this process dies
        self._working: set[str] = set()
        self.chains = ChainCache()
        self.edit_interval = edit_interval
        self.ignored: deque[str] = deque(maxlen=100)
        self._synced = False
        self._register()

    def _register(self) -> None:
        self.client.event(self.on_ready)
        self.client.event(self.on_message)
        self.client.event(self.on_interaction)
        self.tree.add_command(self._commands())

    async def on_ready(self) -> None:
        if not self._synced:  # once per process, not on every reconnect
            self._synced = True
            commands = await self.tree.sync()
            log.info("Discord ready as %s; %d slash command group(s) synced", self.client.user, len(commands))

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
        except discord.HTTPException as exc:
            done = True
            await self.dedupe.release(key)
            log.error("posting the answer in channel %s failed: %s", message.channel.id, exc)
        except Exception:  # a bug or an outage inside the engine: say so rather than stay silent
            done = True
            log.exception("answering message %s failed", message.id)
            await message.reply(SORRY, mention_author=False, allowed_mentions=NO_PINGS)
        finally:
            self._working.discard(key)
            if done and self.journal is not None:
                await self.journal.finish(key)

    async def _resume(self, key: str, work: dict[str, Any]) -> None:
        """Finish an answer a dead process started: fetch the question and the parts already posted."""
        try:
            channel_id = int(work["channel_id"])
            channel = self.client.get_channel(channel_id) or await self.client.fetch_channel(channel_id)
            message = await channel.fetch_message(int(work["message_id"]))  # type: ignore[union-attr]
            posted = [await channel.fetch_message(int(i)) for i in work.get("posted", [])]  # type: ignore[union-attr]
        except (discord.HTTPException, KeyError, ValueError, AttributeError) as exc:
            log.error("cannot finish answer %s (the message or channel is gone): %s", key, exc)
            if self.journal is not None:
                await self.journal.finish(key)
            return
        await self._work(key, work, message, IncomingMessage(**work["incoming"]), posted)

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
        """Typing, the first part as soon as there is text, throttled edits, further parts as needed."""
        posted = posted if posted is not None else []
        text = ""
        last_edit = 0.0
        final: Final | None = None
        notices: list[Notice] = []
        async with message.channel.typing():
            async for event in self.engine.answer(incoming):
                if isinstance(event, TextDelta):
                    text += event.text
                    if time.monotonic() - last_edit >= self.edit_interval:
                        shown = len(posted)
                        await self._show(message, posted, split_message(text, MESSAGE_LIMIT), final=False)
                        last_edit = time.monotonic()
                        if len(posted) > shown and work is not None and self.journal is not None:
                            await self.journal.update(key, {**work, "posted": [str(p.id) for p in posted]})
                elif isinstance(event, Notice) and event.kind in SHOWN_NOTICES:
                    notices.append(event)
                elif isinstance(event, Final):
                    final = event
        assert final is not None
        await self._show(message, posted, answer_parts(final, notices), final=True, turn_id=final.turn_id)
        await self._alert_admins(final, incoming, message.jump_url)

    async def _alert_admins(self, final: Final, incoming: IncomingMessage, where: str) -> None:
        """Post the engine's admin alert, if any, to ADVISOR_SAFETY_ALERT_CHANNEL; a failure is only logged."""
        target = alert_channel(self.safety.alert_channel, "discord")
        text = alert_text(final, incoming, where)
        if target is None or text is None:
            return
        try:
            channel = self.client.get_channel(int(target)) or await self.client.fetch_channel(int(target))
            await channel.send(text, allowed_mentions=NO_PINGS)  # type: ignore[union-attr]
        except (ValueError, discord.HTTPException, AttributeError) as exc:
            log.error("could not post a safety alert to channel %s: %s", target, exc)

    async def _show(
        self, source: discord.Message, posted: list[discord.Message], parts: list[str], final: bool, turn_id: int | None = None
    ) -> None:
        """Make the posted messages read `parts`: edit what changed, send what is new."""
        for index, part in enumerate(parts):
            last = final and index == len(parts) - 1
            view = FeedbackView(turn_id) if last and turn_id is not None else None
            kwargs: dict[str, Any] = {"content": part, "allowed_mentions": NO_PINGS}
            if view is not None:
                kwargs["view"] = view
            if index < len(posted):
                if posted[index].content != part or view is not None:
                    posted[index] = await posted[index].edit(**kwargs)
            elif index == 0:
                posted.append(await source.reply(mention_author=False, **kwargs))
            else:
                posted.append(await source.channel.send(**kwargs))

    # -- /advisor -----------------------------------------------------------

    def _is_admin(self, interaction: discord.Interaction) -> bool:
        user = interaction.user
        if str(user.id) in self.admins.discord_user_ids:
            return True
        roles = {str(role.id) for role in getattr(user, "roles", [])}
        if roles & set(self.admins.discord_role_ids):
            return True
        permissions = interaction.permissions  # as Discord resolved them for this member and channel
        return bool(interaction.guild_id and (permissions.manage_guild or permissions.administrator))

    def _commands(self) -> app_commands.Group:
        # Discord sets default_member_permissions per top-level command only, so /advisor stays
        # open to all and reindex checks Manage Server (or the admin lists) itself.
        group = app_commands.Group(name="advisor", description="Ask the advisor, or manage it")
        adapter = self

        @group.command(name="ask", description="Ask a question")
        @app_commands.describe(question="What you want advice on", private="Only you see the answer")
        async def ask(interaction: discord.Interaction, question: str, private: bool = True) -> None:
            await interaction.response.defer(ephemeral=private, thinking=True)
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
            final = [e async for e in adapter.engine.answer(incoming) if isinstance(e, Final)][0]
            parts = split_message(final.text, MESSAGE_LIMIT)
            tail = sources_line(final.citations)
            if tail:
                parts.append(tail)
            await interaction.edit_original_response(content=parts[0], allowed_mentions=NO_PINGS)
            for part in parts[1:]:
                await interaction.followup.send(part, ephemeral=private, allowed_mentions=NO_PINGS)

        @group.command(name="status", description="Index size, model, uptime and version")
        async def status(interaction: discord.Interaction) -> None:
            facts = await adapter.admin.status()
            lines = [f"**{key.replace('_', ' ')}**: {value}" for key, value in facts.items()]
            await interaction.response.send_message("\n".join(lines), ephemeral=True)

        @group.command(name="forget", description="Forget your conversations in this channel")
        async def forget(interaction: discord.Interaction) -> None:
            prefix = f"discord:{interaction.guild_id or 'dm'}:{interaction.channel_id}:"
            removed = 0
            for conversation in await adapter.engine.memory.conversations_of(prefix, str(interaction.user.id)):
                removed += await adapter.engine.forget(conversation)
            await interaction.response.send_message(f"Done: I forgot our conversations here ({removed} messages).", ephemeral=True)

        @group.command(name="reindex", description="Rebuild the knowledge base (admins)")
        @app_commands.describe(path="A file or folder inside the configured knowledge paths")
        async def reindex(interaction: discord.Interaction, path: str | None = None) -> None:
            await adapter._reindex(interaction, path)

        return group

    async def _reindex(self, interaction: discord.Interaction, path: str | None) -> None:
        if not self._is_admin(interaction):
            await interaction.response.send_message("Sorry, only admins can reindex the knowledge base.", ephemeral=True)
            return
        if await self.admin.reindex_running():
            await interaction.response.send_message("A reindex is already running; try again when it's done.", ephemeral=True)
            return
        try:
            self.admin.resolve(path)
        except AdminError as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        progress = ReindexProgress(lambda text: interaction.edit_original_response(content=text))
        try:
            report = await self.admin.reindex(path, progress)
        except AdminError as exc:
            await interaction.edit_original_response(content=str(exc))
            return
        await progress.settle()
        await interaction.edit_original_response(content=f"Reindex finished.\n```\n{report.summary()[:1800]}\n```")

    # -- feedback -----------------------------------------------------------

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        custom_id = (interaction.data or {}).get("custom_id", "") if interaction.type == discord.InteractionType.component else ""
        if not custom_id.startswith(FEEDBACK_PREFIX):
            return
        value, _, turn = custom_id.removeprefix(FEEDBACK_PREFIX).partition(":")
        stored = await self.engine.record_feedback(turn, 1 if value == "up" else -1)
        text = "Thanks for the feedback." if stored else "Sorry, I couldn't find that answer any more."
        await interaction.response.send_message(text, ephemeral=True)


__all__ = ["DiscordAdapter", "intents", "sources_line"]
