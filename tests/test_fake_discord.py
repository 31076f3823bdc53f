"""The fake Discord (tests/harness/discord_api.py, discord_payloads.py) against the real discord.py client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from tests.harness import discord_payloads as dp
from tests.harness.discord_api import FakeDiscord

TIMEOUT = 5


@pytest.fixture
def fake(discord_fake: FakeDiscord) -> FakeDiscord:
    return discord_fake


def intents(*, message_content: bool = True) -> discord.Intents:
    out = discord.Intents.default()
    out.message_content = message_content
    return out


def new_client(**kw: Any) -> discord.Client:
    kw.setdefault("intents", intents())
    # discord.py waits guild_ready_timeout (default 2 s) after the last GUILD_CREATE before on_ready.
    return discord.Client(guild_ready_timeout=0.05, **kw)


@contextlib.asynccontextmanager
async def running(client: discord.Client, fake: FakeDiscord) -> AsyncIterator[discord.Client]:
    """Start the client against the fake, wait for on_ready, and always close it."""
    task = asyncio.create_task(client.start(dp.BOT_TOKEN))
    ready = asyncio.create_task(client.wait_until_ready())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # start() ended early: raise why
            raise AssertionError("client.start() returned before on_ready")
        if ready not in done:
            raise AssertionError("on_ready did not fire")
        yield client
    finally:
        ready.cancel()
        await client.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, TIMEOUT)


class Inbox:
    """Collects messages from on_message, skipping the bot's own (echoed) ones unless asked."""

    def __init__(self, client: discord.Client, *, include_own: bool = False) -> None:
        self.queue: asyncio.Queue[discord.Message] = asyncio.Queue()
        self.seen: list[discord.Message] = []

        @client.event
        async def on_message(message: discord.Message) -> None:
            self.seen.append(message)
            if include_own or message.author != client.user:
                self.queue.put_nowait(message)

    async def next(self) -> discord.Message:
        return await asyncio.wait_for(self.queue.get(), TIMEOUT)


# ----- connecting ----------------------------------------------------------------------------------


async def test_client_identifies_gets_ready_and_caches_the_guild(fake: FakeDiscord) -> None:
    client = new_client()
    readies: list[None] = []

    @client.event
    async def on_ready() -> None:
        readies.append(None)

    async with running(client, fake):
        await fake.wait_ready()
        assert readies == [None]
        assert (fake.identifies, fake.resumes) == (1, 0)
        assert client.user is not None and client.user.id == 1000 and client.user.bot
        assert client.application_id == 1000
        guild = client.get_guild(4000)
        assert guild is not None and guild.name == "Advice Club" and guild.owner_id == int(dp.OWNER_ID)
        general = guild.get_channel(3000)
        assert isinstance(general, discord.TextChannel) and general.name == "general"
        thread = guild.get_thread(3100)
        assert isinstance(thread, discord.Thread) and thread.parent_id == 3000
        assert guild.me is not None and guild.me.id == 1000 and guild.default_role.id == 4000
        # Without GUILD_PRESENCES Discord lists only the bot in GUILD_CREATE's members.
        assert guild.member_count == 3 and guild.get_member(int(dp.USER_ID)) is None
        # Login: the bot user and the application, with the bot token.
        [me] = fake.calls_to("GET", "/users/@me")
        assert me["headers"]["authorization"] == f"Bot {dp.BOT_TOKEN}"
        assert fake.calls_to("GET", "/oauth2/applications/@me")
        # The gateway connection: v10 json, zlib-stream compressed, IDENTIFY with MESSAGE_CONTENT.
        [connection] = fake.connections
        assert connection["path"] == "/gateway"
        assert connection["query"]["v"] == "10" and connection["query"]["encoding"] == "json"
        identify = next(frame for frame in fake.gateway_received if frame["op"] == 2)
        assert identify["d"]["token"] == dp.BOT_TOKEN
        assert identify["d"]["intents"] & dp.Intents.MESSAGE_CONTENT
        await fake.wait_until(lambda: fake.heartbeats >= 1)
        assert any(frame["op"] == 11 for frame in fake.gateway_sent)
        assert [f["t"] for f in fake.gateway_sent if f["op"] == 0][:2] == ["READY", "GUILD_CREATE"]
    assert fake.connections[0]["closed_by"] == "client"


async def test_zlib_stream_frames_decompress_to_the_gateway_json(fake: FakeDiscord) -> None:
    url = fake.gateway_url + "?v=10&encoding=json&compress=zlib-stream"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        frame = await ws.receive(timeout=TIMEOUT)
        assert frame.type == aiohttp.WSMsgType.BINARY and frame.data.endswith(b"\x00\x00\xff\xff")
        inflate = zlib.decompressobj()
        hello = json.loads(inflate.decompress(frame.data))
        assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 1000
        await ws.send_json({"op": 6, "d": {"token": dp.BOT_TOKEN, "session_id": "nope", "seq": 1}})
        invalid = json.loads(inflate.decompress((await ws.receive(timeout=TIMEOUT)).data))
        assert invalid == {"op": 9, "d": False, "s": None, "t": None}
    assert fake.rejected_resumes == 1


async def test_missing_message_content_intent_raises_privileged_intents_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with FakeDiscord(require_message_content=True) as fake:
        fake.patch(monkeypatch)
        client = new_client(intents=intents(message_content=False))
        try:
            with pytest.raises(discord.PrivilegedIntentsRequired):
                await asyncio.wait_for(client.start(dp.BOT_TOKEN), TIMEOUT)
        finally:
            await client.close()
        assert fake.identifies == 0
        assert fake.connections[0]["close_code"] == 4014


async def test_privileged_intent_not_enabled_in_the_portal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeDiscord(enabled_privileged_intents=0) as fake:
        fake.patch(monkeypatch)
        client = new_client()  # asks for MESSAGE_CONTENT, which the "portal" has switched off
        try:
            with pytest.raises(discord.PrivilegedIntentsRequired):
                await asyncio.wait_for(client.start(dp.BOT_TOKEN), TIMEOUT)
        finally:
            await client.close()


async def test_wrong_token_fails_login(fake: FakeDiscord) -> None:
    client = new_client()
    try:
        with pytest.raises(discord.LoginFailure):
            await asyncio.wait_for(client.start("not-the-token"), TIMEOUT)
    finally:
        await client.close()
    assert fake.connections == []


# ----- messages ------------------------------------------------------------------------------------


async def test_message_create_reaches_on_message_and_send_edit_reply_hit_rest(fake: FakeDiscord) -> None:
    client = new_client()
    inbox = Inbox(client, include_own=True)
    async with running(client, fake):
        await fake.dispatch(
            "MESSAGE_CREATE", dp.message_create("<@1000> how do I budget?", roles=[dp.MODERATOR_ROLE_ID])
        )
        message = await inbox.next()
        assert message.content == "<@1000> how do I budget?"
        assert message.author.id == 2000 and message.author.name == "alice" and not message.author.bot
        assert isinstance(message.author, discord.Member) and [r.id for r in message.author.roles[1:]] == [4200]
        assert message.guild is not None and message.guild.id == 4000 and message.channel.id == 3000
        assert client.user in message.mentions

        sent = await message.channel.send("Thinking…")
        [post] = fake.calls_to("POST", "/channels/3000/messages")
        assert post["json"]["content"] == "Thinking…"
        assert sent.author == client.user and sent.id > message.id and sent.type is discord.MessageType.default
        echoed = await inbox.next()  # Discord echoes the bot's own message over the gateway
        assert echoed.id == sent.id and echoed.author == client.user

        edited = await sent.edit(content="Build an emergency fund first.")
        [patch] = fake.calls_to("PATCH", f"/channels/3000/messages/{sent.id}")
        assert patch["json"]["content"] == "Build an emergency fund first."
        assert edited.content == "Build an emergency fund first." and edited.edited_at is not None
        assert fake.get_message("3000", str(sent.id))["content"] == "Build an emergency fund first."

        reply = await message.reply("See the guide.", mention_author=False)
        assert reply.type is discord.MessageType.reply
        assert reply.reference is not None and reply.reference.message_id == message.id
        body = fake.calls_to("POST", "/channels/3000/messages")[-1]["json"]
        assert str(body["message_reference"]["message_id"]) == str(message.id)
        assert body["allowed_mentions"]["replied_user"] is False

        await message.add_reaction("👍")
        [reaction] = fake.calls_to("PUT", f"/channels/3000/messages/{message.id}/reactions/")
        assert reaction["path"].endswith("/reactions/👍/@me")
        async with message.channel.typing():
            pass
        assert fake.calls_to("POST", "/channels/3000/typing")
        await sent.delete()
        assert fake.get_message("3000", str(sent.id)) is None


async def test_rest_errors_and_history(fake: FakeDiscord) -> None:
    client = new_client()
    async with running(client, fake):
        channel = client.get_channel(3000)
        assert isinstance(channel, discord.TextChannel)
        fake.fail_next("POST", "/channels/3000/messages", "forbidden")
        with pytest.raises(discord.Forbidden) as forbidden:
            await channel.send("hi")
        assert forbidden.value.code == 50013 and forbidden.value.status == 403
        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x" * 2001)
        assert too_long.value.code == 50035
        with pytest.raises(discord.NotFound) as unknown:
            await channel.fetch_message(1)
        assert unknown.value.code == 10008
        # A reply to a message Discord does not know is refused (fail_if_not_exists defaults to true).
        with pytest.raises(discord.HTTPException):
            await channel.send("x", reference=discord.MessageReference(message_id=42, channel_id=3000))
        first = await channel.send("one")
        second = await channel.send("two")
        history = [m.content async for m in channel.history(limit=10)]
        assert history == ["two", "one"]
        assert (await channel.fetch_message(first.id)).content == "one" and second.id > first.id


async def test_rate_limited_send_is_retried_after_retry_after(fake: FakeDiscord) -> None:
    client = new_client()
    async with running(client, fake):
        channel = client.get_channel(3000)
        assert isinstance(channel, discord.TextChannel)
        fake.fail_next("POST", "/channels/3000/messages", "rate_limited", retry_after=0.2)
        sent = await channel.send("after the limit")
        first, second = fake.calls_to("POST", "/channels/3000/messages")
        assert (first["status"], second["status"]) == (429, 200)
        assert second["at"] - first["at"] >= 0.2  # no sooner than retry_after, on the fake's own clock
        assert first["json"] == second["json"]
        assert fake.get_message("3000", str(sent.id)) is not None


async def test_server_error_is_retried(fake: FakeDiscord) -> None:
    client = new_client()
    async with running(client, fake):
        channel = client.get_channel(3000)
        assert isinstance(channel, discord.TextChannel)
        fake.fail_next("POST", "/channels/3000/messages", "server_error")
        await channel.send("eventually")
        assert len(fake.calls_to("POST", "/channels/3000/messages")) == 2


async def test_unknown_route_bad_auth_and_exact_json_content_type(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as session:
        auth = {"Authorization": f"Bot {dp.BOT_TOKEN}"}
        async with session.get(fake.api_base + "/nowhere", headers=auth) as response:
            assert response.status == 404 and await response.json() == {"message": "404: Not Found", "code": 0}
            assert response.headers["Content-Type"] == "application/json"
        async with session.get(fake.api_base + "/users/@me") as response:
            assert response.status == 401 and (await response.json())["message"] == "401: Unauthorized"
        async with session.get(fake.api_base + "/gateway") as response:
            assert (await response.json())["url"] == fake.gateway_url
        async with session.get(fake.api_base + "/gateway/bot", headers=auth) as response:
            body = await response.json()
            assert body["shards"] == 1 and body["session_start_limit"]["max_concurrency"] == 1


async def test_message_content_is_blank_without_the_intent_unless_mentioned(fake: FakeDiscord) -> None:
    client = new_client(intents=intents(message_content=False))
    inbox = Inbox(client)
    async with running(client, fake):
        await fake.dispatch("MESSAGE_CREATE", dp.message_create("just chatting"))
        assert (await inbox.next()).content == ""
        await fake.dispatch("MESSAGE_CREATE", dp.message_create("<@1000> help"))
        assert (await inbox.next()).content == "<@1000> help"
        await fake.dispatch("MESSAGE_CREATE", dp.message_create("in a DM", guild_id=None, channel_id=dp.DM_CHANNEL_ID))
        dm = await inbox.next()
        assert dm.content == "in a DM" and isinstance(dm.channel, discord.DMChannel)
        sent = await dm.channel.send("Hello!")  # the fake learnt the DM channel from the dispatch
        assert sent.channel.id == 5000


# ----- reconnecting --------------------------------------------------------------------------------


async def test_dropped_connection_resumes_and_replays_the_missed_event_once(fake: FakeDiscord) -> None:
    client = new_client()
    inbox = Inbox(client)
    resumed: list[None] = []

    @client.event
    async def on_resumed() -> None:
        resumed.append(None)

    async with running(client, fake):
        await fake.drop_connection()
        await fake.dispatch("MESSAGE_CREATE", dp.message_create("sent while you were away"))
        message = await inbox.next()
        assert message.content == "sent while you were away"
        await fake.wait_until(lambda: fake.resumes == 1)
        assert fake.identifies == 1 and fake.replayed == 1
        assert fake.connections[-1]["path"] == "/resume"  # READY's resume_gateway_url
        resume = next(frame for frame in fake.gateway_received if frame["op"] == 6)
        assert resume["d"]["session_id"] == fake.session_id
        await fake.dispatch("MESSAGE_CREATE", dp.message_create("marker"))
        assert (await inbox.next()).content == "marker"
        assert [m.content for m in inbox.seen] == ["sent while you were away", "marker"]
        await asyncio.wait_for(_until(lambda: resumed == [None]), TIMEOUT)


async def test_op7_reconnect_leads_to_resume(fake: FakeDiscord) -> None:
    client = new_client()
    inbox = Inbox(client)
    async with running(client, fake):
        await fake.send_reconnect()
        await fake.wait_until(lambda: fake.resumes == 1)
        assert fake.identifies == 1
        await fake.dispatch("MESSAGE_CREATE", dp.message_create("still here"))
        assert (await inbox.next()).content == "still here"


async def test_op9_resumable_resumes_and_not_resumable_identifies_again(fake: FakeDiscord) -> None:
    client = new_client()
    inbox = Inbox(client)
    readies: list[float] = []

    @client.event
    async def on_ready() -> None:
        readies.append(time.monotonic())

    async with running(client, fake):
        old_session = fake.session_id
        await fake.send_invalid_session(resumable=True)
        await fake.wait_until(lambda: fake.resumes == 1)
        assert fake.identifies == 1 and fake.session_id == old_session

        await fake.send_invalid_session(resumable=False)
        await fake.wait_until(lambda: fake.identifies == 2)
        await fake.wait_ready()
        assert fake.resumes == 1 and fake.session_id != old_session
        await asyncio.wait_for(_until(lambda: len(readies) == 2), TIMEOUT)
        await fake.dispatch("MESSAGE_CREATE", dp.message_create("new session"))
        assert (await inbox.next()).content == "new session"


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


# ----- interactions and commands -------------------------------------------------------------------


def advisor_tree(client: discord.Client, answers: list[str]) -> app_commands.CommandTree[discord.Client]:
    tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)
    advisor = app_commands.Group(name="advisor", description="Ask the advisor")

    @advisor.command(name="ask", description="Ask a question")
    async def ask(interaction: discord.Interaction, question: str) -> None:
        answers.append(question)
        await interaction.response.send_message(f"You asked: {question}", ephemeral=True)
        await interaction.followup.send("Here is more.")
        await interaction.edit_original_response(content="You asked (edited)")

    tree.add_command(advisor)
    return tree


async def test_interaction_create_reaches_the_tree_and_responses_hit_rest(fake: FakeDiscord) -> None:
    client = new_client()
    answers: list[str] = []
    advisor_tree(client, answers)
    seen: list[discord.Interaction] = []

    @client.event
    async def on_interaction(interaction: discord.Interaction) -> None:
        seen.append(interaction)

    async with running(client, fake):
        payload = dp.interaction_create(options={"question": "Should I pay off debt first?"})
        await fake.dispatch("INTERACTION_CREATE", payload)
        await fake.wait_until(
            lambda: bool(fake.calls_to("PATCH", f"/webhooks/1000/{payload['token']}/messages/@original"))
        )
        assert answers == ["Should I pay off debt first?"]
        [interaction] = seen
        assert interaction.user.id == 2000 and interaction.guild_id == 4000 and interaction.command is not None
        [callback] = fake.calls_to("POST", f"/interactions/{payload['id']}/{payload['token']}/callback")
        assert callback["json"]["type"] == 4
        assert callback["json"]["data"]["content"] == "You asked: Should I pay off debt first?"
        assert callback["json"]["data"]["flags"] == 64  # ephemeral
        assert callback["query"].get("with_response") == "1"
        assert "authorization" not in callback["headers"]  # interaction callbacks need no bot token
        [followup] = fake.calls_to("POST", f"/webhooks/1000/{payload['token']}")
        assert followup["json"]["content"] == "Here is more."
        state = fake.interactions[payload["id"]]
        assert state["response_type"] == 4
        original = fake.get_message("3000", state["original_message_id"])
        assert original is not None and original["content"] == "You asked (edited)" and original["flags"] & 64


async def test_deferred_interaction_is_filled_by_the_first_followup_and_cannot_be_acked_twice(
    fake: FakeDiscord,
) -> None:
    client = new_client()

    @client.event
    async def on_interaction(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("Done thinking.")

    async with running(client, fake):
        payload = dp.interaction_create(options={"question": "q"})
        await fake.dispatch("INTERACTION_CREATE", payload)
        await fake.wait_until(lambda: bool(fake.calls_to("POST", f"/webhooks/1000/{payload['token']}")))
        [callback] = fake.calls_to("POST", f"/interactions/{payload['id']}/")
        assert callback["json"] == {"type": 5}
        state = fake.interactions[payload["id"]]
        original = fake.get_message("3000", state["original_message_id"])
        assert original is not None and original["content"] == "Done thinking." and not original["flags"] & 128
        async with aiohttp.ClientSession() as session:
            url = f"{fake.api_base}/interactions/{payload['id']}/{payload['token']}/callback"
            async with session.post(url, json={"type": 4, "data": {"content": "again"}}) as response:
                assert response.status == 400 and (await response.json())["code"] == 40060
            async with session.post(url.replace(payload["token"], "wrong"), json={"type": 4}) as response:
                assert response.status == 404 and (await response.json())["code"] == 10062


async def test_component_interaction_updates_the_message(fake: FakeDiscord) -> None:
    client = new_client()
    clicks: list[str] = []

    class Feedback(discord.ui.View):
        @discord.ui.button(label="Helpful", custom_id="feedback:up")
        async def up(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
            clicks.append(button.custom_id or "")
            await interaction.response.edit_message(content="Thanks for the feedback!", view=None)

    async with running(client, fake):
        channel = client.get_channel(3000)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("Was this helpful?", view=Feedback())
        stored = fake.get_message("3000", str(sent.id))
        assert stored is not None and stored["components"][0]["components"][0]["custom_id"] == "feedback:up"
        await fake.dispatch("INTERACTION_CREATE", dp.component_interaction("feedback:up", stored))
        await fake.wait_until(lambda: fake.get_message("3000", str(sent.id))["content"] == "Thanks for the feedback!")
        assert clicks == ["feedback:up"]
        assert fake.get_message("3000", str(sent.id))["components"] == []


async def test_command_tree_sync_bulk_overwrites_the_commands(fake: FakeDiscord) -> None:
    client = new_client()
    tree = advisor_tree(client, [])
    async with running(client, fake):
        synced = await tree.sync()
        [put] = fake.calls_to("PUT", "/applications/1000/commands")
        [command] = put["json"]
        assert command["name"] == "advisor" and command["options"][0]["name"] == "ask"
        assert command["options"][0]["options"][0] == {
            **command["options"][0]["options"][0],
            "name": "question",
            "type": 3,
        }
        assert [c.name for c in synced] == ["advisor"] and synced[0].id > 0
        fetched = await tree.fetch_commands()
        assert [c.id for c in fetched] == [synced[0].id]
        again = await tree.sync()  # a re-sync keeps the command id
        assert again[0].id == synced[0].id

        guild = discord.Object(4000)
        tree.copy_global_to(guild=guild)
        guild_synced = await tree.sync(guild=guild)
        assert fake.calls_to("PUT", "/applications/1000/guilds/4000/commands")
        assert guild_synced[0].guild_id == 4000
        with pytest.raises(discord.HTTPException) as missing:
            await tree.sync(guild=discord.Object(9999))
        assert missing.value.code == 50001


async def test_invalid_command_name_is_refused(fake: FakeDiscord) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            fake.api_base + "/applications/1000/commands",
            json=[{"name": "Ask Me", "description": "x", "type": 1}],
            headers={"Authorization": f"Bot {dp.BOT_TOKEN}"},
        ) as response,
    ):
        body = await response.json()
    assert response.status == 400 and body["code"] == 50035
    assert body["errors"]["0"]["name"]["_errors"][0]["code"] == "APPLICATION_COMMAND_INVALID_NAME"


# ----- payload builders ----------------------------------------------------------------------------


def test_snowflakes_increase_and_carry_their_time() -> None:
    first, second = dp.snowflake(), dp.snowflake()
    assert int(second) > int(first)
    assert abs(dp.snowflake_time(first) - time.time()) < 5
    assert dp.snowflake_time(dp.snowflake(at=1_700_000_000)) == 1_700_000_000


def test_payload_shapes_follow_discord_docs() -> None:
    reply_to = dp.message_create("original")
    reply = dp.message_create("a reply", referenced_message=reply_to)
    assert reply["type"] == 19 and reply["message_reference"]["message_id"] == reply_to["id"]
    assert "member" not in reply["referenced_message"] and "guild_id" not in reply["referenced_message"]
    dm = dp.message_create("hi", guild_id=None)
    assert "guild_id" not in dm and "member" not in dm
    hook = dp.message_create("from a webhook", webhook_id="7000")
    assert hook["author"]["bot"] and hook["webhook_id"] == "7000" and "member" not in hook
    command = dp.interaction_create(options={"question": "q", "private": True, "amount": 3})
    [sub] = command["data"]["options"]
    assert sub["type"] == 1 and [o["type"] for o in sub["options"]] == [3, 5, 4]
    assert command["member"]["permissions"] and command["version"] == 1 and command["attachment_size_limit"] > 0
    in_dm = dp.interaction_create(guild_id=None)
    assert "user" in in_dm and "member" not in in_dm and in_dm["context"] == 1
    click = dp.component_interaction("x", reply_to)
    assert click["type"] == 3 and click["data"] == {"custom_id": "x", "component_type": 2}
    assert click["guild_id"] == dp.GUILD_ID and "guild_id" not in click["message"]
    assert "user" in dp.component_interaction("x", dm, guild_id=None)
    g = dp.guild()
    assert g["roles"][0]["id"] == g["id"] and all("guild_id" not in c for c in g["channels"] + g["threads"])
    assert g["threads"][0]["type"] == 11 and g["threads"][0]["parent_id"] == dp.CHANNEL_ID
