"""Builders for Discord payloads shaped as Discord documents them (discord.com/developers/docs).

Gateway dispatch bodies (MESSAGE_CREATE, GUILD_CREATE, INTERACTION_CREATE) and the REST objects
inside them (user, guild member, role, channel, thread, message) follow the field tables of
docs/resources/{user,guild,channel,message}, docs/events/gateway-events and
docs/interactions/receiving-and-responding, with the fields the real discord.py client reads
(e.g. `attachment_size_limit` on interactions, `flags` on members, `thread_metadata` on threads).
Ids are strings (snowflakes), timestamps ISO 8601 with an explicit +00:00 offset.

    fake.guilds = [guild()]                  # the default guild "4000": #general "3000", a thread "3100"
    await fake.dispatch("MESSAGE_CREATE", message_create("how do I budget?"))
    await fake.dispatch("INTERACTION_CREATE", interaction_create(options={"question": "..."}))

The default cast: the bot user "1000" (also the application id), a member "2000" (alice), the guild
owner "2100", the guild "4000" with text channel "3000", thread "3100" and a DM channel "5000".
"""

from __future__ import annotations

import copy
import datetime
import re
import secrets
import time
from typing import Any

from tests.harness.ids import Rising

Json = dict[str, Any]

DISCORD_EPOCH_MS = 1_420_070_400_000  # 2015-01-01T00:00:00Z, the snowflake epoch
API_VERSION = 10

BOT_TOKEN = "fake-discord-bot-token"  # what tests pass to client.start(); FakeDiscord checks it
BOT_ID = "1000"
APPLICATION_ID = "1000"  # modern apps share the bot user's id
BOT_NAME = "advisor"
USER_ID = "2000"
OWNER_ID = "2100"
CHANNEL_ID = "3000"
THREAD_ID = "3100"
GUILD_ID = "4000"
BOT_ROLE_ID = "4100"
MODERATOR_ROLE_ID = "4200"
DM_CHANNEL_ID = "5000"
COMMAND_ID = "6000"
JOINED_AT = "2024-01-15T09:30:00.000000+00:00"

_USERNAMES = {BOT_ID: BOT_NAME, USER_ID: "alice", OWNER_ID: "owner"}
_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


class Permissions:
    """Permission bits (docs/topics/permissions#permissions-bitwise-permission-flags)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_AUDIT_LOG = 1 << 7
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CONNECT = 1 << 20
    SPEAK = 1 << 21
    CHANGE_NICKNAME = 1 << 26
    MANAGE_ROLES = 1 << 28
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    SEND_MESSAGES_IN_THREADS = 1 << 38


P = Permissions
EVERYONE_PERMISSIONS = (
    P.CREATE_INSTANT_INVITE
    | P.ADD_REACTIONS
    | P.VIEW_CHANNEL
    | P.SEND_MESSAGES
    | P.EMBED_LINKS
    | P.ATTACH_FILES
    | P.READ_MESSAGE_HISTORY
    | P.MENTION_EVERYONE
    | P.USE_EXTERNAL_EMOJIS
    | P.CONNECT
    | P.SPEAK
    | P.CHANGE_NICKNAME
    | P.USE_APPLICATION_COMMANDS
    | P.CREATE_PUBLIC_THREADS
    | P.CREATE_PRIVATE_THREADS
    | P.SEND_MESSAGES_IN_THREADS
)
BOT_PERMISSIONS = EVERYONE_PERMISSIONS | P.MANAGE_MESSAGES | P.MANAGE_THREADS
MODERATOR_PERMISSIONS = EVERYONE_PERMISSIONS | P.MANAGE_MESSAGES | P.MANAGE_THREADS | P.KICK_MEMBERS | P.MANAGE_GUILD
ALL_PERMISSIONS = (1 << 51) - 1  # what Discord reports for the owner / ADMINISTRATOR
# app_permissions Discord sends for DMs with the bot (docs: ATTACH_FILES | EMBED_LINKS | MENTION_EVERYONE
# plus USE_EXTERNAL_EMOJIS, on top of the implicit DM text permissions).
DM_APP_PERMISSIONS = (
    P.ADD_REACTIONS
    | P.VIEW_CHANNEL
    | P.SEND_MESSAGES
    | P.EMBED_LINKS
    | P.ATTACH_FILES
    | P.READ_MESSAGE_HISTORY
    | P.MENTION_EVERYONE
    | P.USE_EXTERNAL_EMOJIS
)


class Intents:
    """Gateway intent bits (docs/events/gateway#list-of-intents)."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1  # privileged
    GUILD_MODERATION = 1 << 2
    GUILD_EXPRESSIONS = 1 << 3
    GUILD_INTEGRATIONS = 1 << 4
    GUILD_WEBHOOKS = 1 << 5
    GUILD_INVITES = 1 << 6
    GUILD_VOICE_STATES = 1 << 7
    GUILD_PRESENCES = 1 << 8  # privileged
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    GUILD_MESSAGE_TYPING = 1 << 11
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    DIRECT_MESSAGE_TYPING = 1 << 14
    MESSAGE_CONTENT = 1 << 15  # privileged
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
    ALL = (1 << 26) - 1


# ----- ids and times ---------------------------------------------------------------------------------

_snowflakes = Rising()


def snowflake(at: float | None = None) -> str:
    """A snowflake id: ms since the Discord epoch << 22, worker 1, process 1, increment.

    Without `at` (unix seconds) ids come from the clock and strictly increase, so an id minted later
    (a bot reply) always sorts after an earlier one (the message it answers).
    """
    ms = int((time.time() if at is None else at) * 1000) - DISCORD_EPOCH_MS
    value = (ms << 22) | (1 << 17) | (1 << 12)
    return str(value if at is not None else _snowflakes.after(value))


def snowflake_time(value: str | int) -> float:
    """The unix time (seconds) a snowflake was minted at."""
    return ((int(value) >> 22) + DISCORD_EPOCH_MS) / 1000


def iso_timestamp(at: float | None = None) -> str:
    """An ISO 8601 timestamp the way Discord writes them: "2024-01-15T09:30:00.123000+00:00"."""
    moment = datetime.datetime.fromtimestamp(time.time() if at is None else at, datetime.UTC)
    return moment.isoformat(timespec="microseconds")


def interaction_token() -> str:
    """A fresh interaction token (Discord's are long url-safe strings, valid for 15 minutes)."""
    return "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)


# ----- users, members, roles ------------------------------------------------------------------------


def user(
    user_id: str = USER_ID, username: str | None = None, *, bot: bool = False, global_name: str | None = None
) -> Json:
    """A user object (docs/resources/user#user-object) as it appears in messages and members."""
    name = username or _USERNAMES.get(str(user_id), f"user{user_id}")
    out: Json = {
        "id": str(user_id),
        "username": name,
        "avatar": None,
        "discriminator": "0",
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "global_name": None if bot else (global_name or name.capitalize()),
        "avatar_decoration_data": None,
        "collectibles": None,
        "banner_color": None,
        "clan": None,
        "primary_guild": None,
    }
    if bot:
        out["bot"] = True
    return out


def bot_user(user_id: str = BOT_ID, username: str = BOT_NAME) -> Json:
    """The bot's own user object, as READY and GET /users/@me carry it."""
    return {
        "id": str(user_id),
        "username": username,
        "bot": True,
        "discriminator": "0",
        "global_name": None,
        "avatar": None,
    }


def member(
    user_obj: Json | str = USER_ID,
    *,
    roles: list[str] | None = None,
    nick: str | None = None,
    joined_at: str = JOINED_AT,
    permissions: str | int | None = None,
    with_user: bool = True,
) -> Json:
    """A guild member (docs/resources/guild#guild-member-object).

    `with_user=False` gives the partial member of MESSAGE_CREATE; `permissions` is only set on
    interaction members (Discord computes it for the invoking user in the channel).
    """
    out: Json = {
        "avatar": None,
        "banner": None,
        "communication_disabled_until": None,
        "deaf": False,
        "flags": 0,
        "joined_at": joined_at,
        "mute": False,
        "nick": nick,
        "pending": False,
        "premium_since": None,
        "roles": [str(r) for r in (roles or [])],
        "unusual_dm_activity_until": None,
    }
    if with_user:
        out["user"] = user(user_obj) if isinstance(user_obj, str) else copy.deepcopy(user_obj)
    if permissions is not None:
        out["permissions"] = str(permissions)
    return out


def role(
    role_id: str,
    name: str,
    permissions: int | str = EVERYONE_PERMISSIONS,
    *,
    position: int = 0,
    color: int = 0,
    hoist: bool = False,
    managed: bool = False,
    mentionable: bool = False,
    tags: Json | None = None,
) -> Json:
    """A role (docs/topics/permissions#role-object); permissions is a string of the bit set."""
    out: Json = {
        "id": str(role_id),
        "name": name,
        "description": None,
        "permissions": str(permissions),
        "position": position,
        "color": color,
        "colors": {"primary_color": color, "secondary_color": None, "tertiary_color": None},
        "hoist": hoist,
        "managed": managed,
        "mentionable": mentionable,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
    }
    if tags is not None:
        out["tags"] = tags
    return out


# ----- channels -------------------------------------------------------------------------------------


def text_channel(
    channel_id: str = CHANNEL_ID,
    name: str = "general",
    *,
    guild_id: str | None = GUILD_ID,
    position: int = 0,
    parent_id: str | None = None,
    topic: str | None = None,
    nsfw: bool = False,
    rate_limit_per_user: int = 0,
    permission_overwrites: list[Json] | None = None,
) -> Json:
    """A guild text channel (type 0). GUILD_CREATE's channels omit guild_id; REST includes it."""
    out: Json = {
        "id": str(channel_id),
        "type": 0,
        "name": name,
        "position": position,
        "parent_id": parent_id,
        "topic": topic,
        "nsfw": nsfw,
        "rate_limit_per_user": rate_limit_per_user,
        "last_message_id": None,
        "last_pin_timestamp": None,
        "permission_overwrites": copy.deepcopy(permission_overwrites or []),
        "flags": 0,
        "icon_emoji": None,
        "theme_color": None,
    }
    if guild_id is not None:
        out["guild_id"] = str(guild_id)
    return out


def thread_channel(
    thread_id: str = THREAD_ID,
    name: str = "Budgeting question",
    *,
    parent_id: str = CHANNEL_ID,
    guild_id: str | None = GUILD_ID,
    owner_id: str = USER_ID,
    type: int = 11,
    archived: bool = False,
    locked: bool = False,
    message_count: int = 0,
    member_count: int = 1,
) -> Json:
    """A thread (type 11 public, 12 private) with its thread_metadata (docs/topics/threads)."""
    created = iso_timestamp(snowflake_time(thread_id)) if int(thread_id) > 1 << 22 else JOINED_AT
    out: Json = {
        "id": str(thread_id),
        "type": type,
        "name": name,
        "parent_id": str(parent_id),
        "owner_id": str(owner_id),
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
        "message_count": message_count,
        "member_count": member_count,
        "total_message_sent": message_count,
        "member_ids_preview": [str(owner_id)],
        "thread_metadata": {
            "archived": archived,
            "archive_timestamp": created,
            "auto_archive_duration": 1440,
            "locked": locked,
            "create_timestamp": created,
            **({"invitable": True} if type == 12 else {}),
        },
    }
    if guild_id is not None:
        out["guild_id"] = str(guild_id)
    return out


def dm_channel(channel_id: str = DM_CHANNEL_ID, recipient: Json | str = USER_ID) -> Json:
    """A DM channel (type 1) with its one recipient, as GET /channels/{id} and POST /users/@me/channels return it."""
    return {
        "id": str(channel_id),
        "type": 1,
        "last_message_id": None,
        "flags": 0,
        "recipients": [user(recipient) if isinstance(recipient, str) else copy.deepcopy(recipient)],
    }


# ----- guilds ---------------------------------------------------------------------------------------


def guild(
    guild_id: str = GUILD_ID,
    name: str = "Advice Club",
    *,
    owner_id: str = OWNER_ID,
    bot_id: str = BOT_ID,
    channels: list[Json] | None = None,
    threads: list[Json] | None = None,
    roles: list[Json] | None = None,
    members: list[Json] | None = None,
    member_count: int | None = None,
    features: list[str] | None = None,
    joined_at: str = JOINED_AT,
    large: bool = False,
    preferred_locale: str = "en-US",
) -> Json:
    """A GUILD_CREATE body: the guild object plus the extra fields (docs/events/gateway-events#guild-create).

    Defaults: roles @everyone (id = guild id), the bot's managed role and "Moderator"; channels
    #general; threads one public thread under #general; members the bot, the owner and alice.
    `channels` and `threads` may omit guild_id (GUILD_CREATE does); it is stripped either way.
    """
    gid = str(guild_id)
    if roles is None:
        roles = [
            role(gid, "@everyone", EVERYONE_PERMISSIONS),
            role(BOT_ROLE_ID, BOT_NAME, BOT_PERMISSIONS, position=2, managed=True, tags={"bot_id": str(bot_id)}),
            role(MODERATOR_ROLE_ID, "Moderator", MODERATOR_PERMISSIONS, position=1, hoist=True, mentionable=True),
        ]
    if channels is None:
        channels = [text_channel(CHANNEL_ID, "general", guild_id=gid)]
    if threads is None:
        threads = [thread_channel(THREAD_ID, parent_id=channels[0]["id"] if channels else CHANNEL_ID, guild_id=gid)]
    if members is None:
        bot_role = next((r["id"] for r in roles if (r.get("tags") or {}).get("bot_id") == str(bot_id)), None)
        members = [
            member(user(str(bot_id), BOT_NAME, bot=True), roles=[bot_role] if bot_role else []),
            member(str(owner_id)),
            member(USER_ID),
        ]
    return {
        "id": gid,
        "name": name,
        "icon": None,
        "icon_hash": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(owner_id),
        "region": "deprecated",
        "afk_channel_id": None,
        "afk_timeout": 300,
        "widget_enabled": False,
        "widget_channel_id": None,
        "verification_level": 1,
        "default_message_notifications": 1,
        "explicit_content_filter": 2,
        "mfa_level": 0,
        "nsfw_level": 0,
        "nsfw": False,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "premium_progress_bar_enabled": False,
        "preferred_locale": preferred_locale,
        "features": list(features or []),
        "application_id": None,
        "system_channel_id": channels[0]["id"] if channels else None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "safety_alerts_channel_id": None,
        "vanity_url_code": None,
        "max_members": 500000,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "incidents_data": None,
        "latest_onboarding_question_id": None,
        "home_header": None,
        "hub_type": None,
        "inventory_settings": None,
        "roles": copy.deepcopy(roles),
        "emojis": [],
        "stickers": [],
        # GUILD_CREATE extra fields
        "joined_at": joined_at,
        "large": large,
        "unavailable": False,
        "lazy": True,
        "member_count": len(members) if member_count is None else member_count,
        "voice_states": [],
        "members": copy.deepcopy(members),
        "channels": [{k: v for k, v in c.items() if k != "guild_id"} for c in copy.deepcopy(channels)],
        "threads": [{k: v for k, v in t.items() if k != "guild_id"} for t in copy.deepcopy(threads)],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "embedded_activities": [],
        "activity_instances": [],
        "application_command_counts": {},
        "version": int(time.time() * 1000),
    }


# ----- messages -------------------------------------------------------------------------------------


def _mentioned_users(content: str, guild_id: str | None) -> list[Json]:
    out: list[Json] = []
    for user_id in dict.fromkeys(_MENTION.findall(content)):
        mentioned = user(user_id, bot=user_id == BOT_ID)
        if guild_id is not None:
            mentioned["member"] = member(user_id, with_user=False)
        out.append(mentioned)
    return out


def message(
    content: str = "",
    *,
    channel_id: str = CHANNEL_ID,
    author: Json | None = None,
    message_id: str | None = None,
    type: int = 0,
    embeds: list[Json] | None = None,
    components: list[Json] | None = None,
    attachments: list[Json] | None = None,
    mentions: list[Json] | None = None,
    mention_roles: list[str] | None = None,
    flags: int = 0,
    message_reference: Json | None = None,
    referenced_message: Json | None = None,
    webhook_id: str | None = None,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> Json:
    """A message object as REST returns it (docs/resources/message#message-object); no guild_id/member."""
    mid = message_id or snowflake()
    out: Json = {
        "type": type,
        "content": content,
        "mentions": copy.deepcopy(mentions if mentions is not None else []),
        "mention_roles": [str(r) for r in (mention_roles or [])],
        "attachments": copy.deepcopy(attachments or []),
        "embeds": copy.deepcopy(embeds or []),
        "timestamp": timestamp or (iso_timestamp(snowflake_time(mid)) if int(mid) > 1 << 22 else iso_timestamp()),
        "edited_timestamp": None,
        "flags": flags,
        "components": copy.deepcopy(components or []),
        "id": str(mid),
        "channel_id": str(channel_id),
        "author": copy.deepcopy(author) if author is not None else user(USER_ID),
        "pinned": False,
        "mention_everyone": "@everyone" in content or "@here" in content,
        "tts": False,
    }
    if nonce is not None:
        out["nonce"] = nonce
    if webhook_id is not None:
        out["webhook_id"] = str(webhook_id)
    if message_reference is not None:
        out["message_reference"] = copy.deepcopy(message_reference)
        out["referenced_message"] = copy.deepcopy(referenced_message)
    return out


def message_reference(
    message_obj: Json, *, guild_id: str | None = None, fail_if_not_exists: bool | None = None
) -> Json:
    """A message_reference (type 0 DEFAULT = reply) pointing at `message_obj`."""
    ref: Json = {"type": 0, "channel_id": message_obj["channel_id"], "message_id": message_obj["id"]}
    gid = guild_id or message_obj.get("guild_id")
    if gid is not None:
        ref["guild_id"] = str(gid)
    if fail_if_not_exists is not None:
        ref["fail_if_not_exists"] = fail_if_not_exists
    return ref


def message_create(
    content: str = "",
    author_id: str = USER_ID,
    channel_id: str = CHANNEL_ID,
    guild_id: str | None = GUILD_ID,
    message_id: str | None = None,
    mentions: list[Json | str] | None = None,
    mention_roles: list[str] | None = None,
    referenced_message: Json | None = None,
    message_reference: Json | None = None,
    type: int | None = None,
    author_bot: bool = False,
    webhook_id: str | None = None,
    member: Json | None = None,
    *,
    username: str | None = None,
    roles: list[str] | None = None,
    embeds: list[Json] | None = None,
    attachments: list[Json] | None = None,
    components: list[Json] | None = None,
    flags: int = 0,
    nonce: str | None = None,
) -> Json:
    """A MESSAGE_CREATE body (docs/events/gateway-events#message-create): a message plus guild_id and member.

    guild_id=None makes it a DM (no guild_id, no member). `mentions` defaults to the users named
    as <@id> in `content` (Discord derives it from the content); pass user objects or ids to override.
    `referenced_message` (a message dict) makes it a reply: type 19 and a message_reference to it.
    A `webhook_id` message has a webhook author and no member. `member` is the partial member
    (no user); `roles` is a shortcut for its role ids.
    """
    gid = str(guild_id) if guild_id is not None else None
    if webhook_id is not None:
        author = {
            "id": str(webhook_id),
            "username": username or "Captain Hook",
            "avatar": None,
            "discriminator": "0000",
            "public_flags": 0,
            "flags": 0,
            "bot": True,
            "global_name": None,
        }
    else:
        author = user(str(author_id), username, bot=author_bot)
    if mentions is None:
        mention_objs = _mentioned_users(content, gid)
    else:
        mention_objs = []
        for item in mentions:
            obj = user(item, bot=item == BOT_ID) if isinstance(item, str) else copy.deepcopy(item)
            if gid is not None and "member" not in obj:
                obj["member"] = _partial_member(roles=None)
            mention_objs.append(obj)
    if mention_roles is None:
        mention_roles = list(dict.fromkeys(_ROLE_MENTION.findall(content)))
    if referenced_message is not None and message_reference is None:
        message_reference = {
            "type": 0,
            "channel_id": referenced_message.get("channel_id", str(channel_id)),
            "message_id": referenced_message["id"],
            **({"guild_id": gid} if gid is not None else {}),
        }
    if type is None:
        type = 19 if message_reference is not None else 0
    out = message(
        content,
        channel_id=channel_id,
        author=author,
        message_id=message_id,
        type=type,
        embeds=embeds,
        components=components,
        attachments=attachments,
        mentions=mention_objs,
        mention_roles=mention_roles,
        flags=flags,
        message_reference=message_reference,
        referenced_message=_strip_guild_fields(referenced_message) if referenced_message is not None else None,
        webhook_id=webhook_id,
        nonce=nonce,
    )
    if gid is not None:
        out["guild_id"] = gid
        if webhook_id is None:
            out["member"] = copy.deepcopy(member) if member is not None else _partial_member(roles)
    return out


def _partial_member(roles: list[str] | None) -> Json:
    return member(USER_ID, roles=roles, with_user=False)


def _strip_guild_fields(msg: Json) -> Json:
    """A message as nested in referenced_message / REST: without guild_id and member."""
    return {k: copy.deepcopy(v) for k, v in msg.items() if k not in ("guild_id", "member")}


# ----- interactions ---------------------------------------------------------------------------------


def _option(name: str, value: Any) -> Json:
    """An application command interaction data option; the type follows the Python value."""
    if isinstance(value, dict) and "type" in value:
        return {"name": name, **value}
    if isinstance(value, bool):
        kind = 5  # BOOLEAN
    elif isinstance(value, int):
        kind = 4  # INTEGER
    elif isinstance(value, float):
        kind = 10  # NUMBER
    else:
        kind, value = 3, str(value)  # STRING
    return {"name": name, "type": kind, "value": value}


def _interaction_base(
    *,
    type: int,
    guild_id: str | None,
    channel_id: str,
    user_id: str = USER_ID,
    permissions: str | int | None = None,
    roles: list[str] | None = None,
    application_id: str = APPLICATION_ID,
    app_permissions: str | int | None = None,
    locale: str = "en-US",
    interaction_id: str | None = None,
    token: str | None = None,
    channel: Json | None = None,
    username: str | None = None,
) -> Json:
    """The fields every interaction carries. The builders below take all but `type`, `guild_id` and
    `channel_id` as `**invoker`: who invokes it (`user_id`, `username`; in a guild the `roles` and
    the channel-level `permissions` of the member), the app (`application_id`, `app_permissions`),
    `locale`, `interaction_id`, `token` and (commands only) the `channel` object."""
    invoker = user(str(user_id), username)
    gid = str(guild_id) if guild_id is not None else None
    out: Json = {
        "app_permissions": str(
            app_permissions if app_permissions is not None else (BOT_PERMISSIONS if gid else DM_APP_PERMISSIONS)
        ),
        "application_id": str(application_id),
        "attachment_size_limit": 10 * 1024 * 1024,
        "authorizing_integration_owners": {"0": gid if gid is not None else "0"},
        "channel_id": str(channel_id),
        "context": 0 if gid is not None else 1,
        "entitlement_sku_ids": [],
        "entitlements": [],
        "id": interaction_id or snowflake(),
        "locale": locale,
        "token": token or interaction_token(),
        "type": type,
        "version": 1,
    }
    if gid is not None:
        member_permissions = permissions if permissions is not None else EVERYONE_PERMISSIONS
        out["guild_id"] = gid
        out["guild"] = {"id": gid, "features": [], "locale": "en-US"}
        out["guild_locale"] = "en-US"
        out["member"] = member(invoker, roles=roles, permissions=member_permissions)
        out["channel"] = (
            copy.deepcopy(channel)
            if channel is not None
            else {
                **text_channel(channel_id, guild_id=gid),
                "permissions": str(member_permissions),
            }
        )
    else:
        out["user"] = invoker
        out["channel"] = copy.deepcopy(channel) if channel is not None else dm_channel(channel_id, invoker)
    return out


def interaction_create(
    name: str = "advisor",
    subcommand: str | None = "ask",
    options: dict[str, Any] | None = None,
    *,
    guild_id: str | None = GUILD_ID,
    channel_id: str = CHANNEL_ID,
    command_id: str = COMMAND_ID,
    command_guild_id: str | None = None,
    **invoker: Any,
) -> Json:
    """An INTERACTION_CREATE body for a slash command (type 2 APPLICATION_COMMAND, data type 1 CHAT_INPUT).

    `/advisor ask question:...` by default: data.options = [{type 1 SUB_COMMAND, name "ask",
    options [...]}]; subcommand=None puts the options at the top level. Option types follow the
    Python values (str 3, int 4, bool 5, float 10) or pass {"type": ..., "value": ...} dicts.
    In a guild the invoker is `member` (with `permissions`, the channel-level permission string,
    and `roles`); with guild_id=None it is `user` in a DM. `command_guild_id` is set for commands
    registered to a guild (data.guild_id). `invoker`: see _interaction_base.
    """
    leaves = [_option(key, value) for key, value in (options or {}).items()]
    data: Json = {"id": str(command_id), "name": name, "type": 1}
    if subcommand is not None:
        data["options"] = [{"type": 1, "name": subcommand, "options": leaves}]
    elif leaves:
        data["options"] = leaves
    if command_guild_id is not None:
        data["guild_id"] = str(command_guild_id)
    return {**_interaction_base(type=2, guild_id=guild_id, channel_id=channel_id, **invoker), "data": data}


def component_interaction(
    custom_id: str,
    message: Json,
    *,
    component_type: int = 2,
    values: list[str] | None = None,
    guild_id: str | None = "from-message",
    channel_id: str | None = None,
    **invoker: Any,
) -> Json:
    """An INTERACTION_CREATE body for a component (type 3 MESSAGE_COMPONENT) on `message`.

    component_type 2 is a button, 3 a string select (pass `values`). The channel defaults to the
    message's; the guild to the message's guild_id, else GUILD_ID (REST-shaped messages, e.g.
    FakeDiscord.get_message(), carry none). Pass guild_id=None for a message in a DM.
    `invoker`: see _interaction_base.
    """
    gid = message.get("guild_id", GUILD_ID) if guild_id == "from-message" else guild_id
    data: Json = {"custom_id": custom_id, "component_type": component_type}
    if values is not None or component_type in (3, 5, 6, 7, 8):
        data["values"] = list(values or [])
    out = _interaction_base(type=3, guild_id=gid, channel_id=channel_id or message["channel_id"], **invoker)
    return {**out, "data": data, "message": _strip_guild_fields(message)}


# ----- user installs --------------------------------------------------------------------------------
# Shaped from docs/interactions/receiving-and-responding (interaction object, context types, authorizing
# integration owners) and from payloads a user-installed app received (a guild without the bot: context 0,
# owners {"1": user}; a DM between two people: context 2, no guild, `user`, the channel partial with its
# recipients, no entitlement_sku_ids or guild_locale).

GUILD_INSTALL, USER_INSTALL = 0, 1  # application integration types (docs/resources/application)
GUILD_CONTEXT, BOT_DM_CONTEXT, PRIVATE_CHANNEL_CONTEXT = 0, 1, 2  # interaction context types
GROUP_DM_ID = "5100"
FRIEND_DM_ID = "5200"
FRIEND_ID = "2200"
OTHER_GUILD_ID = "4300"  # a guild the bot is not in
OTHER_CHANNEL_ID = "4310"
SEND_POLLS = 1 << 49
USE_EXTERNAL_APPS = 1 << 50  # without it a user-installed app's responses in the guild are ephemeral
# app_permissions where the app acts through its user install (docs: ATTACH_FILES | EMBED_LINKS |
# MENTION_EVERYONE for (G)DMs with other users; payloads also carry SEND_POLLS), and USE_EXTERNAL_EMOJIS
# on top in the bot's DM or a guild the bot is not in (as received).
USER_INSTALL_DM_PERMISSIONS = P.EMBED_LINKS | P.ATTACH_FILES | P.MENTION_EVERYONE | SEND_POLLS
USER_INSTALL_GUILD_PERMISSIONS = USER_INSTALL_DM_PERMISSIONS | P.USE_EXTERNAL_EMOJIS


def group_dm_channel(
    channel_id: str = GROUP_DM_ID, recipients: list[str] | None = None, owner_id: str = USER_ID, name: str | None = None
) -> Json:
    """A group DM (channel type 3) as an interaction's partial `channel` carries it: recipients are the
    other people in it (not the invoker, and never the bot, which is not a member)."""
    return {
        "id": str(channel_id),
        "type": 3,
        "name": name,
        "icon": None,
        "owner_id": str(owner_id),
        "last_message_id": None,
        "flags": 0,
        "recipients": [user(r) for r in (recipients or [FRIEND_ID, OWNER_ID])],
    }


def user_install_interaction(
    options: dict[str, Any] | None = None,
    *,
    subcommand: str | None = "ask",
    name: str = "advisor",
    where: str = "group_dm",
    user_id: str = USER_ID,
    also_guild_installed: bool = False,
    permissions: str | int | None = None,
    application_id: str = APPLICATION_ID,
    command_id: str = COMMAND_ID,
    interaction_id: str | None = None,
    token: str | None = None,
    locale: str = "en-US",
) -> Json:
    """An INTERACTION_CREATE body for `/advisor ask` (by default) run through the app's user install.

    `where`: "group_dm" (context 2, channel type 3, the bot not a member), "friend_dm" (context 2, a DM
    between the invoker and FRIEND_ID), "bot_dm" (context 1, the DM with the bot; owners {"1": user}) or
    "guild" (context 0 in OTHER_GUILD_ID, a guild the bot is not in: `member` with its `permissions`,
    owners {"1": user}; with `also_guild_installed` the guild is GUILD_ID and owners add {"0": GUILD_ID}).
    There is never a `guild_id` outside "guild"."""
    invoker = user(str(user_id))
    leaves = [_option(key, value) for key, value in (options or {}).items()]
    data: Json = {"id": str(command_id), "name": name, "type": 1}
    if subcommand is not None:
        data["options"] = [{"type": 1, "name": subcommand, "options": leaves}]
    elif leaves:
        data["options"] = leaves
    owners: Json = {str(USER_INSTALL): str(user_id)}
    out: Json = {
        "application_id": str(application_id),
        "attachment_size_limit": 10 * 1024 * 1024,
        "authorizing_integration_owners": owners,
        "data": data,
        "entitlements": [],
        "id": interaction_id or snowflake(),
        "locale": locale,
        "token": token or interaction_token(),
        "type": 2,
        "version": 1,
    }
    if where in ("group_dm", "friend_dm"):
        channel = group_dm_channel() if where == "group_dm" else dm_channel(FRIEND_DM_ID, FRIEND_ID)
        if where == "friend_dm":
            channel["recipient_flags"] = 0
        out.update(
            app_permissions=str(USER_INSTALL_DM_PERMISSIONS),
            channel=channel,
            channel_id=channel["id"],
            context=PRIVATE_CHANNEL_CONTEXT,
            user=invoker,
        )
    elif where == "bot_dm":
        out.update(
            app_permissions=str(DM_APP_PERMISSIONS),
            channel=dm_channel(DM_CHANNEL_ID, invoker),
            channel_id=DM_CHANNEL_ID,
            context=BOT_DM_CONTEXT,
            entitlement_sku_ids=[],
            user=invoker,
        )
    elif where == "guild":
        gid = GUILD_ID if also_guild_installed else OTHER_GUILD_ID
        cid = CHANNEL_ID if also_guild_installed else OTHER_CHANNEL_ID
        if also_guild_installed:
            owners[str(GUILD_INSTALL)] = gid
        member_permissions = permissions if permissions is not None else EVERYONE_PERMISSIONS
        out.update(
            app_permissions=str(BOT_PERMISSIONS if also_guild_installed else USER_INSTALL_GUILD_PERMISSIONS),
            channel={**text_channel(cid, guild_id=gid), "permissions": str(member_permissions)},
            channel_id=cid,
            context=GUILD_CONTEXT,
            entitlement_sku_ids=[],
            guild={"id": gid, "features": [], "locale": "en-US"},
            guild_id=gid,
            guild_locale="en-US",
            member=member(invoker, permissions=member_permissions),
        )
    else:
        raise ValueError(f"where must be group_dm, friend_dm, bot_dm or guild, not {where!r}")
    return out


def user_install_invite(application_id: str = APPLICATION_ID) -> str:
    """The install link that adds the app to a user's account (docs/resources/application#install-links)."""
    return f"https://discord.com/oauth2/authorize?client_id={application_id}&integration_type=1&scope=applications.commands"
