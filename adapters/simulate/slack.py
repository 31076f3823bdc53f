"""`advisor simulate slack FILE...`: recorded Slack requests through the production adapter.

Each file is POSTed, signed, to the adapter's own HTTP endpoint; the Web API calls it
makes land on a local recorder that answers as Slack would. The files share one running
adapter, so de-duplication and conversations carry from one file to the next.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier

from adapters.simulate.common import settle

Json = dict[str, Any]


class SimulationInputError(ValueError):
    """A file that is not a Slack request body; the message names the file and the problem."""


@dataclass
class Payload:
    file: str
    body: bytes
    content_type: str
    kind: str  # "event", "url_verification", "command", "interactive"
    bot_user_id: str | None = None


def read_input(path: Path) -> Payload:
    """Check one recorded body and say what it is."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SimulationInputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    text = raw.decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SimulationInputError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno})") from exc
        kind = body.get("type")
        if kind == "url_verification":
            return Payload(str(path), raw, "application/json", "url_verification")
        if kind != "event_callback" or not isinstance(body.get("event"), dict):
            raise SimulationInputError(f"{path}: expected an Events API body of type event_callback or url_verification")
        authorizations = body.get("authorizations") or [{}]
        return Payload(str(path), raw, "application/json", "event", authorizations[0].get("user_id"))
    fields = dict(parse_qsl(text, keep_blank_values=True))
    if "payload" in fields:
        try:
            interactive = json.loads(fields["payload"])
        except json.JSONDecodeError as exc:
            raise SimulationInputError(f"{path}: the payload field is not valid JSON: {exc.msg}") from exc
        if not isinstance(interactive, dict) or "type" not in interactive:
            raise SimulationInputError(f"{path}: the interactivity payload has no type")
        return Payload(str(path), raw, "application/x-www-form-urlencoded", "interactive")
    if fields.get("command") and "response_url" in fields:
        return Payload(str(path), raw, "application/x-www-form-urlencoded", "command")
    raise SimulationInputError(
        f"{path}: not a Slack request body (expected event JSON, a slash command form, or payload=<json>)"
    )


class SlackRecorder:
    """A local Web API that records every call and answers ok, as Slack would."""

    def __init__(self) -> None:
        self.calls: list[Json] = []
        self.base_url = ""
        self.root = ""
        self._runner: web.AppRunner | None = None
        self._ts = itertools.count(1)

    def _new_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: Json = dict(request.query)
        if request.content_type == "application/json":
            args.update(await request.json())
        elif request.can_read_body:
            args.update(dict((await request.post()).items()))
        args.pop("token", None)
        self.calls.append({"method": method, **args})
        reply: Json = {"ok": True}
        if method in {"chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream", "chat.stopStream"}:
            reply.update(channel=args.get("channel"), ts=args.get("ts") or self._new_ts())
        elif method == "chat.postEphemeral":
            reply["message_ts"] = self._new_ts()
        elif method == "users.info":
            reply["user"] = {"id": args.get("user"), "is_admin": False, "is_owner": False}
        elif method == "auth.test":
            reply.update(user_id="USIMBOT", team_id="TSIM", bot_id="BSIM")
        return web.json_response(reply)

    async def _response_url(self, request: web.Request) -> web.Response:
        self.calls.append({"method": "response_url", **(await request.json())})
        return web.Response(text="ok")

    async def __aenter__(self) -> SlackRecorder:
        application = web.Application()
        application.router.add_post("/api/{method}", self._api)
        application.router.add_get("/api/{method}", self._api)
        application.router.add_post("/response/{id}", self._response_url)
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.root = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self.base_url = f"{self.root}/api/"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _with_local_response_url(payload: Payload, recorder: SlackRecorder) -> bytes:
    """Point a recorded response_url at the recorder, so nothing leaves the machine."""
    if payload.kind not in {"command", "interactive"}:
        return payload.body
    fields = dict(parse_qsl(payload.body.decode(), keep_blank_values=True))
    local = f"{recorder.root}/response/{secrets.token_hex(4)}"
    if payload.kind == "command":
        fields["response_url"] = local
    else:
        interactive = json.loads(fields["payload"])
        interactive["response_url"] = local
        fields["payload"] = json.dumps(interactive)
    return urlencode(fields).encode()


def _lines(file: str, calls: list[Json]) -> Iterator[Json]:
    for call in calls:
        record = {"platform": "slack", "file": file, "method": call["method"]}
        channel = call.get("channel") or call.get("channel_id")  # assistant.threads.* name it channel_id
        record.update({"channel": channel, "thread_ts": call.get("thread_ts"), "text": call.get("text")})
        record.update({k: v for k, v in call.items() if k not in record})
        yield record


async def simulate(paths: list[Path], engine: Any, admin: Any, settings: Any, bot_user_id: str | None) -> list[Json]:
    """Run every file through one adapter; the JSON lines to print, in order."""
    from adapters.slack.app import SlackAdapter, build_client

    payloads = [read_input(path) for path in paths]  # all checked before any runs
    bot = bot_user_id or next((p.bot_user_id for p in payloads if p.bot_user_id), None) or "USIMBOT"
    secret = secrets.token_hex(16)
    slack = settings.slack.model_copy(update={"signing_secret": SecretStr(secret)})
    settings = settings.model_copy(update={"slack": slack})
    token = settings.slack.bot_token.get_secret_value() if settings.slack.bot_token else "xoxb-simulation"
    output: list[Json] = []
    async with SlackRecorder() as recorder:
        adapter = SlackAdapter(engine, admin, settings, client=build_client(token, recorder.base_url), bot_user_id=bot, update_interval=0.0)
        adapter.streams.enabled = False  # the recorder plays a workspace answered through chat.update
        runner = web.AppRunner(adapter.web_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
        try:
            async with aiohttp.ClientSession() as session:
                for payload in payloads:
                    output.extend(await _one(session, url, payload, recorder, adapter, secret))
        finally:
            await runner.cleanup()
    return output


async def _one(session: aiohttp.ClientSession, url: str, payload: Payload, recorder: SlackRecorder, adapter: Any, secret: str) -> list[Json]:
    body = _with_local_response_url(payload, recorder)
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    headers = {
        "Content-Type": payload.content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
        "Connection": "close",  # no keep-alive handler task left to wait for
    }
    first_call, first_ignored = len(recorder.calls), len(adapter.ignored)
    before = set(asyncio.all_tasks())
    async with session.post(url, data=body, headers=headers) as response:
        status, text = response.status, await response.text()
    await settle(before)
    lines: list[Json] = []
    if payload.kind in {"url_verification", "command"} or status != 200:
        try:
            parsed: Any = json.loads(text) if text else ""
        except json.JSONDecodeError:
            parsed = text
        lines.append({"platform": "slack", "file": payload.file, "http_response": {"status": status, "body": parsed}})
    lines.extend(_lines(payload.file, recorder.calls[first_call:]))
    if not lines:
        reasons = list(adapter.ignored)[first_ignored:] or ["nothing for the bot to answer"]
        lines.append({"platform": "slack", "file": payload.file, "ignored": True, "reason": "; ".join(reasons)})
    return lines
