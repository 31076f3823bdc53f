"""Operations endpoints (/healthz, /readyz, /metrics) and the counters for chat platforms' HTTP 429s.

`add_ops_routes` adds the endpoints to an existing aiohttp app (the Slack HTTP app); `start_ops_server` serves them
on their own port for a process with no web app (the Discord worker). The 429 hooks live here, not in `bot.ops.metrics`,
because the core may not import a platform library.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from aiohttp import web
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.ops import metrics
from bot.ops.readiness import Check, check_all

# discord.py logs a warning on each 429 it receives: "We are being rate limited. %s %s responded with 429. ..."
# (logger discord.http) and, for webhooks and interaction follow-ups, "Webhook ID %s is rate limited. ..."
# (logger discord.webhook.async_).
DISCORD_LOGGERS = ("discord.http", "discord.webhook.async_")


def add_ops_routes(
    app: web.Application,
    checks: Mapping[str, Check],
    draining: Callable[[], bool] = lambda: False,
    timeout: float = 2.0,
) -> web.Application:
    """GET /healthz (liveness), /readyz (checks; 503 when one fails or while draining), /metrics (Prometheus).

    An existing GET /healthz (the Slack app's, same `{"ok": true}` answer) is kept. Concurrent /readyz requests
    share one run of the checks, so a burst of probes cannot multiply the load on the store or the model server.
    """
    running: dict[str, asyncio.Future[tuple[bool, dict[str, str]]]] = {}

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(_: web.Request) -> web.Response:
        if draining():
            return web.json_response({"ready": False, "draining": True, "checks": {}}, status=503)
        shared = running.get("checks")
        if shared is None or shared.done():
            shared = running["checks"] = asyncio.ensure_future(check_all(checks, timeout))
        ok, results = await asyncio.shield(shared)
        ready = ok and not draining()
        body = {"ready": ready, "draining": draining(), "checks": results}
        return web.json_response(body, status=200 if ready else 503)

    async def metrics_endpoint(_: web.Request) -> web.Response:
        body, content_type = metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    if not _has_get(app, "/healthz"):
        app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


def _has_get(app: web.Application, path: str) -> bool:
    return any(
        route.method in ("GET", "*") and route.resource is not None and route.resource.canonical == path
        for route in app.router.routes()
    )


async def start_ops_server(
    host: str, port: int, checks: Mapping[str, Check], draining: Callable[[], bool] = lambda: False
) -> web.AppRunner:
    """Serve the ops endpoints alone on host:port (port 0: any free port, see `runner.addresses`).

    Stop with `await runner.cleanup()`.
    """
    app = add_ops_routes(web.Application(), checks, draining)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


# -- platform 429s ------------------------------------------------------------


class CountingRateLimitHandler(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's 429 retry handler (honours Retry-After) that also counts every 429 in `advisor_platform_429`.

    Counted in `can_retry_async`, which the client calls for every response, including the last 429 when the
    retries are used up (`_can_retry_async` is skipped then). Use it in place of AsyncRateLimitErrorRetryHandler:
    `AsyncWebClient(token=..., retry_handlers=[CountingRateLimitHandler(max_retry_count=3)])`.
    """

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if error is None and response is not None and response.status_code == 429:
            metrics.platform_429("slack")
        return await super().can_retry_async(state=state, request=request, response=response, error=error)


class DiscordRateLimitCounter(logging.Handler):
    """Counts discord.py's "rate limited" warnings in `advisor_platform_429` (it emits nothing, only counts).

    discord.py handles 429s itself and only logs them, so the log is the hook. The loggers must be enabled for
    WARNING (the default); at ERROR discord.py's warnings are dropped before any handler sees them.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is simply not a 429
            return
        if message.startswith("We are being rate limited.") or (
            message.startswith("Webhook ID ") and " is rate limited." in message
        ):
            metrics.platform_429("discord")


_discord_counter: DiscordRateLimitCounter | None = None


def install_platform_429_hooks() -> DiscordRateLimitCounter:
    """Attach the discord.py 429 counter to its loggers (once per process) and return it.

    Slack needs no global hook: build its client with `CountingRateLimitHandler` instead.
    """
    global _discord_counter
    if _discord_counter is None:
        _discord_counter = DiscordRateLimitCounter()
    for name in DISCORD_LOGGERS:
        logger = logging.getLogger(name)
        if _discord_counter not in logger.handlers:
            logger.addHandler(_discord_counter)
    return _discord_counter


def uninstall_platform_429_hooks() -> None:
    if _discord_counter is not None:
        for name in DISCORD_LOGGERS:
            logging.getLogger(name).removeHandler(_discord_counter)


__all__ = [
    "CountingRateLimitHandler",
    "DiscordRateLimitCounter",
    "add_ops_routes",
    "install_platform_429_hooks",
    "start_ops_server",
    "uninstall_platform_429_hooks",
]
