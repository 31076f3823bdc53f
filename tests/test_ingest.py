"""Ingestion through the public `Ingestor` on the real embedded engine and embedder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import minimal_pdf

from config.settings import load_settings
from retrieval.ingest import Ingestor
from retrieval.retriever import HybridRetriever
from retrieval.sparse import Bm25Encoder
from retrieval.store_edge import EdgeStore


class CountingEmbedder:
    """The real embedder, with a count of the texts it was asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim, self.embedded = inner, inner.name, inner.dim, 0

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.embedded += len(texts)
        return await self.inner.embed_documents(texts)

    async def embed_query(self, text: str) -> list[float]:
        return await self.inner.embed_query(text)


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    (root / "guides").mkdir(parents=True)
    (root / "guides" / "fund.md").write_text(
        "# Emergency fund\n\nSave three to six months of expenses.\n\n## Where\n\nA high-yield savings account.\n"
    )
    (root / "guides" / "debt.md").write_text("# Debt\n\nThe avalanche method pays the highest interest first.\n")
    (root / "faq.csv").write_text('question,answer\n"What is APR?","The yearly cost of borrowing."\n')
    (root / "taxes.html").write_text("<h1>Taxes</h1><p>Keep receipts for deductions.</p>")
    (root / "report.pdf").write_bytes(minimal_pdf(["Net worth is assets minus debts."]))
    (root / "notes.txt").write_text("Automate transfers on payday.")
    (root / ".hidden.md").write_text("# Secret\n\nnot indexed")
    (root / "slides.pptx").write_bytes(b"PK\x03\x04")
    return root


@pytest.fixture
async def ingestor(tmp_path: Path, embedder: Any) -> AsyncIterator[Ingestor]:
    store = EdgeStore.open(tmp_path / "index", "kb", embedder.dim)
    yield Ingestor(store, CountingEmbedder(embedder), Bm25Encoder(), max_tokens=50, overlap=10)
    await store.close()


async def sources(ingestor: Ingestor) -> dict[str, int]:
    return {Path(s).name: len(ids) for s, ids in (await ingestor.store.ids_by_source()).items()}


async def test_first_run_indexes_every_format_and_reports_the_rest(ingestor: Ingestor, kb: Path) -> None:
    done: list[tuple[str, int]] = []
    report = await ingestor.run([kb], progress=lambda kind, n: done.append((kind, n)))
    assert report.files_seen == 7 and report.files_indexed == 6
    assert [(Path(p).name, r.split(" (")[0]) for p, r in report.skipped] == [("slides.pptx", "unsupported file type '.pptx'")]
    assert set(await sources(ingestor)) == {"fund.md", "debt.md", "faq.csv", "taxes.html", "report.pdf", "notes.txt"}
    assert sum(n for kind, n in done if kind == "file") == 7
    assert sum(n for kind, n in done if kind == "chunks") == report.chunks_embedded == await ingestor.store.count()
    assert "skipped" in report.summary() and "slides.pptx" in report.summary()


async def test_reingest_embeds_only_what_changed(ingestor: Ingestor, kb: Path) -> None:
    first = await ingestor.run([kb])
    embedder = ingestor.embedder
    before = embedder.embedded
    again = await ingestor.run([kb])
    assert (again.files_unchanged, again.chunks_embedded, embedder.embedded - before) == (6, 0, 0)

    fund = kb / "guides" / "fund.md"
    fund.write_text(fund.read_text() + "\n## Topping up\n\nRefill it after you use it.\n")
    third = await ingestor.run([kb])
    assert third.files_indexed == 1 and third.files_unchanged == 5
    assert third.chunks_embedded == 1 and embedder.embedded - before == 1
    assert third.chunks_kept == 2 and third.chunks_removed == 0
    assert await ingestor.store.count() == first.chunks_embedded + 1


async def test_edited_passage_replaces_the_old_one(ingestor: Ingestor, kb: Path) -> None:
    await ingestor.run([kb])
    (kb / "notes.txt").write_text("Automate transfers on the first of the month.")
    report = await ingestor.run([kb])
    assert (report.chunks_embedded, report.chunks_removed) == (1, 1)
    hits = await ingestor.store.search(None, Bm25Encoder().encode_query("payday"), "sparse", 5, 10)
    assert hits == []


async def test_deleted_files_lose_their_chunks(ingestor: Ingestor, kb: Path) -> None:
    await ingestor.run([kb])
    (kb / "guides" / "debt.md").unlink()
    (kb / "taxes.html").unlink()
    report = await ingestor.run([kb])
    assert sorted(Path(s).name for s in report.sources_removed) == ["debt.md", "taxes.html"]
    assert "debt.md" not in await sources(ingestor)


async def test_unreadable_file_keeps_what_was_indexed(ingestor: Ingestor, kb: Path) -> None:
    await ingestor.run([kb])
    count = await ingestor.store.count()
    (kb / "notes.txt").write_bytes(b"\xff\xfe broken \x00 bytes")
    report = await ingestor.run([kb])
    assert [(Path(p).name, r) for p, r in report.skipped if p.endswith("notes.txt")] == [
        ("notes.txt", "looks like a binary file, not text")
    ]
    assert await ingestor.store.count() == count
    assert (await sources(ingestor))["notes.txt"] == 1


async def test_missing_path_is_reported(ingestor: Ingestor, tmp_path: Path) -> None:
    report = await ingestor.run([tmp_path / "nowhere"])
    assert report.skipped == [(str(tmp_path / "nowhere"), "no such file or directory")]


async def test_full_rebuild_replaces_the_index(ingestor: Ingestor, kb: Path, tmp_path: Path) -> None:
    await ingestor.run([kb])
    other = tmp_path / "other"
    other.mkdir()
    (other / "only.md").write_text("# Only\n\nThe one remaining guide about pensions.\n")
    report = await ingestor.run([other], full=True)
    assert report.chunks_embedded == 1
    assert set(await sources(ingestor)) == {"only.md"}
    retriever = HybridRetriever(ingestor.store, ingestor.embedder, Bm25Encoder(), load_settings(None).retrieval)
    (hit,) = await retriever.search("pensions", limit=3)
    assert hit.chunk.title == "Only"


async def test_interrupted_file_is_redone(ingestor: Ingestor, kb: Path) -> None:
    """A file whose chunks are only partly stored (a crash mid-run) is not taken as unchanged."""
    await ingestor.run([kb])
    ids = (await ingestor.store.ids_by_source())[str(kb / "guides" / "fund.md")]
    await ingestor.store.delete([sorted(ids)[0]])
    report = await ingestor.run([kb])
    assert report.files_indexed == 1 and report.chunks_embedded == 1


async def test_a_link_that_leaves_the_folder_is_not_followed(tmp_path: Path, embedder: Any) -> None:
    """A symlink to an env file once put SLACK_BOT_TOKEN=... into an answer."""
    from retrieval.ingest import LINK_LEAVES, Ingestor
    from retrieval.sparse import Bm25Encoder
    from retrieval.store_edge import EdgeStore

    secrets = tmp_path / "secrets.env"
    secrets.write_text("SLACK_BOT_TOKEN=xoxb-not-for-answers\n")
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "guide.md").write_text("# Budget\n\nWrite every expense down for a month.\n")
    (kb / "notes.txt").symlink_to(secrets)
    (kb / "inside.md").symlink_to(kb / "guide.md")  # a link that stays inside is fine
    store = EdgeStore.open(tmp_path / "index", "kb", embedder.dim)
    report = await Ingestor(store, embedder, Bm25Encoder()).run([kb])
    assert (str(kb / "notes.txt"), LINK_LEAVES) in report.skipped
    sources = await store.ids_by_source()
    assert str(kb / "notes.txt") not in sources and str(kb / "inside.md") in sources
    followed = await Ingestor(store, embedder, Bm25Encoder(), follow_links=True).run([kb])
    assert not [s for s in followed.skipped if s[1] == LINK_LEAVES]
    assert str(kb / "notes.txt") in await store.ids_by_source()
    await store.close()


@pytest.mark.parametrize("path", ["guides\x00/../../etc", "a" * 6000, "x/" * 300 + ("y" * 300)])
def test_reindex_refuses_unusable_paths_clearly(tmp_path: Path, path: str) -> None:
    from bot.ops.admin import Admin, AdminError

    admin = Admin(None, None, None, [str(tmp_path)])
    with pytest.raises(AdminError, match="usable path|can't be read here|not inside the configured"):
        admin.resolve(path)
