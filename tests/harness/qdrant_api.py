"""A fake Qdrant server for tests: Qdrant's REST API (the part advisor's `qdrant-client` calls send)
over a real engine, qdrant-client's own local mode, running inside the fake.

No package ships the Qdrant server, so server mode (`QDRANT_URL`) is tested against this peer: each
route parses its body with `qdrant_client.http.models` (what the client serialised), calls the local
engine's matching method, and answers in Qdrant's envelope ``{"result": ..., "status": "ok", "time": ...}``
(errors: ``{"status": {"error": "..."}, "time": ...}`` with 400 or 404). Every request is recorded.

    async with FakeQdrant() as qdrant:
        client = AsyncQdrantClient(url=qdrant.url)

In a thread, for a command under test that runs its own event loop: ``serving_in_thread(FakeQdrant())``.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import time
import warnings
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError
from qdrant_client import AsyncQdrantClient
from qdrant_client.http import models

from tests.harness.loopback import LoopbackServer

Json = dict[str, Any]
_BODY: web.RequestKey[Any] = web.RequestKey("qdrant_body", object)


def _client_version() -> str:
    """What GET / reports: qdrant-client warns when the server's minor version is more than one off
    its own, so the fake claims the installed client's version."""
    try:
        return importlib.metadata.version("qdrant-client")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "1.15.0"


class QdrantError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_SELECTOR: TypeAdapter[models.PointIdsList | models.FilterSelector] = TypeAdapter(
    models.PointIdsList | models.FilterSelector
)
_INSERT: TypeAdapter[models.PointsList | models.PointsBatch] = TypeAdapter(models.PointsList | models.PointsBatch)


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=False)
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    return value


class FakeQdrant(LoopbackServer):
    """Async context manager serving Qdrant's REST API on 127.0.0.1 (a free port), backed by
    qdrant-client local mode (in memory, or on disk under `path`)."""

    def __init__(self, *, path: str | None = None, version: str | None = None, api_key: str | None = None) -> None:
        self.path = path
        self.version = version or _client_version()
        self.api_key = api_key  # when set, requests without this `api-key` header get 401
        self.url = ""
        self.requests: list[Json] = []
        self.engine: AsyncQdrantClient | None = None
        self._last_request = 0.0

    async def __aenter__(self) -> Self:
        self.engine = AsyncQdrantClient(path=self.path) if self.path else AsyncQdrantClient(location=":memory:")
        app = web.Application(middlewares=[self._middleware], client_max_size=256 * 1024 * 1024)
        r = app.router
        r.add_get("/", self._root)
        r.add_get("/healthz", self._health)
        r.add_get("/livez", self._health)
        r.add_get("/readyz", self._health)
        r.add_get("/aliases", self._get_aliases)
        r.add_post("/collections/aliases", self._update_aliases)
        r.add_get("/collections", self._get_collections)
        r.add_get("/collections/{name}", self._get_collection)
        r.add_put("/collections/{name}", self._create_collection)
        r.add_delete("/collections/{name}", self._delete_collection)
        r.add_get("/collections/{name}/exists", self._collection_exists)
        r.add_get("/collections/{name}/aliases", self._get_collection_aliases)
        r.add_put("/collections/{name}/index", self._create_index)
        r.add_put("/collections/{name}/points", self._upsert)
        r.add_post("/collections/{name}/points", self._retrieve)
        r.add_post("/collections/{name}/points/delete", self._delete_points)
        r.add_post("/collections/{name}/points/payload", self._set_payload)
        r.add_post("/collections/{name}/points/scroll", self._scroll)
        r.add_post("/collections/{name}/points/count", self._count)
        r.add_post("/collections/{name}/points/query", self._query)
        r.add_post("/collections/{name}/points/query/batch", self._query_batch)
        port = await self._serve(app)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # qdrant-client checks the server's version (GET /) from a thread of its own when a client is made;
        # a test that is over sooner would close the server under it (a "Failed to obtain server version"
        # warning), which a real server, up for longer, never does: wait for a quiet moment first
        deadline = time.monotonic() + 2.0
        while self._runner is not None and time.monotonic() < deadline:
            if time.monotonic() - self._last_request > 0.15:
                break
            await asyncio.sleep(0.01)
        await self._stop()
        if self.engine is not None:
            await self.engine.close()
            self.engine = None

    # ----- test helpers ------------------------------------------------------------------------------

    def calls(self, method: str, path_prefix: str = "") -> list[Json]:
        """Recorded requests with this HTTP method whose path starts with `path_prefix`."""
        return [r for r in list(self.requests) if r["method"] == method and r["path"].startswith(path_prefix)]

    # ----- plumbing ----------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self._last_request = time.monotonic()
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return self._error(400, "Format error in JSON body: expected value")
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "json": body,
            }
        )
        if self.api_key is not None and request.path != "/" and request.headers.get("api-key") != self.api_key:
            return self._error(401, "Must provide an API key or an Authorization bearer token")
        request[_BODY] = body
        started = time.perf_counter()
        try:
            result = await handler(request)
        except web.HTTPException:
            raise
        except QdrantError as exc:
            return self._error(exc.status, str(exc))
        except ValidationError as exc:
            return self._error(400, f"Format error in JSON body: {exc.errors()[0]['msg']}")
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            message = str(exc)
            status = 404 if "not found" in message.lower() or "doesn't exist" in message.lower() else 400
            return self._error(status, message or type(exc).__name__)
        if isinstance(result, web.StreamResponse):
            return result
        return web.json_response({"result": _dump(result), "status": "ok", "time": time.perf_counter() - started})

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response({"status": {"error": message}, "time": 0.0}, status=status)

    @property
    def _engine(self) -> AsyncQdrantClient:
        assert self.engine is not None, "FakeQdrant is not running"
        return self.engine

    async def _must_exist(self, name: str) -> None:
        """Qdrant resolves aliases wherever a collection name goes; a missing one is a 404."""
        if await self._engine.collection_exists(name):
            return
        aliases = {a.alias_name for a in (await self._engine.get_aliases()).aliases}
        if name not in aliases:
            raise QdrantError(404, f"Not found: Collection `{name}` doesn't exist!")

    # ----- service -----------------------------------------------------------------------------------

    async def _root(self, request: web.Request) -> web.Response:
        return web.json_response({"title": "qdrant - vector search engine", "version": self.version, "commit": None})

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="healthz check passed" if request.path != "/readyz" else "all shards are ready")

    # ----- collections and aliases -------------------------------------------------------------------

    async def _get_aliases(self, request: web.Request) -> Any:
        return await self._engine.get_aliases()

    async def _get_collection_aliases(self, request: web.Request) -> Any:
        name = request.match_info["name"]
        await self._must_exist(name)
        return await self._engine.get_collection_aliases(name)

    async def _update_aliases(self, request: web.Request) -> Any:
        body = models.ChangeAliasesOperation.model_validate(request[_BODY])
        for action in body.actions:
            if isinstance(action, models.CreateAliasOperation):
                # as Qdrant's update_aliases: the target must be a collection, the alias name must not be
                # one; an alias that exists already is silently re-pointed
                target, alias = action.create_alias.collection_name, action.create_alias.alias_name
                if target not in {c.name for c in (await self._engine.get_collections()).collections}:
                    raise QdrantError(404, f"Not found: Collection `{target}` doesn't exist!")
                if alias in {c.name for c in (await self._engine.get_collections()).collections}:
                    raise QdrantError(400, f"Wrong input: Collection `{alias}` already exists!")
            elif isinstance(action, models.DeleteAliasOperation):
                known = {a.alias_name for a in (await self._engine.get_aliases()).aliases}
                if action.delete_alias.alias_name not in known:
                    raise QdrantError(404, f"Not found: Alias {action.delete_alias.alias_name} does not exists!")
        return await self._engine.update_collection_aliases(change_aliases_operations=body.actions)

    async def _get_collections(self, request: web.Request) -> Any:
        return await self._engine.get_collections()

    async def _get_collection(self, request: web.Request) -> Any:
        name = request.match_info["name"]
        await self._must_exist(name)
        return await self._engine.get_collection(name)

    async def _collection_exists(self, request: web.Request) -> Any:
        return models.CollectionExistence(exists=await self._engine.collection_exists(request.match_info["name"]))

    async def _create_collection(self, request: web.Request) -> Any:
        name = request.match_info["name"]
        body = models.CreateCollection.model_validate(request[_BODY] or {})
        if await self._engine.collection_exists(name):
            raise QdrantError(400, f"Wrong input: Collection `{name}` already exists!")
        # shard_number, replication_factor, write_consistency_factor...: cluster settings the local
        # engine has no use for (they stay in self.requests for tests to check)
        return await self._engine.create_collection(
            name,
            vectors_config=body.vectors,
            sparse_vectors_config=body.sparse_vectors,
            metadata=body.metadata,
        )

    async def _delete_collection(self, request: web.Request) -> Any:
        return await self._engine.delete_collection(request.match_info["name"])

    async def _create_index(self, request: web.Request) -> Any:
        name = request.match_info["name"]
        body = models.CreateFieldIndex.model_validate(request[_BODY])
        await self._must_exist(name)
        with warnings.catch_warnings():  # "payload indexes have no effect in local mode": true, and harmless here
            warnings.simplefilter("ignore", UserWarning)
            result = await self._engine.create_payload_index(name, body.field_name, field_schema=body.field_schema)
        return result or models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)

    # ----- points ------------------------------------------------------------------------------------

    async def _upsert(self, request: web.Request) -> Any:
        name = request.match_info["name"]
        body = _INSERT.validate_python(request[_BODY])
        await self._must_exist(name)
        points: Any = body.points if isinstance(body, models.PointsList) else body.batch
        return await self._engine.upsert(name, points=points, update_filter=body.update_filter, update_mode=body.update_mode)

    async def _retrieve(self, request: web.Request) -> Any:
        name = request.match_info["name"]
        body = models.PointRequest.model_validate(request[_BODY])
        await self._must_exist(name)
        return await self._engine.retrieve(
            name,
            ids=body.ids,
            with_payload=True if body.with_payload is None else body.with_payload,
            with_vectors=False if body.with_vector is None else body.with_vector,
        )

    async def _delete_points(self, request: web.Request) -> Any:
        name = request.match_info["name"]
        selector = _SELECTOR.validate_python(request[_BODY])
        await self._must_exist(name)
        return await self._engine.delete(name, points_selector=selector)

    async def _set_payload(self, request: web.Request) -> Any:
        name = request.match_info["name"]
        body = models.SetPayload.model_validate(request[_BODY])
        await self._must_exist(name)
        if body.points is not None:
            points: Any = models.PointIdsList(points=body.points)
        elif body.filter is not None:
            points = models.FilterSelector(filter=body.filter)
        else:
            raise QdrantError(400, "Wrong input: either points or filter is required")
        return await self._engine.set_payload(name, payload=body.payload, points=points, key=body.key)

    async def _scroll(self, request: web.Request) -> Any:
        name = request.match_info["name"]
        body = models.ScrollRequest.model_validate(request[_BODY] or {})
        await self._must_exist(name)
        records, next_offset = await self._engine.scroll(
            name,
            scroll_filter=body.filter,
            limit=10 if body.limit is None else body.limit,
            order_by=body.order_by,
            offset=body.offset,
            with_payload=True if body.with_payload is None else body.with_payload,
            with_vectors=False if body.with_vector is None else body.with_vector,
        )
        return models.ScrollResult(points=records, next_page_offset=next_offset)

    async def _count(self, request: web.Request) -> Any:
        name = request.match_info["name"]
        body = models.CountRequest.model_validate(request[_BODY] or {})
        await self._must_exist(name)
        return await self._engine.count(name, count_filter=body.filter, exact=True if body.exact is None else body.exact)

    async def _run_query(self, name: str, body: models.QueryRequest) -> models.QueryResponse:
        return await self._engine.query_points(
            name,
            query=body.query,
            using=body.using,
            prefetch=body.prefetch,
            query_filter=body.filter,
            search_params=body.params,
            limit=10 if body.limit is None else body.limit,
            offset=body.offset,
            with_payload=False if body.with_payload is None else body.with_payload,
            with_vectors=False if body.with_vector is None else body.with_vector,
            score_threshold=body.score_threshold,
            lookup_from=body.lookup_from,
        )

    async def _query(self, request: web.Request) -> Any:
        name = request.match_info["name"]
        body = models.QueryRequest.model_validate(request[_BODY] or {})
        await self._must_exist(name)
        return await self._run_query(name, body)

    async def _query_batch(self, request: web.Request) -> Any:
        name = request.match_info["name"]
        body = models.QueryRequestBatch.model_validate(request[_BODY])
        await self._must_exist(name)
        return [await self._run_query(name, search) for search in body.searches]
