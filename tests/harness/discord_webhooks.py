"""A small fake of Discord's interaction webhook REST endpoints, for the HTTP interactions adapter.

Serves PATCH /api/v10/webhooks/{app}/{token}/messages/@original (edit the original response) and
POST /api/v10/webhooks/{app}/{token} (a follow-up) on 127.0.0.1, records every call and checks what
Discord checks that matters here: a JSON body, content of at most 2,000 characters. `fail_next`
answers the next matching call with 429 and Discord's body {"message", "retry_after", "global"}.

    async with FakeWebhooks() as hooks:
        adapter = DiscordInteractions(engine, admin, settings, api_base=hooks.api_base)
        ...
        hooks.calls_to("PATCH", f"/webhooks/{app_id}/{token}/messages/@original")
"""

from __future__ import annotations

import time
from typing import Any, Self

from aiohttp import web

from tests.harness.loopback import LoopbackServer

Json = dict[str, Any]
CONTENT_LIMIT = 2000


class FakeWebhooks(LoopbackServer):
    def __init__(self) -> None:
        self.api_base = ""  # http://127.0.0.1:PORT/api/v10
        # every call, in order: {"method", "path" (after /api/v10), "json", "headers", "at", "status"}
        self.calls: list[Json] = []
        self._faults: list[tuple[str, str, float]] = []
        self._next_id = 900_000_000_000_000_000

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_patch("/api/v10/webhooks/{app}/{token}/messages/@original", self._edit)
        app.router.add_post("/api/v10/webhooks/{app}/{token}", self._follow)
        port = await self._serve(app, handler_cancellation=False)
        self.api_base = f"http://127.0.0.1:{port}/api/v10"
        return self

    def fail_next(self, method: str, path_prefix: str, retry_after: float = 0.2) -> None:
        """Answer the next call with this method and path prefix with a 429."""
        self._faults.append((method.upper(), path_prefix, retry_after))

    def calls_to(self, method: str, path_prefix: str, ok: bool = False) -> list[Json]:
        """Recorded calls (only the 2xx ones with `ok`)."""
        return [
            c
            for c in self.calls
            if c["method"] == method.upper() and c["path"].startswith(path_prefix) and (not ok or c["status"] < 300)
        ]

    async def _record(self, request: web.Request) -> tuple[Json, web.Response | None]:
        path = request.path.removeprefix("/api/v10")
        try:
            body = await request.json()
        except ValueError:
            body = None
        call: Json = {
            "method": request.method,
            "path": path,
            "json": body,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "at": time.monotonic(),
            "status": 200,
        }
        self.calls.append(call)
        for fault in self._faults:
            method, prefix, retry_after = fault
            if method == request.method and path.startswith(prefix):
                self._faults.remove(fault)
                call["status"] = 429
                body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
                return call, web.json_response(
                    body, status=429, headers={"Retry-After": str(max(1, round(retry_after)))}
                )
        if not isinstance(body, dict) or len(str(body.get("content", ""))) > CONTENT_LIMIT:
            call["status"] = 400
            return call, web.json_response({"message": "Invalid Form Body", "code": 50035}, status=400)
        return call, None

    def _message(self, request: web.Request, body: Json) -> Json:
        self._next_id += 1
        return {
            "id": str(self._next_id),
            "type": 20,
            "content": body.get("content", ""),
            "flags": body.get("flags", 0),
            "webhook_id": request.match_info["app"],
            "application_id": request.match_info["app"],
        }

    async def _edit(self, request: web.Request) -> web.Response:
        call, refused = await self._record(request)
        return refused or web.json_response(self._message(request, call["json"]))

    async def _follow(self, request: web.Request) -> web.Response:
        call, refused = await self._record(request)
        if refused:
            return refused
        if request.query.get("wait") in ("1", "true", "True"):
            return web.json_response(self._message(request, call["json"]))
        return web.Response(status=204)
