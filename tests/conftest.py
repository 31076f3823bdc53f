"""Shared fixtures: the real embedder (loaded once), settings on a temporary data directory, the
fake servers (tests/harness) on the test's loop, and the `stack` that builds engines and adapters."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from config.settings import GROUPS, Settings, load_settings
from retrieval.embedders import OnnxMiniLMEmbedder
from retrieval.ingest import Ingestor
from retrieval.retriever import HybridRetriever
from retrieval.sparse import Bm25Encoder
from retrieval.store_edge import EdgeStore
from tests.harness.discord_api import FakeDiscord
from tests.harness.openai_server import FakeOpenAI
from tests.harness.slack_api import FakeSlack
from tests.harness.stack import Stack

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def embedder() -> OnnxMiniLMEmbedder:
    return OnnxMiniLMEmbedder()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's settings; every test gets its own data directory."""
    import os

    for name in list(os.environ):
        if name.startswith("ADVISOR_") or any(
            name in cls.env_names(field) for cls in GROUPS.values() for field in cls.model_fields
        ):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ADVISOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def settings() -> Settings:
    return load_settings(None)


@pytest.fixture
def setenv(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set environment variables for this test: `setenv(NAME="value", ...)`."""

    def apply(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return apply


GUIDES = {
    "fund.md": "# Emergency fund\n\nAn emergency fund should cover three to six months of essential expenses. "
    "Keep it in an easy-access savings account.\n",
    "debt.md": "# Paying off debt\n\nThe avalanche method pays the debt with the highest interest rate first; "
    "it saves the most money.\n",
    "score.md": "# Credit scores\n\nPaying every bill on time is the biggest factor in a credit score.\n",
}


@pytest.fixture
def kb_dir(tmp_path: Path) -> Path:
    """A small knowledge base of three guides."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, text in GUIDES.items():
        (kb / name).write_text(text)
    return kb


@pytest.fixture
async def retriever(tmp_path: Path, kb_dir: Path, embedder: Any) -> AsyncIterator[HybridRetriever]:
    """The guides indexed in embedded Qdrant, behind the hybrid retriever."""
    kb = kb_dir
    store = EdgeStore.open(tmp_path / "index", "kb", embedder.dim)
    await Ingestor(store, embedder, Bm25Encoder()).run([kb])
    yield HybridRetriever(store, embedder, Bm25Encoder(), load_settings(None).retrieval)
    await store.close()


@pytest.fixture
async def stack(tmp_path: Path, retriever: HybridRetriever) -> AsyncIterator[Stack]:
    """Engines, chat models and adapters for this test (tests/harness/stack.py), all closed afterwards."""
    built = Stack(tmp_path, retriever)
    yield built
    await built.aclose()


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


@pytest.fixture
async def discord_fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    """The fake Discord, with discord.py pointed at it for this test."""
    async with FakeDiscord() as server:
        server.patch(monkeypatch)
        yield server


@contextmanager
def serving_in_thread(server: Any) -> Iterator[Any]:
    """Run an async-context-manager fake on its own loop in a thread, so a command under test
    can call asyncio.run() in the test's thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: list[asyncio.Event] = []

    async def serve() -> None:
        stop.append(asyncio.Event())
        async with server:
            ready.set()
            await stop[0].wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the fake server did not start"
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(10)


@pytest.fixture
def openai_in_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The fake OpenAI server in a thread, with the settings pointing at it, for commands under test."""
    with serving_in_thread(FakeOpenAI()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
        yield server


def minimal_pdf(pages: list[str]) -> bytes:
    """A small valid PDF with one line of Helvetica text per page (no PDF library needed)."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        content_id = len(objects) + 2
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
        page_id = len(objects) + 1
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id - 1} 0 R "
            f"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>".encode()
        )
        kids.append(f"{page_id} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>".encode()
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
