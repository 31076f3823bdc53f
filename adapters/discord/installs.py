"""Where an interaction runs and through which install: guild installs, user installs, and what each may do.

Discord (docs/interactions/receiving-and-responding, docs/interactions/application-commands#contexts):
an app is installed to a server (integration type 0, GUILD_INSTALL) or to a user's account (1,
USER_INSTALL). A command says where it can be used with `contexts`: 0 GUILD, 1 BOT_DM (the DM with the
app's bot), 2 PRIVATE_CHANNEL (group DMs and DMs between people; only meaningful for user installs).
Both fields exist on top-level commands only: subcommands inherit their command's, so every `/advisor`
subcommand is offered wherever `/advisor ask` is, and `reindex` refuses where it must not run.

Every interaction carries `authorizing_integration_owners`: key "0" (the guild id, or "0" in the bot's
DM) when the guild install authorized it, key "1" (the user id) when the user install did. Without key
"0" the bot is not a member of the channel: it cannot post, read or DM there, only answer through the
interaction's webhook, and a member's Manage Server there is about a server advisor does not serve.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GUILD_INSTALL, USER_INSTALL = 0, 1
GUILD, BOT_DM, PRIVATE_CHANNEL = 0, 1, 2
INSTALL_TYPES = (GUILD_INSTALL, USER_INSTALL)
CONTEXTS = (GUILD, BOT_DM, PRIVATE_CHANNEL)
# View Channels, Send Messages, Send Messages in Threads, Read Message History, Embed Links
BOT_PERMISSIONS = 274877991936
AUTHORIZE = "https://discord.com/oauth2/authorize"

NOT_HERE = (
    "Sorry, reindexing only works in a server where advisor is installed (or in its DM, for listed admins). "
    "Here I can only answer questions."
)


def guild_install_link(application_id: str, permissions: int = BOT_PERMISSIONS) -> str:
    """Add the bot to a server: scopes bot + applications.commands, with the permissions it needs."""
    return f"{AUTHORIZE}?client_id={application_id}&permissions={permissions}&scope=bot%20applications.commands"


def user_install_link(application_id: str) -> str:
    """Add the app to a user's account: integration_type=1 and scope applications.commands only."""
    return f"{AUTHORIZE}?client_id={application_id}&integration_type={USER_INSTALL}&scope=applications.commands"


def owners(payload: Mapping[str, Any]) -> dict[str, str]:
    """authorizing_integration_owners as {"0"|"1": id}, {} when absent or malformed."""
    found = payload.get("authorizing_integration_owners")
    if not isinstance(found, dict):
        return {}
    return {str(key): str(value) for key, value in found.items()}


def bot_can_act(payload: Mapping[str, Any]) -> bool:
    """Whether the guild install authorized this interaction (the bot is in the guild, or it is its DM).

    Payloads without `authorizing_integration_owners` (before user installs existed) are the guild
    install's."""
    found = owners(payload)
    if not found:
        return "authorizing_integration_owners" not in payload and payload.get("context") != PRIVATE_CHANNEL
    guild_owner = found.get(str(GUILD_INSTALL))
    if guild_owner is None:
        return False
    guild_id = payload.get("guild_id")
    return guild_owner == str(guild_id) if guild_id else guild_owner == "0"


def reindex_allowed_here(payload: Mapping[str, Any]) -> bool:
    """Reindex runs in a guild the bot serves or in the bot's DM; never in group DMs, DMs between
    people, or guilds that only have the user install."""
    return payload.get("context") != PRIVATE_CHANNEL and bot_can_act(payload)


__all__ = [
    "BOT_DM",
    "CONTEXTS",
    "GUILD",
    "GUILD_INSTALL",
    "INSTALL_TYPES",
    "NOT_HERE",
    "PRIVATE_CHANNEL",
    "USER_INSTALL",
    "bot_can_act",
    "guild_install_link",
    "owners",
    "reindex_allowed_here",
    "user_install_link",
]
