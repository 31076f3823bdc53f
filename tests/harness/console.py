"""The advice console served the way `advisor run web` serves it (adapters/serve.py `run_web`), on
the conftest retriever, a real engine and Admin: for tests/test_console.py and test_console_browser.py."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import aiohttp

from adapters.serve import run_web
from bot.ops.admin import Admin
from retrieval.ingest import Ingestor
from tests.harness.loopback import free_port

TOKEN = "console-token-5b1f0e7d"
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


class GatedEmbedder:
    """The real embedder, except that document embedding waits while `gate` is clear: a reindex
    then stays running until the test lets it go."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.gate.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def embed_documents(self, texts: Sequence[str]) -> Any:
        await self.gate.wait()
        return await self.inner.embed_documents(texts)


class ConsoleServer:
    """run_web in a task on a free port; `stop()` ends it as SIGTERM would."""

    def __init__(self, settings: Any, engine: Any, admin: Any, retriever: Any) -> None:
        self.admin = admin
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop_event = asyncio.Event()
        services = SimpleNamespace(
            engine=engine, admin=admin, stack=SimpleNamespace(store=retriever.store, retriever=retriever), redis=None
        )
        self.task = asyncio.create_task(run_web(settings, services, self.port, stop=self.stop_event))

    @classmethod
    async def serving(cls, settings: Any, engine: Any, retriever: Any, embedder: Any = None) -> ConsoleServer:
        """The console over `engine`, with an Admin that reindexes into `retriever`'s store (through
        `embedder`, the retriever's own by default) within the configured knowledge paths; started."""
        ingestor = Ingestor(retriever.store, embedder or retriever.embedder, retriever.sparse)
        admin = Admin(engine, ingestor, retriever.store, settings.core.knowledge_paths)
        return await cls(settings, engine, admin, retriever).started()

    async def started(self) -> ConsoleServer:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                if self.task.done():
                    self.task.result()
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + "/healthz") as response:
                        if response.status == 200:
                            return self
                await asyncio.sleep(0.05)
        raise TimeoutError("the web process did not start")

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 30)


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, page[:500]
    return found.group(1)


def client() -> aiohttp.ClientSession:
    """A browser-like client: keeps cookies (for 127.0.0.1 too), does not follow redirects by itself."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(http: aiohttp.ClientSession, url: str, token: str = TOKEN) -> aiohttp.ClientResponse:
    async with http.get(url + "/admin/login") as page:
        form = {"csrf_token": csrf_of(await page.text()), "token": token}
    async with http.post(url + "/admin/login", data=form, allow_redirects=False) as response:
        await response.read()
        return response
