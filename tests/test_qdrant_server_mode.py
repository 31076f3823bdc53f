"""Server mode (`QDRANT_URL`) over real HTTP: qdrant-client's REST calls against `FakeQdrant`, a
Qdrant REST peer backed by qdrant-client local mode, compared with the same calls on local mode
directly. What goes over the wire (collection layout, api-key header, the alias switch of a full
reindex) is checked in the fake's request log.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from retrieval.ingest import Ingestor
from retrieval.sparse import Bm25Encoder
from retrieval.store import open_store
from retrieval.store_errors import StoreError
from retrieval.store_qdrant import QdrantClientStore
from tests.harness.loopback import free_port
from tests.harness.qdrant_api import FakeQdrant

API_KEY = "qdrant-test-api-key-6f0d"
QUERIES = ("how big should my emergency fund be", "which debt has the highest interest", "credit score bills on time")
SEARCHES = (("dense", "rrf"), ("sparse", "rrf"), ("hybrid", "rrf"), ("hybrid", "dbsf"))
insecure_key_warning = pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")


@pytest.fixture
async def qdrant() -> AsyncIterator[FakeQdrant]:
    async with FakeQdrant() as server:
        yield server


async def open_server_store(monkeypatch: pytest.MonkeyPatch, url: str, dim: int, **env: str) -> Any:
    monkeypatch.setenv("QDRANT_URL", url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return await open_store(load_settings(None), dim)


async def open_local_store(monkeypatch: pytest.MonkeyPatch, dim: int) -> Any:
    monkeypatch.delenv("QDRANT_URL", raising=False)
    monkeypatch.setenv("ADVISOR_QDRANT_EMBEDDED_ENGINE", "local")
    return await open_store(load_settings(None), dim)


async def results(store: Any, embedder: Any) -> dict[tuple[str, str, str], list[tuple[float, str, float | None]]]:
    """Every query in every mode: (score, chunk id, relevance) sorted (equal fused scores may come in any order)."""
    sparse = Bm25Encoder()
    found = {}
    for query in QUERIES:
        dense_vec = await embedder.embed_query(query)
        for mode, fusion in SEARCHES:
            hits = await store.search(
                dense_vec, sparse.encode_query(query), mode, limit=5, prefetch=10, fusion=fusion  # type: ignore[arg-type]
            )
            found[(query, mode, fusion)] = sorted(
                (-round(h.score, 4), h.chunk.id, None if h.relevance is None else round(h.relevance, 4)) for h in hits
            )
    return found


async def bookkeeping(store: Any) -> tuple[int, dict[str, set[str]], dict[str, str]]:
    return await store.count(), await store.ids_by_source(), await store.file_hashes()


def paths(qdrant: FakeQdrant, start: int = 0) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in qdrant.requests[start:]]


# -- the store contract over REST --------------------------------------------------------------------


async def test_server_mode_over_rest_gives_the_same_hits_and_scores_as_local_mode(
    qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch, kb_dir: Path, embedder: Any
) -> None:
    server = await open_server_store(monkeypatch, qdrant.url, embedder.dim)
    local = await open_local_store(monkeypatch, embedder.dim)
    try:
        assert isinstance(server, QdrantClientStore) and isinstance(local, QdrantClientStore)
        assert server._client.init_options.get("url") == qdrant.url and local._client.init_options.get("path")
        for store in (server, local):
            report = await Ingestor(store, embedder, Bm25Encoder()).run([kb_dir])
            assert report is not None
        assert (await bookkeeping(server)) == (await bookkeeping(local))
        assert (await server.count()) >= 3
        assert (await results(server, embedder)) == (await results(local, embedder))
        top = await server.search(
            await embedder.embed_query("emergency fund"), Bm25Encoder().encode_query("emergency fund"), "hybrid", 3, 10
        )
        assert top and top[0].chunk.source.endswith("fund.md") and top[0].chunk.title
        assert top[0].relevance is not None and 0 < top[0].relevance <= 1

        # an incremental run after one guide changed and one went away: retrieve, delete, upsert over REST
        (kb_dir / "debt.md").write_text(
            "# Paying off debt\n\nThe snowball method pays the smallest balance first; it keeps you motivated.\n"
        )
        (kb_dir / "score.md").unlink()
        for store in (server, local):
            await Ingestor(store, embedder, Bm25Encoder()).run([kb_dir])
        assert (await bookkeeping(server)) == (await bookkeeping(local))
        assert "/score.md" not in " ".join((await server.ids_by_source()).keys())
        assert (await results(server, embedder)) == (await results(local, embedder))
    finally:
        await server.close()
        await local.close()

    seen = set(paths(qdrant))
    assert ("GET", "/aliases") in seen and ("GET", "/collections/advisor/exists") in seen
    assert ("POST", "/collections/aliases") in seen
    routes = {(method, path.split("/", 3)[-1] if path.count("/") >= 3 else "") for method, path in seen}
    for route in ("points", "points/scroll", "points/count", "points/query", "index"):
        assert any(r == route for _, r in routes), (route, sorted(seen))
    queries = [r["json"] for r in qdrant.calls("POST") if r["path"].endswith("/points/query")]
    assert all(r["path"] == "/collections/advisor/points/query" for r in qdrant.calls("POST", "/collections/advisor/points/query"))
    fused = [q["query"] for q in queries if q.get("prefetch")]
    assert {"fusion": "dbsf"} in fused and any("rrf" in q for q in fused), fused
    assert any(r["path"].endswith("/points/delete") for r in qdrant.requests), "the removed guide's chunks deleted"


async def test_moved_chunks_update_their_payload_over_rest(
    qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch, kb_dir: Path, embedder: Any
) -> None:
    """A guide that grew: its unchanged chunks get the new file hash by set_payload (POST .../points/payload)."""
    store = await open_server_store(monkeypatch, qdrant.url, embedder.dim)
    try:
        await Ingestor(store, embedder, Bm25Encoder()).run([kb_dir])
        fund = str(kb_dir / "fund.md")
        before = (await store.ids_by_source())[fund]
        (kb_dir / "fund.md").write_text((kb_dir / "fund.md").read_text() + "\n## Topping up\n\nRefill it after you use it.\n")
        start = len(qdrant.requests)
        report = await Ingestor(store, embedder, Bm25Encoder()).run([kb_dir])
        assert report.chunks_kept == len(before) and report.chunks_embedded == 1
        after = (await store.ids_by_source())[fund]
        assert before < after and len(after) == len(before) + 1
        payload_calls = [r for r in qdrant.requests[start:] if r["path"].endswith("/points/payload")]
        assert payload_calls and all(r["method"] == "POST" for r in payload_calls)
        assert {p for r in payload_calls for p in r["json"]["points"]} == before
        hashes = await store.file_hashes()
        assert hashes[fund].endswith(f":{len(after)}"), "every chunk of the file carries the new hash"
    finally:
        await store.close()


async def test_full_reindex_builds_a_new_collection_and_switches_the_alias(
    qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch, kb_dir: Path, embedder: Any
) -> None:
    store = await open_server_store(monkeypatch, qdrant.url, embedder.dim)
    try:
        await Ingestor(store, embedder, Bm25Encoder()).run([kb_dir])
        old = store.collection
        assert old.startswith("advisor-") and old != "advisor"
        count = await store.count()
        start = len(qdrant.requests)

        await Ingestor(store, embedder, Bm25Encoder()).run([kb_dir], full=True)

        new = store.collection
        assert new != old and new.startswith("advisor-")
        calls = qdrant.requests[start:]
        created = [r for r in calls if r["method"] == "PUT" and r["path"] == f"/collections/{new}"]
        assert len(created) == 1 and created[0]["json"]["vectors"]["dense"]["size"] == embedder.dim
        assert created[0]["json"]["sparse_vectors"]["bm25"]["modifier"] == "idf"
        (switch,) = [r for r in calls if r["path"] == "/collections/aliases"]
        assert switch["method"] == "POST"
        assert switch["json"]["actions"] == [
            {"delete_alias": {"alias_name": "advisor"}},
            {"create_alias": {"collection_name": new, "alias_name": "advisor"}},
        ], "one request: searches never see the alias missing"
        order = [(r["method"], r["path"]) for r in calls]
        assert order.index(("POST", "/collections/aliases")) < order.index(("DELETE", f"/collections/{old}"))
        upserts = [i for i, r in enumerate(calls) if r["method"] == "PUT" and r["path"] == f"/collections/{new}/points"]
        assert upserts and max(upserts) < order.index(("POST", "/collections/aliases")), "filled before the switch"

        assert qdrant.engine is not None
        aliases = {a.alias_name: a.collection_name for a in (await qdrant.engine.get_aliases()).aliases}
        assert aliases == {"advisor": new}
        assert not await qdrant.engine.collection_exists(old)
        assert await store.count() == count
        hits = await store.search(
            await embedder.embed_query("avalanche"), Bm25Encoder().encode_query("avalanche"), "hybrid", 3, 10
        )
        assert hits and hits[0].chunk.source.endswith("debt.md")
    finally:
        await store.close()

    # a new process finds the live collection through the alias
    reopened = await open_server_store(monkeypatch, qdrant.url, embedder.dim)
    try:
        assert reopened.collection == new and await reopened.count() == count
    finally:
        await reopened.close()


async def test_the_exemplar_collection_sits_beside_the_knowledge_base(
    qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch, embedder: Any
) -> None:
    monkeypatch.setenv("QDRANT_URL", qdrant.url)
    settings = load_settings(None)
    kb = await open_store(settings, embedder.dim)
    exemplars = await open_store(settings, embedder.dim, suffix="-exemplars")
    try:
        assert kb.alias == "advisor" and exemplars.alias == "advisor-exemplars"
        assert kb.collection != exemplars.collection
        assert await exemplars.count() == 0
    finally:
        await kb.close()
        await exemplars.close()


async def test_two_processes_opening_a_fresh_server_at_once_share_one_collection(
    qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch, embedder: Any
) -> None:
    """What `run web --workers 2` does on a server without the collection yet (the exemplar collection
    is made this way on every first start: `ingest` makes only the knowledge base)."""
    import asyncio

    monkeypatch.setenv("QDRANT_URL", qdrant.url)
    settings = load_settings(None)
    opened = await asyncio.gather(
        open_store(settings, embedder.dim, suffix="-exemplars"),
        open_store(settings, embedder.dim, suffix="-exemplars"),
        return_exceptions=True,
    )
    stores = [s for s in opened if not isinstance(s, BaseException)]
    try:
        assert qdrant.engine is not None
        live = {a.alias_name: a.collection_name for a in (await qdrant.engine.get_aliases()).aliases}
        made = [c.name for c in (await qdrant.engine.get_collections()).collections if "exemplars" in c.name]
        assert len(stores) == 2, opened
        assert [s.collection for s in stores] == [live["advisor-exemplars"]] * 2 and len(made) == 1, made
    finally:
        for store in stores:
            await store.close()


# -- what goes over the wire --------------------------------------------------------------------------


@insecure_key_warning
async def test_collection_layout_and_api_key_are_sent(monkeypatch: pytest.MonkeyPatch, embedder: Any) -> None:
    async with FakeQdrant(api_key=API_KEY) as qdrant:  # refuses requests without the key
        store = await open_server_store(
            monkeypatch,
            qdrant.url,
            embedder.dim,
            QDRANT_API_KEY=API_KEY,
            ADVISOR_QDRANT_SHARD_NUMBER="2",
            ADVISOR_QDRANT_REPLICATION_FACTOR="2",
        )
        try:
            assert await store.count() == 0
        finally:
            await store.close()
        (create,) = [r for r in qdrant.calls("PUT") if r["path"] == f"/collections/{store.collection}"]
        assert create["json"]["shard_number"] == 2 and create["json"]["replication_factor"] == 2
        api = [r for r in qdrant.requests if r["path"] != "/"]  # GET / is the client's version check
        assert api and all(r["headers"].get("api-key") == API_KEY for r in api)
        assert not any("Authorization" in r["headers"] for r in api)


async def test_without_layout_settings_the_server_chooses(qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch, embedder: Any) -> None:
    store = await open_server_store(monkeypatch, qdrant.url, embedder.dim)
    await store.close()
    (create,) = [r for r in qdrant.calls("PUT") if r["path"] == f"/collections/{store.collection}"]
    assert create["json"].get("shard_number") is None and create["json"].get("replication_factor") is None
    assert not any("api-key" in r["headers"] for r in qdrant.requests)


@insecure_key_warning
async def test_a_wrong_api_key_is_a_clear_store_error(monkeypatch: pytest.MonkeyPatch, embedder: Any) -> None:
    async with FakeQdrant(api_key="the-right-key") as qdrant:
        with pytest.raises(StoreError) as caught:
            await open_server_store(monkeypatch, qdrant.url, embedder.dim, QDRANT_API_KEY=API_KEY)
    assert qdrant.url in str(caught.value) and API_KEY not in str(caught.value)


@insecure_key_warning
@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
async def test_qdrant_down_at_start_is_a_clear_store_error(monkeypatch: pytest.MonkeyPatch, embedder: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StoreError) as caught:
        await open_server_store(monkeypatch, url, embedder.dim, QDRANT_API_KEY=API_KEY)
    for thread in threading.enumerate():  # qdrant-client's version check warns from its thread: let it here
        if "_check_compatibility" in thread.name:
            thread.join(10)
    message = str(caught.value)
    assert url in message and "cannot reach Qdrant" in message
    assert API_KEY not in message


async def test_a_dimension_mismatch_over_rest_asks_for_a_rebuild(
    qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch, embedder: Any
) -> None:
    store = await open_server_store(monkeypatch, qdrant.url, embedder.dim)
    await store.close()
    with pytest.raises(StoreError, match="rebuild"):
        await open_server_store(monkeypatch, qdrant.url, embedder.dim + 1)


# -- the fake's own answers ---------------------------------------------------------------------------


async def test_the_fake_answers_errors_in_qdrants_shape(qdrant: FakeQdrant) -> None:
    from qdrant_client import AsyncQdrantClient
    from qdrant_client.http.exceptions import UnexpectedResponse

    client = AsyncQdrantClient(url=qdrant.url)
    try:
        assert not await client.collection_exists("nope")
        with pytest.raises(UnexpectedResponse) as caught:
            await client.get_collection("nope")
        assert caught.value.status_code == 404 and b"doesn't exist" in caught.value.content
        assert (await client.info()).version == qdrant.version
    finally:
        await client.close()
