"""Discord user installs: /advisor in DMs and group DMs through the user install, on both doors.

The gateway door is the real discord.py client against the fake gateway and REST API (which keeps the
commands as synced, refuses interactions Discord would not deliver and keeps the bot out of channels it is
not a member of); the HTTP door is the signed webhook endpoint against the fake interaction webhook. The
engine, its memory and embedded Qdrant are real; the fake OpenAI server stands in where a model is needed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nacl.signing import SigningKey

from adapters.discord.gateway import DiscordAdapter
from adapters.discord.installs import NOT_HERE, guild_install_link, user_install_link
from adapters.discord.interactions import DiscordInteractions
from config.settings import load_settings
from tests.harness import discord_payloads as dp
from tests.harness.discord_api import FakeDiscord
from tests.harness.discord_webhooks import FakeWebhooks, sign
from tests.harness.openai_server import FakeOpenAI
from tests.harness.stack import Stack, until

QUESTION = "How big should my emergency fund be?"
REFUSED = "Sorry, only admins can reindex the knowledge base."
PLACES = ["group_dm", "friend_dm", "bot_dm", "guild"]
# where each place's conversation lives: no guild_id means the "dm" workspace
KEYS = {
    "group_dm": f"discord:dm:{dp.GROUP_DM_ID}:slash-{dp.USER_ID}",
    "friend_dm": f"discord:dm:{dp.FRIEND_DM_ID}:slash-{dp.USER_ID}",
    "bot_dm": f"discord:dm:{dp.DM_CHANNEL_ID}:slash-{dp.USER_ID}",
    "guild": f"discord:{dp.OTHER_GUILD_ID}:{dp.OTHER_CHANNEL_ID}:slash-{dp.USER_ID}",
}


def ask(where: str = "group_dm", private: bool | None = None, question: str = QUESTION, **kw: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"question": question}
    if private is not None:
        options["private"] = private
    return dp.user_install_interaction(options, where=where, **kw)


def flags(body: dict[str, Any]) -> int:
    """The message flags of an interaction response ({"type", "data": {...}}) or a follow-up body."""
    return int(body.get("flags") or (body.get("data") or {}).get("flags") or 0)


def long_answer(openai_fake: FakeOpenAI) -> None:
    opening = ("Build the fund a little each month [1]. " * 45).strip()
    openai_fake.default_answer = opening + "\n\n" + "Keep going [1]. " * 150
    openai_fake.chunk_chars = 400
    openai_fake.chunk_delay = 0.0


# -- the gateway door -------------------------------------------------------------------------------


class Bot:
    def __init__(self, adapter: DiscordAdapter, fake: FakeDiscord) -> None:
        self.adapter, self.fake = adapter, fake

    def callbacks(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        path = f"/interactions/{payload['id']}/{payload['token']}/callback"
        return [c["json"] for c in self.fake.calls_to("POST", path)]

    def edits(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        path = f"/webhooks/{dp.APPLICATION_ID}/{payload['token']}/messages/@original"
        return [c["json"] for c in self.fake.calls_to("PATCH", path) if c["status"] < 300]

    def followups(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        path = f"/webhooks/{dp.APPLICATION_ID}/{payload['token']}"
        return [c["json"] for c in self.fake.calls if c["method"] == "POST" and c["path"] == path and c["status"] < 300]

    def channel_writes(self) -> list[dict[str, Any]]:
        return [c for c in self.fake.calls if c["path"].startswith("/channels/") and c["method"] != "GET"]


@pytest.fixture
def start(
    stack: Stack, discord_fake: FakeDiscord, openai_fake: FakeOpenAI, setenv: Callable[..., None], kb_dir: Path
) -> Callable[..., Any]:
    async def launch(model: bool = False, **env: str) -> Bot:
        setenv(DISCORD_TOKEN=dp.BOT_TOKEN, ADVISOR_KNOWLEDGE_PATHS=str(kb_dir), **env)
        settings = load_settings(None)
        chat_model = stack.chat_model(openai_fake) if model else None
        engine = stack.engine(settings, chat_model, memory=stack.memory("memory.sqlite3"))
        adapter = await stack.discord_gateway(engine, settings, discord_fake, edit_interval=0.05)
        await until(lambda: discord_fake.commands)
        return Bot(adapter, discord_fake)

    return launch


async def test_advisor_is_registered_for_user_installs_in_dms_and_group_dms(start: Any) -> None:
    bot = await start()
    (sync,) = bot.fake.calls_to("PUT", f"/applications/{dp.APPLICATION_ID}/commands")
    (sent,) = sync["json"]
    assert sync["status"] == 200
    assert (sent["name"], sent["integration_types"], sent["contexts"]) == ("advisor", [0, 1], [0, 1, 2])
    (stored,) = bot.fake.commands
    assert (stored["integration_types"], stored["contexts"]) == ([0, 1], [0, 1, 2])
    # Discord has contexts and integration_types on top-level commands only: reindex cannot be narrower
    # than /advisor in the registration, so it refuses itself outside the guilds the bot serves (below).
    subcommands = {option["name"]: option for option in sent["options"]}
    assert set(subcommands) == {"ask", "status", "forget", "reindex"}
    assert not any({"contexts", "integration_types"} & set(option) for option in subcommands.values())
    private = next(o for o in subcommands["ask"]["options"] if o["name"] == "private")
    assert private["type"] == 5 and not private.get("required")  # private defaults to true in the code


async def test_without_user_install_in_the_portal_advisor_is_registered_for_servers_only(
    stack: Stack, openai_fake: FakeOpenAI, setenv: Callable[..., None], kb_dir: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    setenv(DISCORD_TOKEN=dp.BOT_TOKEN, ADVISOR_KNOWLEDGE_PATHS=str(kb_dir))
    settings = load_settings(None)
    async with FakeDiscord(install_types=(0,)) as fake:
        fake.patch(monkeypatch)
        engine = stack.engine(settings, None, memory=stack.memory("memory.sqlite3"))
        await stack.discord_gateway(engine, settings, fake)
        await until(lambda: fake.commands)
        assert [c["status"] for c in fake.calls_to("PUT", f"/applications/{dp.APPLICATION_ID}/commands")] == [400, 200]
        (stored,) = fake.commands
        assert (stored["integration_types"], stored["contexts"]) == ([0], [0, 1])
        assert "enable User Install" in caplog.text
        with pytest.raises(ValueError, match="would not deliver"):
            await fake.dispatch("INTERACTION_CREATE", ask("group_dm"))


@pytest.mark.parametrize("private", [True, False], ids=["private", "public"])
async def test_ask_in_a_group_dm_is_answered_through_the_interaction_only(start: Any, private: bool) -> None:
    bot = await start()
    payload = ask("group_dm", private=private)
    await bot.fake.dispatch("INTERACTION_CREATE", payload)
    (edit,) = await until(lambda: bot.edits(payload))
    (callback,) = bot.callbacks(payload)
    assert callback["type"] == 5 and bool(flags(callback) & 64) is private
    assert "three to six months" in edit["content"] and edit["allowed_mentions"]["parse"] == []
    assert bot.channel_writes() == []  # the bot is not in the group DM: no message, no typing, no DM
    shown = bot.fake.get_message(dp.GROUP_DM_ID, bot.fake.interactions[payload["id"]]["original_message_id"])
    assert shown is not None and bool(shown["flags"] & 64) is private
    turns = await bot.adapter.engine.memory.history(KEYS["group_dm"])
    assert [t.role for t in turns] == ["user", "assistant"]


@pytest.mark.parametrize("where", PLACES)
async def test_ask_everywhere_a_user_install_reaches_keeps_its_own_conversation(start: Any, where: str) -> None:
    bot = await start()
    payload = ask(where)  # `private` left out: Discord sends no option, the answer is private
    await bot.fake.dispatch("INTERACTION_CREATE", payload)
    (edit,) = await until(lambda: bot.edits(payload))
    assert "three to six months" in edit["content"] and flags(bot.callbacks(payload)[0]) & 64
    assert [t.role for t in await bot.adapter.engine.memory.history(KEYS[where])] == ["user", "assistant"]
    forget = dp.user_install_interaction(subcommand="forget", where=where)
    await bot.fake.dispatch("INTERACTION_CREATE", forget)
    (done,) = await until(lambda: bot.edits(forget))
    assert done["content"] == "Done: I forgot our conversations here (2 messages)."
    status = dp.user_install_interaction(subcommand="status", where=where)
    await bot.fake.dispatch("INTERACTION_CREATE", status)
    (facts,) = await until(lambda: bot.edits(status))
    assert "**indexed passages**: 3" in facts["content"]


@pytest.mark.parametrize(
    ("permissions", "shown_to_all"),
    [(dp.EVERYONE_PERMISSIONS, False), (dp.EVERYONE_PERMISSIONS | dp.USE_EXTERNAL_APPS, True)],
    ids=["no-external-apps", "external-apps"],
)
async def test_a_public_answer_in_a_guild_without_the_bot_follows_use_external_apps(
    start: Any, permissions: int, shown_to_all: bool
) -> None:
    bot = await start()
    payload = ask("guild", private=False, permissions=permissions)
    await bot.fake.dispatch("INTERACTION_CREATE", payload)
    await until(lambda: bot.edits(payload))
    assert not flags(bot.callbacks(payload)[0]) & 64  # asked for public; Discord decides
    shown = bot.fake.get_message(dp.OTHER_CHANNEL_ID, bot.fake.interactions[payload["id"]]["original_message_id"])
    assert shown is not None and bool(shown["flags"] & 64) is not shown_to_all
    assert bot.channel_writes() == []  # the bot is not in that guild


@pytest.mark.parametrize("private", [True, False], ids=["private", "public"])
async def test_a_long_answer_in_a_group_dm_is_split_into_followups(
    start: Any, openai_fake: FakeOpenAI, private: bool
) -> None:
    long_answer(openai_fake)
    bot = await start(model=True)
    payload = ask("group_dm", private=private, question="How do I build an emergency fund?")
    await bot.fake.dispatch("INTERACTION_CREATE", payload)
    followups = await until(lambda: len(bot.followups(payload)) >= 2 and bot.followups(payload))
    await asyncio.sleep(0.2)
    parts = [bot.edits(payload)[-1], *bot.followups(payload)]
    assert all(0 < len(p["content"]) <= 2000 for p in parts)
    assert all(bool(flags(f) & 64) is private for f in followups)
    assert "-# Sources:" in parts[-1]["content"] and bot.channel_writes() == []


async def test_reindex_is_refused_outside_the_guilds_the_bot_serves(start: Any) -> None:
    bot = await start(ADVISOR_ADMINS_DISCORD_USER_IDS=dp.USER_ID)
    tries = [
        dp.user_install_interaction(subcommand="reindex", where="group_dm"),
        dp.user_install_interaction(subcommand="reindex", where="friend_dm"),
        dp.user_install_interaction(subcommand="reindex", where="guild", permissions=dp.MODERATOR_PERMISSIONS),
    ]
    for payload in tries:  # a listed admin, and Manage Server in someone else's guild: refused all the same
        await bot.fake.dispatch("INTERACTION_CREATE", payload)
        (reply,) = await until(lambda: bot.callbacks(payload))
        assert reply["type"] == 4 and flags(reply) & 64 and reply["data"]["content"] == NOT_HERE
    assert not bot.adapter.admin.reindexing and await bot.adapter.admin.store.count() == 3


async def test_manage_server_through_a_user_install_is_not_an_admin(start: Any) -> None:
    bot = await start()
    foreign = dp.user_install_interaction(subcommand="reindex", where="guild", permissions=dp.ALL_PERMISSIONS)
    both = dp.user_install_interaction(
        subcommand="reindex", where="guild", also_guild_installed=True, permissions=dp.EVERYONE_PERMISSIONS
    )
    for payload, expected in ((foreign, NOT_HERE), (both, REFUSED)):
        await bot.fake.dispatch("INTERACTION_CREATE", payload)
        (reply,) = await until(lambda: bot.callbacks(payload))
        assert reply["data"]["content"] == expected


async def test_a_duplicate_delivery_is_answered_once(start: Any) -> None:
    bot = await start()
    payload = ask("group_dm", private=False)
    await bot.fake.dispatch("INTERACTION_CREATE", payload)
    await until(lambda: bot.edits(payload))
    await bot.fake.dispatch("INTERACTION_CREATE", payload)  # a replay after a resume
    await asyncio.sleep(0.5)
    assert len(bot.edits(payload)) == 1
    assert len(bot.callbacks(payload)) == 1  # the replay was not even acked again
    assert [t.role for t in await bot.adapter.engine.memory.history(KEYS["group_dm"])] == ["user", "assistant"]


async def test_an_expired_token_in_a_group_dm_is_logged_and_alerted_never_dmed(
    start: Any, openai_fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    openai_fake.default_answer = "Three to six months of expenses [1]. " * 5
    openai_fake.chunk_delay = 0.3
    bot = await start(model=True, ADVISOR_SAFETY_ALERT_CHANNEL=f"discord:{dp.CHANNEL_ID}")
    payload = ask("group_dm")
    await bot.fake.dispatch("INTERACTION_CREATE", payload)
    await until(lambda: bot.callbacks(payload))
    bot.fake.clock.advance(15 * 60 + 1)  # the answer arrives after the token's 15 minutes
    (alert,) = await until(lambda: bot.fake.calls_to("POST", f"/channels/{dp.CHANNEL_ID}/messages"))
    assert "Delivery alert" in alert["json"]["content"] and "Three to six" not in alert["json"]["content"]
    assert bot.edits(payload) == [] and not bot.fake.calls_to("POST", "/users/@me/channels")
    assert "could not be delivered by any route" in caplog.text and payload["token"] not in caplog.text


# -- the fake holds registrations to Discord's rules ------------------------------------------------


async def put_commands(fake: FakeDiscord, commands: list[dict[str, Any]]) -> tuple[int, Any]:
    url = f"{fake.api_base}/applications/{dp.APPLICATION_ID}/commands"
    async with aiohttp.ClientSession() as http:
        async with http.put(url, json=commands, headers={"Authorization": f"Bot {dp.BOT_TOKEN}"}) as response:
            return response.status, await response.json()


def command(**fields: Any) -> dict[str, Any]:
    return {"name": "admin", "description": "Guild admin tools", "type": 1, **fields}


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"contexts": [3]}, ["0", "contexts", "0"]),
        ({"contexts": "guild"}, ["0", "contexts"]),
        ({"integration_types": [0, 2]}, ["0", "integration_types", "1"]),
        ({"integration_types": [True]}, ["0", "integration_types", "0"]),
    ],
    ids=["unknown-context", "not-a-list", "unknown-install", "bool"],
)
async def test_the_fake_refuses_bad_contexts_and_integration_types_as_discord_does(
    discord_fake: FakeDiscord, fields: dict[str, Any], where: list[str]
) -> None:
    status, body = await put_commands(discord_fake, [command(**fields)])
    assert status == 400 and body["code"] == 50035 and body["message"] == "Invalid Form Body"
    errors = body["errors"]
    for key in where:
        errors = errors[key]
    assert errors["_errors"][0]["code"] in ("ENUM_TYPE_COERCE", "LIST_TYPE_CONVERT")
    assert discord_fake.commands == []


async def test_the_fake_refuses_an_install_type_the_app_does_not_offer() -> None:
    async with FakeDiscord(install_types=(0,)) as fake:
        status, body = await put_commands(fake, [command(integration_types=[0, 1])])
        assert status == 400 and body["code"] == 50035 and "integration_types" in body["errors"]["0"]
        assert (await put_commands(fake, [command(integration_types=[0])]))[0] == 200


async def test_the_fake_never_delivers_a_command_where_it_is_not_registered(
    start: Any, discord_fake: FakeDiscord
) -> None:
    await start()
    advisor = {k: v for k, v in discord_fake.commands[0].items() if k not in ("id", "application_id", "version")}
    status, _ = await put_commands(discord_fake, [advisor, command(contexts=[0], integration_types=[0])])
    assert status == 200
    stored = {c["name"]: (c["integration_types"], c["contexts"]) for c in discord_fake.commands}
    assert stored == {"advisor": ([0, 1], [0, 1, 2]), "admin": ([0], [0])}
    for where in ("group_dm", "guild", "bot_dm"):
        with pytest.raises(ValueError, match="would not deliver /admin"):
            await discord_fake.dispatch(
                "INTERACTION_CREATE", dp.user_install_interaction(name="admin", subcommand=None, where=where)
            )
    guild = dp.interaction_create(name="admin", subcommand=None)  # in the guild, through the guild install
    assert await discord_fake.dispatch("INTERACTION_CREATE", guild) is not None


# -- the HTTP door ----------------------------------------------------------------------------------

APP_ID = "123456789012345678"
KEY = SigningKey.generate()


class Door:
    def __init__(self, adapter: DiscordInteractions, hooks: FakeWebhooks, url: str) -> None:
        self.adapter, self.hooks, self.url = adapter, hooks, url
        self.asked: list[Any] = []
        answer = adapter.engine.answer

        def spy(message: Any) -> Any:
            self.asked.append(message)
            return answer(message)

        adapter.engine.answer = spy

    async def post(self, payload: dict[str, Any]) -> dict[str, Any]:
        status, body = await self.hooks.interact(self.url, payload, KEY)
        assert status == 200
        await self.adapter.drain(10)
        return body

    def edits(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        path = f"/webhooks/{APP_ID}/{payload['token']}/messages/@original"
        return [c["json"] for c in self.hooks.calls_to("PATCH", path, ok=True)]

    def followups(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        return [c["json"] for c in self.hooks.calls_to("POST", f"/webhooks/{APP_ID}/{payload['token']}", ok=True)]


@pytest.fixture
async def door(
    stack: Stack, kb_dir: Path, openai_fake: FakeOpenAI, setenv: Callable[..., None]
) -> Callable[..., Any]:
    async def launch(model: bool = False, **env: str) -> Door:
        hooks = FakeWebhooks()
        await hooks.__aenter__()
        stack.later(lambda: hooks.__aexit__(None, None, None))
        setenv(
            DISCORD_PUBLIC_KEY=KEY.verify_key.encode().hex(),
            DISCORD_APPLICATION_ID=APP_ID,
            DISCORD_TOKEN=dp.BOT_TOKEN,  # so a DM fallback would be possible, and is not tried in group DMs
            ADVISOR_KNOWLEDGE_PATHS=str(kb_dir),
            **env,
        )
        settings = load_settings(None)
        chat_model = stack.chat_model(openai_fake) if model else None
        engine = stack.engine(settings, chat_model, memory=stack.memory("memory.sqlite3"))
        admin = stack.admin(engine, settings)
        adapter = DiscordInteractions(engine, admin, settings, api_base=hooks.api_base, edit_interval=None)
        base = await stack.serve(adapter.web_app(), access_log=None, shutdown_timeout=1.0)
        return Door(adapter, hooks, f"{base}/discord/interactions")

    return launch


def http_ask(where: str = "group_dm", private: bool | None = None, **kw: Any) -> dict[str, Any]:
    return ask(where, private, application_id=APP_ID, **kw)


@pytest.mark.parametrize("private", [True, False, None], ids=["private", "public", "default"])
async def test_http_ask_in_a_group_dm(door: Any, private: bool | None) -> None:
    endpoint = await door()
    payload = http_ask("group_dm", private)
    response = await endpoint.post(payload)
    assert response["type"] == 5 and bool(flags(response) & 64) is (private is not False)
    (edit,) = endpoint.edits(payload)
    assert "three to six months" in edit["content"] and edit["allowed_mentions"] == {"parse": []}
    (asked,) = endpoint.asked
    assert str(asked.conversation) == KEYS["group_dm"]
    assert endpoint.hooks.calls_to("POST", "/channels/") == [] == endpoint.hooks.calls_to("POST", "/users/")


@pytest.mark.parametrize("private", [True, False], ids=["private", "public"])
async def test_http_a_long_answer_in_a_group_dm_is_split_into_followups(
    door: Any, openai_fake: FakeOpenAI, private: bool
) -> None:
    long_answer(openai_fake)
    endpoint = await door(model=True)
    payload = http_ask("group_dm", private, question="How do I build an emergency fund?")
    await endpoint.post(payload)
    parts = [endpoint.edits(payload)[-1], *endpoint.followups(payload)]
    assert len(parts) >= 3 and all(0 < len(p["content"]) <= 2000 for p in parts)
    assert all(bool(flags(f) & 64) is private for f in endpoint.followups(payload))


async def test_http_reindex_is_refused_outside_the_guilds_the_bot_serves(door: Any) -> None:
    endpoint = await door(ADVISOR_ADMINS_DISCORD_USER_IDS=dp.USER_ID)
    tries = [
        dp.user_install_interaction(subcommand="reindex", where="group_dm", application_id=APP_ID),
        dp.user_install_interaction(subcommand="reindex", where="friend_dm", application_id=APP_ID),
        dp.user_install_interaction(
            subcommand="reindex", where="guild", permissions=dp.ALL_PERMISSIONS, application_id=APP_ID
        ),
    ]
    for payload in tries:
        response = await endpoint.post(payload)
        assert response["type"] == 4 and flags(response) & 64 and response["data"]["content"] == NOT_HERE
    assert endpoint.hooks.calls == [] and not endpoint.adapter.admin.reindexing


async def test_http_status_and_forget_without_a_guild(door: Any) -> None:
    endpoint = await door()
    await endpoint.post(http_ask("friend_dm"))
    for name, expected in (("status", "**indexed passages**: 3"), ("forget", "(2 messages)")):
        payload = dp.user_install_interaction(subcommand=name, where="friend_dm", application_id=APP_ID)
        assert (await endpoint.post(payload))["type"] == 5
        assert expected in endpoint.edits(payload)[-1]["content"]


async def test_http_an_undeliverable_answer_in_a_group_dm_is_never_dmed(
    door: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    endpoint = await door()
    endpoint.hooks.fail_next("PATCH", "/webhooks/", status=401, code=50027)
    endpoint.hooks.fail_next("POST", "/webhooks/", status=401, code=50027)
    payload = http_ask("group_dm")
    await endpoint.post(payload)
    assert endpoint.hooks.calls_to("POST", "/users/@me/channels") == []
    assert "could not be delivered by any route" in caplog.text and payload["token"] not in caplog.text
    assert QUESTION not in caplog.text


async def test_http_a_duplicate_delivery_is_answered_once(door: Any) -> None:
    endpoint = await door()
    payload = http_ask("group_dm", private=False)
    first = await endpoint.post(payload)
    body = json.dumps(payload).encode()
    async with aiohttp.ClientSession() as http:  # Discord delivering the same interaction again
        async with http.post(endpoint.url, data=body, headers=sign(body, KEY, int(time.time()))) as response:
            again = await response.json()
    await endpoint.adapter.drain(10)
    assert again == first and len(endpoint.asked) == 1 and len(endpoint.edits(payload)) == 1


# -- install links ----------------------------------------------------------------------------------


def test_both_install_links() -> None:
    guild, user = guild_install_link("APP_ID"), user_install_link("APP_ID")
    base = "https://discord.com/oauth2/authorize?client_id=APP_ID"
    assert guild == f"{base}&permissions=274877991936&scope=bot%20applications.commands"
    assert user == f"{base}&integration_type=1&scope=applications.commands"
    assert user == dp.user_install_invite("APP_ID")
