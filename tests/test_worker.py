"""The Discord worker process as `advisor run discord` runs it: a sharded gateway client, ops
endpoints on ADVISOR_METRICS_PORT, and a graceful stop that lets an answer in flight finish.
The Socket Mode worker stops the same way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from adapters.serve import run_discord_gateway, run_socket_mode
from bot.wiring import build_services
from config.settings import load_settings
from tests.harness import discord_payloads as dp
from tests.harness import slack_payloads as sp
from tests.harness.discord_api import FakeDiscord
from tests.harness.loopback import free_port
from tests.harness.openai_server import FakeOpenAI
from tests.harness.slack_api import FakeSlack
from tests.harness.stack import until


@contextlib.asynccontextmanager
async def running(
    run: Callable[..., Any], setenv: Callable[..., None], model: FakeOpenAI, **env: str
) -> AsyncIterator[tuple[asyncio.Event, asyncio.Task[None]]]:
    """`run` (a worker's main loop) on the services `env` configures, the fake model answering slowly:
    (the stop event the SIGTERM handler sets, the worker's task). The services close afterwards."""
    model.chunk_delay = 0.05  # an answer takes a while: it is in flight when the stop comes
    model.script_chat("Keep three to six months of expenses in an easy-access account [1]. " * 3)
    setenv(OPENAI_BASE_URL=model.base_url, OPENAI_API_KEY="sk-test", ADVISOR_SAFETY_MODERATION="false", **env)
    settings = load_settings(None)
    services = await build_services(settings)
    stop = asyncio.Event()
    worker = asyncio.create_task(run(settings, services, stop=stop))
    try:
        yield stop, worker
    finally:
        stop.set()
        await services.close()


async def test_sharded_gateway_ops_endpoints_and_a_graceful_stop(
    discord_fake: FakeDiscord, setenv: Callable[..., None], kb_dir: Any
) -> None:
    port = free_port()
    async with FakeOpenAI() as model:
        env = {"DISCORD_TOKEN": dp.BOT_TOKEN, "ADVISOR_METRICS_PORT": str(port)}
        async with running(run_discord_gateway, setenv, model, **env) as (stop, worker):
            await discord_fake.wait_ready(10)
            assert discord_fake.calls_to("GET", "/gateway/bot")  # AutoShardedClient asked how many shards
            assert discord_fake._session is not None and discord_fake._session.shard == [0, 1]
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    assert response.status == 200
                await discord_fake.dispatch(
                    "MESSAGE_CREATE", dp.message_create("How big should my emergency fund be?", channel_id=dp.DM_CHANNEL_ID, guild_id=None)
                )
                await until(lambda: discord_fake.calls_to("POST", f"/channels/{dp.DM_CHANNEL_ID}/messages"))
                stop.set()  # SIGTERM while the answer streams
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    assert response.status == 503 and (await response.json())["draining"] is True
            await asyncio.wait_for(worker, 20)
        finished = [
            call
            for call in discord_fake.calls
            if call["path"].startswith(f"/channels/{dp.DM_CHANNEL_ID}/messages") and (call.get("json") or {}).get("components")
        ]
        assert finished, "the answer in flight was not finished before the worker stopped"
        assert "three to six months" in finished[-1]["json"]["content"]


async def test_socket_mode_stops_taking_events_and_finishes_the_answer_in_flight(
    setenv: Callable[..., None], kb_dir: Any
) -> None:
    async with FakeSlack() as slack, FakeOpenAI() as model:
        env = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_APP_TOKEN": "xapp-1-test", "ADVISOR_SLACK_API_URL": slack.base_url}
        async with running(run_socket_mode, setenv, model, **env) as (stop, worker):
            await slack.wait_for_socket()
            mention = sp.app_mention("How big should my emergency fund be?")
            assert await slack.send_socket_envelope(sp.socket_envelope(mention)) is not None
            await until(lambda: slack.calls_to("chat.postMessage"))  # the placeholder: the answer is under way
            stop.set()  # SIGTERM
            await asyncio.wait_for(worker, 20)
        finals = [c["args"] for c in slack.calls_to("chat.update") if c["args"].get("blocks")]
        assert len(finals) == 1 and "three to six months" in finals[0]["text"]
