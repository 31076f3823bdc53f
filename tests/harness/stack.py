"""What the adapter tests run on, built one way: engines on the real retriever and SQLite memory,
chat models on the fake OpenAI server, the Slack adapter served on loopback against the fake
Slack, the Discord gateway adapter (the real discord.py client) against the fake Discord.

`Stack` (the `stack` fixture in tests/conftest.py) builds them and closes everything it built
when the test ends, newest first: servers stop before the memories under them close.

    engine = stack.engine(settings, stack.chat_model(openai_fake))
    door = await stack.slack_door(engine, settings, slack, SECRET)
    adapter = await stack.discord_gateway(engine, settings, discord_fake)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import discord
import openai

from adapters.discord.gateway import DiscordAdapter, intents
from adapters.slack.app import SlackAdapter, build_client
from bot.engine.pipeline import Engine
from bot.llm.openai_model import OpenAIChatModel
from bot.ops.admin import Admin
from bot.state.memory_sqlite import SqliteMemory
from config.settings import Settings
from retrieval.ingest import Ingestor
from tests.harness import discord_payloads as dp
from tests.harness import slack_payloads as sp
from tests.harness.discord_api import FakeDiscord
from tests.harness.loopback import serve
from tests.harness.openai_server import FakeOpenAI
from tests.harness.slack_api import FakeSlack

TIMEOUT = 10.0


async def until(check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Poll `check` until it returns something truthy (returned); a generous ceiling, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def openai_client(fake: FakeOpenAI) -> openai.AsyncOpenAI:
    """The real openai client against the fake server, without retries of its own."""
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0)


class SlackDoor:
    """One SlackAdapter served on its own port, the fake Slack it calls, and a way to post (signed) bodies to it."""

    def __init__(self, adapter: SlackAdapter, url: str, slack: FakeSlack, secret: str) -> None:
        self.adapter, self.url, self.slack, self.secret = adapter, url, slack, secret

    async def post(
        self,
        body: dict[str, Any] | bytes,
        headers: dict[str, str] | None = None,
        *,
        content_type: str | None = None,
        sign: bool = True,
        session: aiohttp.ClientSession | None = None,
    ) -> tuple[int, str]:
        """(status, body text); a dict goes as JSON, bytes as a form unless `content_type` says otherwise."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        content_type = content_type or ("application/json" if isinstance(body, dict) else sp.FORM_CONTENT_TYPE)
        all_headers = {"Content-Type": content_type, **(sp.sign(raw, self.secret) if sign else {}), **(headers or {})}
        async with contextlib.AsyncExitStack() as stack:
            if session is None:
                session = await stack.enter_async_context(aiohttp.ClientSession())
            async with session.post(self.url, data=raw, headers=all_headers) as response:
                return response.status, await response.text()

    def posts(self, method: str = "chat.postMessage") -> list[dict[str, Any]]:
        return [call["args"] for call in self.slack.calls_to(method)]

    def finals(self) -> list[dict[str, Any]]:
        """Final answers as posted: updates and posts carrying blocks."""
        return [a for a in self.posts("chat.update") + self.posts("chat.postMessage") if a.get("blocks")]


class Stack:
    def __init__(self, tmp_path: Path, retriever: Any) -> None:
        self.tmp_path = tmp_path
        self.retriever = retriever
        self._closers: list[Callable[[], Awaitable[Any]]] = []
        self._memories = 0

    def later(self, close: Callable[[], Awaitable[Any]]) -> None:
        """Run `close` when the test ends (the last registered runs first)."""
        self._closers.append(close)

    async def aclose(self) -> None:
        while self._closers:
            await self._closers.pop()()

    # -- the engine -------------------------------------------------------------------------------

    def chat_model(self, fake: FakeOpenAI, *, timeout: float = 5.0, **options: Any) -> OpenAIChatModel:
        """OpenAIChatModel (gpt-4o-mini) on the fake server; its client is closed at the end."""
        client = openai_client(fake)
        self.later(client.close)
        return OpenAIChatModel(client, "gpt-4o-mini", timeout=timeout, **options)

    def memory(self, name: str | None = None) -> SqliteMemory:
        """SQLite memory in the test's directory: a new file each call unless `name` names one."""
        if name is None:
            name = f"memory{self._memories}.sqlite3"
            self._memories += 1
        memory = SqliteMemory(self.tmp_path / name)
        self.later(memory.close)
        return memory

    def engine(
        self, settings: Settings, model: Any = None, *, retriever: Any = None, memory: Any = None, **kwargs: Any
    ) -> Engine:
        """The real engine on the conftest retriever (or `retriever`) and new SQLite memory (or `memory`)."""
        memory = memory if memory is not None else self.memory()
        return Engine(settings, retriever or self.retriever, memory, model, **kwargs)

    def admin(self, engine: Engine, settings: Settings) -> Admin:
        """Admin commands over the engine, reindexing the retriever's store from the knowledge paths."""
        store = self.retriever.store
        indexer = Ingestor(store, self.retriever.embedder, self.retriever.sparse)
        return Admin(engine, indexer, store, settings.core.knowledge_paths)

    # -- the doors ----------------------------------------------------------------------------------

    async def serve(self, app: Any, **runner_options: Any) -> str:
        """An aiohttp app on a free loopback port, stopped at the end: its base URL."""
        runner, port = await serve(app, **runner_options)
        self.later(runner.cleanup)
        return f"http://127.0.0.1:{port}"

    async def slack_door(
        self, engine: Engine, settings: Settings, slack: FakeSlack, secret: str, **adapter_kwargs: Any
    ) -> SlackDoor:
        """A SlackAdapter over `engine` (bot token xoxb-test) calling the fake Slack, served over HTTP."""
        admin = self.admin(engine, settings)
        adapter = SlackAdapter(engine, admin, settings, client=build_client("xoxb-test", slack.base_url), **adapter_kwargs)
        base = await self.serve(adapter.web_app())
        return SlackDoor(adapter, f"{base}/slack/events", slack, secret)

    def discord_adapter(
        self, engine: Engine, settings: Settings, admin: Admin | None = None, **adapter_kwargs: Any
    ) -> DiscordAdapter:
        """A DiscordAdapter over `engine` with a new discord.py client (not started)."""
        client = discord.Client(intents=intents(), guild_ready_timeout=0.05)
        return DiscordAdapter(engine, admin or self.admin(engine, settings), settings, client=client, **adapter_kwargs)

    async def discord_gateway(
        self, engine: Engine, settings: Settings, fake: FakeDiscord, timeout: float = TIMEOUT, **adapter_kwargs: Any
    ) -> DiscordAdapter:
        """`discord_adapter(...)` logged in to the fake Discord: ready, its commands registered; closed at the end."""
        adapter = self.discord_adapter(engine, settings, **adapter_kwargs)
        task = asyncio.create_task(adapter.client.start(dp.BOT_TOKEN))

        async def close() -> None:
            await adapter.client.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout)

        self.later(close)
        await asyncio.wait_for(adapter.client.wait_until_ready(), timeout)
        await until(lambda: fake.calls_to("PUT", f"/applications/{dp.APPLICATION_ID}/commands"), timeout)
        return adapter
