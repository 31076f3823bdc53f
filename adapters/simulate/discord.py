"""`advisor simulate discord FILE...`: recorded gateway dispatches through the production adapter.

The real discord.py client logs in against a local recorder that plays Discord's REST
API; each file's MESSAGE_CREATE or INTERACTION_CREATE is handed to the client's own
gateway parser, so the adapter runs exactly as it does behind a live gateway. The files
share one client, so de-duplication and conversations carry from one file to the next.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import discord
from aiohttp import web

from adapters.simulate.common import settle

Json = dict[str, Any]
DEFAULT_BOT_ID = "100000000000000001"
DISCORD_EPOCH_MS = 1_420_070_400_000


class SimulationInputError(ValueError):
    """A file that is not a gateway dispatch or an interaction; the message names it."""


@dataclass
class Dispatch:
    file: str
    event: str
    data: Json


def read_input(path: Path) -> Dispatch:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SimulationInputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SimulationInputError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise SimulationInputError(f"{path}: expected a JSON object")
    if "op" in body:
        if body.get("op") != 0 or body.get("t") not in {"MESSAGE_CREATE", "INTERACTION_CREATE"}:
            raise SimulationInputError(f"{path}: expected a dispatch (op 0) of MESSAGE_CREATE or INTERACTION_CREATE")
        if not isinstance(body.get("d"), dict):
            raise SimulationInputError(f"{path}: the dispatch has no 'd' object")
        event, data = body["t"], body["d"]
    elif "type" in body and "token" in body and "application_id" in body:
        event, data = "INTERACTION_CREATE", body  # an HTTP interactions body
    else:
        raise SimulationInputError(f"{path}: not a gateway dispatch nor an interaction object")
    required = ("id", "channel_id", "author") if event == "MESSAGE_CREATE" else ("id", "type", "token")
    missing = [key for key in required if key not in data]
    if missing:
        raise SimulationInputError(f"{path}: {event} data lacks {', '.join(missing)}")
    return Dispatch(str(path), event, data)


def _snowflakes() -> Any:
    start = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
    return (str(start + n) for n in itertools.count(1))


class DiscordRecorder:
    """A local REST API answering as Discord would, recording every call."""

    def __init__(self, bot_id: str) -> None:
        self.bot = {"id": bot_id, "username": "advisor", "discriminator": "0", "global_name": None, "avatar": None, "bot": True}
        self.calls: list[Json] = []
        self.api_base = ""
        self._ids = _snowflakes()
        self._runner: web.AppRunner | None = None

    def _message(self, channel_id: str, body: Json, message_id: str | None = None) -> Json:
        return {
            "id": message_id or next(self._ids),
            "channel_id": channel_id,
            "author": self.bot,
            "content": body.get("content") or "",
            "timestamp": datetime.now(UTC).isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "pinned": False,
            "type": 19 if body.get("message_reference") else 0,
            "flags": body.get("flags") or 0,
        }

    async def _handle(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        body = await request.json() if request.can_read_body and request.content_type == "application/json" else None
        if request.method != "GET":
            self.calls.append({"method": request.method, "path": path, "body": body})
        parts = path.strip("/").split("/")
        reply: Any = None
        status = 200
        if path == "/users/@me":
            reply = self.bot
        elif path == "/oauth2/applications/@me":
            reply = {
                "id": self.bot["id"], "name": "advisor", "description": "", "icon": None, "bot_public": True,
                "bot_require_code_grant": False, "owner": self.bot, "verify_key": "0" * 64, "flags": 0,
            }
        elif parts[0] == "channels" and len(parts) == 3 and parts[2] == "messages" and request.method == "POST":
            reply = self._message(parts[1], body or {})
        elif parts[0] == "channels" and len(parts) == 4 and parts[2] == "messages" and request.method == "PATCH":
            reply = self._message(parts[1], body or {}, parts[3])
        elif parts[0] == "webhooks" and request.method in {"PATCH", "POST"}:
            reply = self._message("0", body or {})
        elif parts[0] == "applications" and request.method == "PUT":
            reply = [{**command, "id": next(self._ids), "application_id": self.bot["id"], "version": "1"} for command in body or []]
        elif parts[-1] == "callback" and request.query.get("with_response") in {"1", "true", "True"}:
            kind = (body or {}).get("type", 4)
            message = self._message("0", (body or {}).get("data") or {})
            ephemeral = bool(((body or {}).get("data") or {}).get("flags", 0) & 64)
            reply = {
                "interaction": {
                    "id": parts[1], "type": 2, "response_message_id": message["id"],
                    "response_message_loading": kind == 5, "response_message_ephemeral": ephemeral,
                },
                "resource": {"type": kind, **({"message": message} if kind in {4, 7} else {})},
            }
        elif parts[-1] in {"typing", "callback"}:
            status = 204
        else:
            status, reply = 404, {"message": "404: Not Found", "code": 0}
        if reply is None:
            return web.Response(status=status)
        return web.Response(status=status, body=json.dumps(reply), content_type="application/json")

    async def __aenter__(self) -> DiscordRecorder:
        application = web.Application()
        application.router.add_route("*", "/api/v10/{tail:.*}", self._handle)
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.api_base = f"http://127.0.0.1:{self._runner.addresses[0][1]}/api/v10"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _guild(guild_id: str) -> Json:
    """The least GUILD_CREATE discord.py accepts, so guild messages are seen as guild messages."""
    everyone = {"id": guild_id, "name": "@everyone", "permissions": "0", "position": 0, "color": 0, "hoist": False,
                "managed": False, "mentionable": False, "flags": 0}
    return {"id": guild_id, "name": "simulated guild", "owner_id": "0", "roles": [everyone], "channels": [],
            "threads": [], "members": [], "member_count": 1, "features": [], "emojis": [], "stickers": [],
            "unavailable": False}


def _lines(file: str, calls: list[Json]) -> list[Json]:
    return [{"platform": "discord", "file": file, "method": c["method"], "path": c["path"], "body": c["body"]} for c in calls]


async def simulate(paths: list[Path], engine: Any, admin: Any, settings: Any, bot_user_id: str | None) -> list[Json]:
    from adapters.discord.gateway import DiscordAdapter, intents

    dispatches = [read_input(path) for path in paths]  # all checked before anything runs
    output: list[Json] = []
    original_base = discord.http.Route.BASE
    async with DiscordRecorder(bot_user_id or DEFAULT_BOT_ID) as recorder:
        discord.http.Route.BASE = recorder.api_base
        client = discord.Client(intents=intents())
        adapter = DiscordAdapter(engine, admin, settings, client=client, edit_interval=0.0)
        try:
            await client.login("simulation-token")
            recorder.calls.clear()  # the login itself is not the bot's doing
            state = client._connection  # discord.py's gateway state: the parsers a live gateway feeds
            known_guilds: set[str] = set()
            for dispatch in dispatches:
                guild_id = dispatch.data.get("guild_id")
                if guild_id and guild_id not in known_guilds:
                    known_guilds.add(guild_id)
                    state.parsers["GUILD_CREATE"](_guild(str(guild_id)))
                first_call, first_ignored = len(recorder.calls), len(adapter.ignored)
                before = set(asyncio.all_tasks())
                try:
                    state.parsers[dispatch.event](dispatch.data)
                except Exception as exc:  # noqa: BLE001 -- a dispatch discord.py cannot parse: report it, go on
                    reason = f"discord.py cannot parse this {dispatch.event} dispatch ({type(exc).__name__}: {exc})"
                    output.append({"platform": "discord", "file": dispatch.file, "error": reason})
                    continue
                await settle(before)
                lines = _lines(dispatch.file, recorder.calls[first_call:])
                if not lines:
                    reasons = list(adapter.ignored)[first_ignored:] or ["nothing for the bot to answer"]
                    lines = [{"platform": "discord", "file": dispatch.file, "ignored": True, "reason": "; ".join(reasons)}]
                output.extend(lines)
        finally:
            await client.close()
            discord.http.Route.BASE = original_base
    return output
