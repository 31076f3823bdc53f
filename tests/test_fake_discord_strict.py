"""The strict fake Discord's rules (tests/harness/discord_api.py), each from Discord's docs, against the real
discord.py client: rate-limit buckets and headers, the global limit, the interaction deadlines, a zombied
gateway connection, zlib-stream payloads split across frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from tests.harness import discord_payloads as dp
from tests.harness.discord_api import FakeDiscord

TIMEOUT = 10
AUTH = {"Authorization": f"Bot {dp.BOT_TOKEN}", "Content-Type": "application/json"}


def new_client(**kw: Any) -> discord.Client:
    intents = discord.Intents.default()
    intents.message_content = True
    return discord.Client(intents=intents, guild_ready_timeout=0.05, **kw)


@contextlib.asynccontextmanager
async def running(client: discord.Client, fake: FakeDiscord) -> AsyncIterator[discord.Client]:
    task = asyncio.create_task(client.start(dp.BOT_TOKEN))
    try:
        await asyncio.wait_for(client.wait_until_ready(), TIMEOUT)
        yield client
    finally:
        await client.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, TIMEOUT)


@contextlib.asynccontextmanager
async def strict(monkeypatch: pytest.MonkeyPatch, **options: Any) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(**options) as fake:
        fake.patch(monkeypatch)
        yield fake


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any], method: str = "POST") -> tuple[int, Any, Any]:
    async with http.request(method, url, json=body, headers=AUTH) as response:
        return response.status, response.headers, await response.json()


# ----- per-route buckets -----------------------------------------------------------------------


async def test_a_bucket_counts_down_and_a_spent_one_answers_429_with_discords_body(discord_fake: FakeDiscord) -> None:
    url = f"{discord_fake.api_base}/channels/{dp.CHANNEL_ID}/messages"
    async with aiohttp.ClientSession() as http:
        answers = [await post(http, url, {"content": f"hi {n}"}) for n in range(6)]
        other = await post(http, f"{discord_fake.api_base}/channels/{dp.THREAD_ID}/messages", {"content": "elsewhere"})
    assert [status for status, _, _ in answers] == [200] * 5 + [429]
    assert [h["X-RateLimit-Remaining"] for _, h, _ in answers[:5]] == ["4", "3", "2", "1", "0"]
    assert {h["X-RateLimit-Limit"] for _, h, _ in answers} == {"5"}
    assert len({h["X-RateLimit-Bucket"] for _, h, _ in answers}) == 1
    _, headers, body = answers[5]
    assert body["message"] == "You are being rate limited." and body["global"] is False
    assert 0 < body["retry_after"] <= 5 and float(headers["X-RateLimit-Reset-After"]) == pytest.approx(body["retry_after"], abs=0.01)
    assert headers["X-RateLimit-Scope"] == "user" and headers["Via"] and int(headers["Retry-After"]) >= 1
    assert other[0] == 200  # another channel is another bucket
    assert [r["scope"] for r in discord_fake.rate_limited] == ["user"]


async def test_message_edits_are_5_per_5_seconds_per_channel(discord_fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as http:
        base = f"{discord_fake.api_base}/channels/{dp.CHANNEL_ID}/messages"
        _, _, message = await post(http, base, {"content": "draft"})
        edits = [await post(http, f"{base}/{message['id']}", {"content": f"draft {n}"}, "PATCH") for n in range(6)]
        discord_fake.clock.advance(5)
        later = await post(http, f"{base}/{message['id']}", {"content": "final"}, "PATCH")
    assert [status for status, _, _ in edits] == [200] * 5 + [429]
    assert later[0] == 200 and later[1]["X-RateLimit-Remaining"] == "4"  # a new window


async def test_discord_py_waits_out_a_spent_bucket_instead_of_taking_429s(discord_fake: FakeDiscord) -> None:
    async with running(new_client(), discord_fake) as client:
        channel = client.get_channel(int(dp.CHANNEL_ID))
        assert isinstance(channel, discord.TextChannel)
        for n in range(7):
            await channel.send(f"message {n}")
    sends = discord_fake.calls_to("POST", f"/channels/{dp.CHANNEL_ID}/messages")
    assert len(sends) == 7 and all(c["status"] == 200 for c in sends)
    assert discord_fake.rate_limited == []
    assert sends[5]["response_headers"]["X-RateLimit-Remaining"] == "4"  # the sixth came after the reset


async def test_two_clients_sharing_a_bucket_get_429s_and_discord_py_retries_them(discord_fake: FakeDiscord) -> None:
    async with running(new_client(), discord_fake) as first, running(new_client(), discord_fake) as second:
        channels = [c.get_channel(int(dp.CHANNEL_ID)) for c in (first, second)]
        await asyncio.gather(*(ch.send(f"{i}-{n}") for i, ch in enumerate(channels) for n in range(4)))  # type: ignore[union-attr]
    sends = discord_fake.calls_to("POST", f"/channels/{dp.CHANNEL_ID}/messages")
    assert discord_fake.rate_limited  # neither client knew what the other spent
    assert sum(1 for c in sends if c["status"] == 200) == 8  # every message got through on a retry


# ----- the global limit ------------------------------------------------------------------------


async def test_more_than_50_requests_a_second_hit_the_global_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    channels = [dp.text_channel(str(7000 + n), f"room-{n}") for n in range(20)]
    async with strict(monkeypatch, guilds=[dp.guild(channels=channels)]) as fake:
        async with aiohttp.ClientSession() as http:
            gets = [http.get(f"{fake.api_base}/channels/{7000 + n % 20}", headers=AUTH) for n in range(60)]
            responses = await asyncio.gather(*gets)
            refused = [r for r in responses if r.status == 429]
            body = await refused[0].json()
            for r in responses:
                r.release()
    assert 60 - len(refused) == 50  # three per channel: no route bucket is spent, the bot's 50/s is
    assert refused[0].headers["X-RateLimit-Global"] == "true" and refused[0].headers["X-RateLimit-Scope"] == "global"
    assert body["global"] is True and body["message"] == "You are being rate limited."
    assert "X-RateLimit-Bucket" not in refused[0].headers
    assert {r["scope"] for r in fake.rate_limited} == {"global"}


async def test_discord_py_waits_for_the_global_limit_and_every_call_lands(monkeypatch: pytest.MonkeyPatch) -> None:
    channels = [dp.text_channel(str(7000 + n), f"room-{n}") for n in range(30)]
    async with strict(monkeypatch, guilds=[dp.guild(channels=channels)]) as fake:
        async with running(new_client(), fake) as client:
            fetched = await asyncio.gather(*(client.fetch_channel(7000 + n % 30) for n in range(90)))
        assert len(fetched) == 90 and any(r["scope"] == "global" for r in fake.rate_limited)


async def test_interaction_callbacks_are_not_bound_to_the_global_limit(discord_fake: FakeDiscord) -> None:
    async with running(new_client(), discord_fake):
        payloads = [dp.interaction_create(subcommand="status") for _ in range(60)]
        for payload in payloads:
            await discord_fake.dispatch("INTERACTION_CREATE", payload)
        async with aiohttp.ClientSession() as http:
            urls = [f"{discord_fake.api_base}/interactions/{p['id']}/{p['token']}/callback" for p in payloads]
            statuses = await asyncio.gather(*(_status(http, url, {"type": 5}) for url in urls))
    assert statuses == [204] * 60 and discord_fake.rate_limited == []


async def _status(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> int:
    async with http.post(url, json=body) as response:
        return response.status


# ----- interaction deadlines -------------------------------------------------------------------


def _tree(client: discord.Client, handler: Any) -> app_commands.CommandTree:
    tree = app_commands.CommandTree(client)
    group = app_commands.Group(name="advisor", description="Ask the advisor")
    group.command(name="status", description="Status")(handler)
    tree.add_command(group)
    return tree


async def test_a_first_response_after_3_seconds_is_unknown_interaction(discord_fake: FakeDiscord) -> None:
    client = new_client()
    errors: list[discord.HTTPException] = []

    async def status(interaction: discord.Interaction) -> None:
        discord_fake.clock.advance(3.5)  # slow work before the ack
        try:
            await interaction.response.defer(ephemeral=True)
        except discord.HTTPException as exc:
            errors.append(exc)

    _tree(client, status)
    async with running(client, discord_fake):
        await discord_fake.dispatch("INTERACTION_CREATE", dp.interaction_create(subcommand="status"))
        await discord_fake.wait_until(lambda: bool(errors), TIMEOUT)
    (error,) = errors
    assert isinstance(error, discord.NotFound) and error.code == 10062 and error.text == "Unknown interaction"


async def test_the_token_expires_after_15_minutes(discord_fake: FakeDiscord) -> None:
    client = new_client()
    outcomes: list[Any] = []

    async def status(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)  # in time
        await interaction.edit_original_response(content="fine at first")
        discord_fake.clock.advance(15 * 60 + 1)
        for attempt in (interaction.edit_original_response(content="late"), interaction.followup.send("late too")):
            try:
                await attempt
            except discord.HTTPException as exc:
                outcomes.append((exc.status, exc.code))

    _tree(client, status)
    async with running(client, discord_fake):
        await discord_fake.dispatch("INTERACTION_CREATE", dp.interaction_create(subcommand="status"))
        await discord_fake.wait_until(lambda: len(outcomes) == 2, TIMEOUT)
    assert outcomes == [(401, 50027), (401, 50027)]
    edits = discord_fake.calls_to("PATCH", f"/webhooks/{dp.APPLICATION_ID}/")
    assert [c["status"] for c in edits] == [200, 401]


async def test_polite_mode_keeps_no_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    async with strict(monkeypatch, interaction_deadlines=False, rate_limits=False) as fake:
        client = new_client()
        acked: list[bool] = []

        async def status(interaction: discord.Interaction) -> None:
            fake.clock.advance(3600)
            await interaction.response.defer(ephemeral=True)
            await interaction.edit_original_response(content="an hour later")
            acked.append(True)

        _tree(client, status)
        async with running(client, fake):
            await fake.dispatch("INTERACTION_CREATE", dp.interaction_create(subcommand="status"))
            await fake.wait_until(lambda: bool(acked), TIMEOUT)


# ----- the gateway -----------------------------------------------------------------------------


async def test_a_zombied_connection_is_closed_resumed_and_nothing_is_lost_or_doubled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with strict(monkeypatch, heartbeat_interval_ms=200) as fake:
        client = new_client(heartbeat_timeout=1.0)
        seen: list[str] = []

        @client.event
        async def on_message(message: discord.Message) -> None:
            if message.author != client.user:
                seen.append(message.content)

        async with running(client, fake):
            await fake.dispatch("MESSAGE_CREATE", dp.message_create("before"))
            await fake.wait_until(lambda: seen == ["before"], TIMEOUT)
            fake.zombie()
            await fake.dispatch("MESSAGE_CREATE", dp.message_create("while the line was dead"))
            await fake.wait_until(lambda: fake.resumes == 1, TIMEOUT)
            await fake.dispatch("MESSAGE_CREATE", dp.message_create("after"))
            await fake.wait_until(lambda: len(seen) == 3, TIMEOUT)
            assert fake.acks_withheld >= 1 and fake.identifies == 1 and fake.replayed == 1
            zombie = fake.connections[0]
            assert zombie["closed_by"] == "client" and zombie["close_code"] not in (1000, 1001)
            assert fake.connections[1]["path"] == "/resume"
        assert seen == ["before", "while the line was dead", "after"]


@pytest.mark.parametrize("chunk", [5, 64])
async def test_zlib_stream_payloads_split_across_frames_reach_discord_py(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    async with strict(monkeypatch, zlib_chunk_size=chunk) as fake:
        client = new_client()
        seen: list[str] = []

        @client.event
        async def on_message(message: discord.Message) -> None:
            seen.append(message.content)

        async with running(client, fake):
            await fake.dispatch("MESSAGE_CREATE", dp.message_create("through many frames " * 20))
            await fake.wait_until(lambda: bool(seen), TIMEOUT)
        assert seen == ["through many frames " * 20]
        assert fake.frames_sent > 2 * len(fake.gateway_sent)  # most payloads took several frames


async def test_only_the_last_frame_of_a_split_payload_ends_with_the_sync_flush_suffix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with strict(monkeypatch, zlib_chunk_size=8) as fake:
        url = fake.gateway_url + "?v=10&encoding=json&compress=zlib-stream"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            frames: list[bytes] = []
            while not frames or not frames[-1].endswith(b"\x00\x00\xff\xff"):
                frames.append((await ws.receive(timeout=TIMEOUT)).data)
    assert len(frames) > 2 and all(len(f) <= 8 for f in frames)
    assert not any(f.endswith(b"\x00\x00\xff\xff") for f in frames[:-1])
    hello = json.loads(zlib.decompressobj().decompress(b"".join(frames)))
    assert hello["op"] == 10


async def test_zlib_chunk_size_none_sends_one_frame_per_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    async with strict(monkeypatch, zlib_chunk_size=None) as fake:
        async with running(new_client(), fake):
            await fake.wait_until(lambda: fake.heartbeats >= 1, TIMEOUT)
        assert fake.frames_sent == len(fake.gateway_sent)
