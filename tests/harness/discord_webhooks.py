"""A small fake of Discord's interaction webhook REST endpoints, for the HTTP interactions adapter.

Serves PATCH /api/v10/webhooks/{app}/{token}/messages/@original (edit the original response) and
POST /api/v10/webhooks/{app}/{token} (a follow-up) on 127.0.0.1, records every call and checks what
Discord checks that matters here: a JSON body, content of at most 2,000 characters. `fail_next`
answers the next matching call with 429 and Discord's body {"message", "retry_after", "global"}
(or another status and error code).

Strict about time, as docs/interactions/receiving-and-responding says: `interact` plays Discord
delivering an interaction to the endpoint and holds the endpoint to the 3-second initial response
(a later answer is thrown away and voids the token: its webhook calls get 404 10015 Unknown
Webhook), and a token older than 15 minutes gets 401 50027 Invalid Webhook Token. Time is
`clock`, which tests move forward instead of waiting. Tokens the fake never saw delivered are
taken as they come, without deadlines.

Two bot-token routes serve the adapter's fallbacks: POST /users/@me/channels (open a DM) and
POST /channels/{id}/messages (a DM, or an admin alert); without `Authorization: Bot ...` they get 401.

    async with FakeWebhooks() as hooks:
        adapter = DiscordInteractions(engine, admin, settings, api_base=hooks.api_base)
        status, body = await hooks.interact(url, payload, signing_key)
        hooks.calls_to("PATCH", f"/webhooks/{app_id}/{token}/messages/@original")
"""

from __future__ import annotations

import json
import time
from typing import Any, Self

import aiohttp
from aiohttp import web
from nacl.signing import SigningKey

from tests.harness.discord_api import INITIAL_RESPONSE_DEADLINE, TOKEN_LIFETIME, FakeClock
from tests.harness.loopback import LoopbackServer

Json = dict[str, Any]
CONTENT_LIMIT = 2000


def sign(body: bytes, key: SigningKey, timestamp: int | None = None) -> dict[str, str]:
    """The headers Discord signs an interaction with: Ed25519 over timestamp + raw body."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body).signature.hex()
    return {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": stamp, "Content-Type": "application/json"}


class FakeWebhooks(LoopbackServer):
    def __init__(self, *, clock: FakeClock | None = None, interaction_deadlines: bool = True) -> None:
        self.api_base = ""  # http://127.0.0.1:PORT/api/v10
        self.clock = clock or FakeClock()
        self.interaction_deadlines = interaction_deadlines
        # every call, in order: {"method", "path" (after /api/v10), "json", "headers", "at", "status"}
        self.calls: list[Json] = []
        # token -> {"id", "created_at", "acked_after" (clock seconds to the response), "late", "response"}
        self.interactions: dict[str, Json] = {}
        self._faults: list[tuple[str, str, float, int, int]] = []
        self._next_id = 900_000_000_000_000_000

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_patch("/api/v10/webhooks/{app}/{token}/messages/@original", self._edit)
        app.router.add_post("/api/v10/webhooks/{app}/{token}", self._follow)
        app.router.add_post("/api/v10/users/@me/channels", self._open_dm)
        app.router.add_post("/api/v10/channels/{channel}/messages", self._channel_message)
        port = await self._serve(app, handler_cancellation=False)
        self.api_base = f"http://127.0.0.1:{port}/api/v10"
        return self

    def fail_next(
        self, method: str, path_prefix: str, retry_after: float = 0.2, *, status: int = 429, code: int = 0
    ) -> None:
        """Answer the next call with this method and path prefix with a 429 (or `status` with error `code`)."""
        self._faults.append((method.upper(), path_prefix, retry_after, status, code))

    def calls_to(self, method: str, path_prefix: str, ok: bool = False) -> list[Json]:
        """Recorded calls (only the 2xx ones with `ok`)."""
        return [
            c
            for c in self.calls
            if c["method"] == method.upper() and c["path"].startswith(path_prefix) and (not ok or c["status"] < 300)
        ]

    def register(self, payload: Json) -> Json:
        """Start the 15-minute token clock for an interaction a test delivers itself (taken as answered in time)."""
        record = {"id": payload["id"], "created_at": self.clock.now(), "acked_after": 0.0, "late": False, "response": {}}
        self.interactions[payload["token"]] = record
        return record

    async def interact(
        self, url: str, payload: Json, key: SigningKey, session: aiohttp.ClientSession | None = None
    ) -> tuple[int, Any]:
        """Deliver `payload` signed to the endpoint at `url`: (status, JSON body). An answer later than
        3 s on the clock counts as none: Discord shows "This interaction failed" and voids the token."""
        record = self.register(payload)
        record["response"] = None  # until the endpoint answers, the token has nothing to follow up
        body = json.dumps(payload).encode()
        own = session is None
        http = session or aiohttp.ClientSession()
        try:
            async with http.post(url, data=body, headers=sign(body, key)) as response:
                status, answer = response.status, await response.json(content_type=None)
        finally:
            if own:
                await http.close()
        record["acked_after"] = self.clock.now() - record["created_at"]
        record["late"] = self.interaction_deadlines and record["acked_after"] > INITIAL_RESPONSE_DEADLINE
        record["response"] = None if record["late"] else answer
        return status, answer

    def _refusal(self, token: str) -> web.Response | None:
        """What Discord answers a webhook call whose token is void or expired (None: the token works)."""
        record = self.interactions.get(token)
        if record is None or not self.interaction_deadlines:
            return None
        if record["late"] or record["response"] is None:
            return web.json_response({"message": "Unknown Webhook", "code": 10015}, status=404)
        if self.clock.now() - record["created_at"] > TOKEN_LIFETIME:
            return web.json_response({"message": "Invalid Webhook Token", "code": 50027}, status=401)
        return None

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
        refused = self._fault(request.method, path) or self._refusal(request.match_info.get("token", ""))
        if refused is None and (not isinstance(body, dict) or len(str(body.get("content", ""))) > CONTENT_LIMIT):
            refused = web.json_response({"message": "Invalid Form Body", "code": 50035}, status=400)
        if refused is not None:
            call["status"] = refused.status
        return call, refused

    def _fault(self, method: str, path: str) -> web.Response | None:
        for fault in self._faults:
            fault_method, prefix, retry_after, status, code = fault
            if fault_method == method and path.startswith(prefix):
                self._faults.remove(fault)
                if status != 429:
                    return web.json_response({"message": f"{status} error", "code": code}, status=status)
                body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
                return web.json_response(body, status=429, headers={"Retry-After": str(max(1, round(retry_after)))})
        return None

    def _message(self, request: web.Request, body: Json) -> Json:
        self._next_id += 1
        return {
            "id": str(self._next_id),
            "type": 20,
            "content": body.get("content", ""),
            "flags": body.get("flags", 0),
            "webhook_id": request.match_info.get("app"),
            "application_id": request.match_info.get("app"),
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

    def _bot(self, request: web.Request) -> web.Response | None:
        if not request.headers.get("Authorization", "").startswith("Bot "):
            return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        return None

    async def _open_dm(self, request: web.Request) -> web.Response:
        call, refused = await self._record(request)
        refused = refused or self._bot(request)
        if refused:
            call["status"] = refused.status
            return refused
        self._next_id += 1
        recipient = {"id": str(call["json"].get("recipient_id")), "username": "user", "discriminator": "0"}
        return web.json_response({"id": str(self._next_id), "type": 1, "recipients": [recipient]})

    async def _channel_message(self, request: web.Request) -> web.Response:
        call, refused = await self._record(request)
        refused = refused or self._bot(request)
        if refused:
            call["status"] = refused.status
            return refused
        message = self._message(request, call["json"])
        message.update(type=0, channel_id=request.match_info["channel"], webhook_id=None)
        return web.json_response(message)
