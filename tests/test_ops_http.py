"""adapters.ops_http and bot.ops.readiness over real loopback servers; the Slack and Discord 429 counters."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import discord.http
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_async_handlers
from slack_sdk.web.async_client import AsyncWebClient

from adapters.ops_http import (
    CountingRateLimitHandler,
    add_ops_routes,
    install_platform_429_hooks,
    start_ops_server,
    uninstall_platform_429_hooks,
)
from bot.ops import metrics
from bot.ops.readiness import Check, check_all, model_check, redis_check, standard_checks, store_check
from tests.harness import discord_payloads as dp
from tests.harness.discord_api import FakeDiscord

KEY = "sk-test-0123456789abcdef"


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """`app` on 127.0.0.1, any free port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, body


async def ok() -> None:
    return None


async def broken() -> None:
    raise RuntimeError(f"could not connect with {KEY}")


async def hangs() -> None:
    await asyncio.sleep(30)


def platform_429(platform: str) -> float:
    return metrics.REGISTRY.get_sample_value("advisor_platform_429_total", {"platform": platform}) or 0.0


# -- /healthz, /readyz, /metrics -----------------------------------------------


async def test_all_checks_ok_is_ready() -> None:
    async with serve(add_ops_routes(web.Application(), {"store": ok, "redis": ok})) as url:
        assert await get(f"{url}/healthz") == (200, {"ok": True})
        assert await get(f"{url}/readyz") == (
            200,
            {"ready": True, "draining": False, "checks": {"store": "ok", "redis": "ok"}},
        )


async def test_failing_and_hanging_checks_are_503_with_short_redacted_errors() -> None:
    checks: dict[str, Check] = {"store": ok, "redis": broken, "model": hangs}
    async with serve(add_ops_routes(web.Application(), checks, timeout=0.1)) as url:
        status, body = await get(f"{url}/readyz")
        assert await get(f"{url}/healthz") == (200, {"ok": True})  # liveness ignores readiness
    assert status == 503 and body["ready"] is False and body["draining"] is False
    assert body["checks"] == {
        "store": "ok",
        "redis": "RuntimeError: could not connect with [redacted]",
        "model": "timed out after 0.1s",
    }


async def test_draining_is_503() -> None:
    state = {"draining": False}
    async with serve(add_ops_routes(web.Application(), {"store": ok}, lambda: state["draining"])) as url:
        assert (await get(f"{url}/readyz"))[0] == 200
        state["draining"] = True
        assert await get(f"{url}/readyz") == (503, {"ready": False, "draining": True, "checks": {}})
        assert (await get(f"{url}/healthz"))[0] == 200


async def test_no_checks_is_ready() -> None:
    assert await check_all({}) == (True, {})


async def test_metrics_endpoint_parses_and_has_the_counters() -> None:
    metrics.event_in("slack", "command")
    metrics.rate_limited("conversation")
    async with serve(add_ops_routes(web.Application(), {})) as url:
        status, text = await get(f"{url}/metrics")
    assert status == 200
    families = {family.name: family for family in text_string_to_metric_families(text)}
    events = [s for s in families["advisor_events"].samples if s.labels == {"platform": "slack", "kind": "command"}]
    assert events and events[0].value >= 1
    limited = [s for s in families["advisor_rate_limited"].samples if s.labels == {"scope": "conversation"}]
    assert limited and limited[0].value >= 1


async def test_existing_healthz_is_kept() -> None:
    """The Slack web app already serves GET /healthz with the same answer; adding the routes must not clash."""

    async def slack_health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/healthz", slack_health)
    async with serve(add_ops_routes(app, {"store": ok})) as url:
        assert await get(f"{url}/healthz") == (200, {"ok": True})
        assert (await get(f"{url}/readyz"))[0] == 200


async def test_start_ops_server_serves_alone() -> None:
    runner = await start_ops_server("127.0.0.1", 0, {"store": ok})
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        assert await get(f"{url}/healthz") == (200, {"ok": True})
        assert (await get(f"{url}/readyz"))[0] == 200
        assert (await get(f"{url}/metrics"))[0] == 200
    finally:
        await runner.cleanup()


# -- concrete checks ----------------------------------------------------------


class Store:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    async def count(self) -> int:
        if self.error:
            raise self.error
        return 3


class Redis:
    def __init__(self, answer: bool) -> None:
        self.answer = answer

    async def ping(self) -> bool:
        return self.answer


async def test_store_and_redis_checks() -> None:
    checks = {
        "store": store_check(Store()),
        "store_down": store_check(Store(ConnectionError("qdrant at http://db:6333 refused"))),
        "redis": redis_check(Redis(True)),
        "redis_down": redis_check(Redis(False)),
    }
    ready, results = await check_all(checks)
    assert not ready
    assert results == {
        "store": "ok",
        "store_down": "ConnectionError: qdrant at http://db:6333 refused",
        "redis": "ok",
        "redis_down": "PING was not answered",
    }


def model_server(seen: list[str | None]) -> web.Application:
    async def models(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": {"message": "Incorrect API key provided"}}, status=401)
        return web.json_response({"object": "list", "data": [{"id": "gpt-4o-mini"}]})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    return app


async def test_model_check_200_is_ready_401_is_not() -> None:
    seen: list[str | None] = []
    async with serve(model_server(seen)) as url:
        good = await check_all({"model": model_check(f"{url}/v1/", KEY)})
        bad = await check_all({"model": model_check(f"{url}/v1", "sk-wrong-key-0123456789")})
        keyless = await check_all({"model": model_check(f"{url}/v1", None)})
    assert good == (True, {"model": "ok"})
    assert bad == (False, {"model": "the model server answered HTTP 401"})
    assert keyless[0] is False
    assert seen == [f"Bearer {KEY}", "Bearer sk-wrong-key-0123456789", None]


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_model_check_times_out_on_a_silent_server() -> None:
    async with silent_server() as url:
        ready, results = await check_all({"model": model_check(url, KEY, timeout=0.2)}, timeout=5)
        outer_ready, outer = await check_all({"model": model_check(url, KEY)}, timeout=0.2)
    assert (ready, results) == (False, {"model": "timed out"})  # the check's own 0.2 s, not check_all's 5 s
    assert (outer_ready, outer) == (False, {"model": "timed out after 0.2s"})


def test_standard_checks_omit_the_model_when_none_is_configured() -> None:
    assert set(standard_checks(store=Store(), redis=Redis(True))) == {"store", "redis"}
    assert set(standard_checks(store=Store(), model_api_key=KEY)) == {"store", "model"}
    assert set(standard_checks(model_base_url="http://localhost:11434/v1")) == {"model"}


# -- platform 429s ------------------------------------------------------------


def slack_server(statuses: list[int], calls: list[int]) -> web.Application:
    async def auth_test(_: web.Request) -> web.Response:
        status = statuses[min(len(calls), len(statuses) - 1)]
        calls.append(status)
        if status == 429:
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "0"})
        return web.json_response({"ok": True, "user_id": "UBOT", "team_id": "T1"})

    app = web.Application()
    app.router.add_post("/api/auth.test", auth_test)
    return app


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """slack_sdk sleeps Retry-After plus random() seconds; make it exactly Retry-After (0 here)."""
    monkeypatch.setattr(builtin_async_handlers.random, "random", lambda: 0.0)


@pytest.mark.usefixtures("no_jitter")
async def test_slack_counting_handler_counts_a_real_429_and_retries() -> None:
    calls: list[int] = []
    before = platform_429("slack")
    async with serve(slack_server([429, 200], calls)) as url:
        client = AsyncWebClient(
            token="xoxb-test", base_url=f"{url}/api/", retry_handlers=[CountingRateLimitHandler(max_retry_count=2)]
        )
        response = await client.auth_test()
    assert response["ok"] is True and calls == [429, 200]
    assert platform_429("slack") == before + 1


@pytest.mark.usefixtures("no_jitter")
async def test_slack_counting_handler_counts_the_last_429_when_retries_run_out() -> None:
    calls: list[int] = []
    before = platform_429("slack")
    async with serve(slack_server([429], calls)) as url:
        client = AsyncWebClient(
            token="xoxb-test", base_url=f"{url}/api/", retry_handlers=[CountingRateLimitHandler(max_retry_count=1)]
        )
        with pytest.raises(SlackApiError):
            await client.auth_test()
    assert calls == [429, 429] and platform_429("slack") == before + 2


@pytest.fixture
def discord_hooks() -> Iterator[Callable[[], float]]:
    counter = install_platform_429_hooks()
    assert install_platform_429_hooks() is counter  # idempotent: one handler per logger
    assert discord.http._log.handlers.count(counter) == 1
    yield lambda: platform_429("discord")
    uninstall_platform_429_hooks()


RETRYING = "We are being rate limited. %s %s responded with 429. Retrying in %.2f seconds."
ERRORING = "We are being rate limited. %s %s responded with 429. Timeout of %.2f was too long, erroring instead."


def test_discord_rate_limit_warning_is_counted(discord_hooks: Callable[[], float]) -> None:
    source = inspect.getsource(discord.http.HTTPClient.request)
    assert RETRYING in source and ERRORING.split(" %.2f")[0] in source  # the messages discord.py really logs
    assert discord.http._log.name == "discord.http"
    before = discord_hooks()
    url = "https://discord.com/api/v10/channels/1/messages"
    discord.http._log.warning(RETRYING, "POST", url, 0.25)
    discord.http._log.warning(ERRORING, "POST", url, 120.0)
    logging.getLogger("discord.webhook.async_").warning(
        "Webhook ID %s is rate limited. Retrying in %.2f seconds.", 1, 0.5
    )
    discord.http._log.warning("Global rate limit has been hit. Retrying in %.2f seconds.", 0.25)  # same 429 again
    discord.http._log.warning("something else entirely")
    assert discord_hooks() == before + 3


async def test_discord_client_429_from_a_fake_discord_is_counted(
    discord_hooks: Callable[[], float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real discord.py HTTP client receives a real 429 (with Via) and retries; its warning is counted."""
    async with FakeDiscord() as fake:
        fake.patch(monkeypatch)
        http = discord.http.HTTPClient(asyncio.get_running_loop())
        try:
            fake.fail_next("GET", "/users/@me", "rate_limited", retry_after=0.05)
            before = discord_hooks()
            await http.static_login(dp.BOT_TOKEN)
        finally:
            await http.close()
        assert [call["status"] for call in fake.calls_to("GET", "/users/@me")] == [429, 200]
    assert discord_hooks() == before + 1
