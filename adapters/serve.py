"""The long-running processes: the `web` process (Slack HTTP, Discord HTTP interactions) and the
`worker` (Discord gateway, or Slack Socket Mode), each with health, readiness and metrics, and a
graceful stop on SIGTERM: take no new events, let answers in flight finish (up to
ADVISOR_SHUTDOWN_GRACE_SECONDS), then close connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from adapters.ops_http import add_ops_routes, install_platform_429_hooks, start_ops_server
from bot.ops.inflight import InFlight
from bot.ops.readiness import standard_checks
from config.settings import Settings

log = logging.getLogger(__name__)
Check = Callable[[], Awaitable[None]]


def readiness_checks(settings: Settings, services: Any) -> Mapping[str, Check]:
    """Qdrant (the store), Redis when configured, and the model server when one is configured."""
    key = settings.openai.api_key.get_secret_value() if settings.openai.api_key else None
    model_url = (settings.openai.base_url or "https://api.openai.com/v1") if settings.openai.configured else None
    return standard_checks(
        store=services.stack.store,
        redis=services.redis,
        model_base_url=model_url,
        model_api_key=key,
        model_name=settings.openai.chat_model,
    )


def stop_signal() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (the platform's stop, or Ctrl-C)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def drain_all(trackers: Sequence[InFlight], grace: float) -> None:
    """Stop taking work everywhere, then wait for what is in flight (all within `grace` seconds)."""
    for tracker in trackers:
        tracker.draining = True
    results = await asyncio.gather(*(tracker.drain(grace) for tracker in trackers))
    left = sum(tracker.count for tracker in trackers)
    if all(results):
        log.info("shutdown: every answer in flight finished")
    else:
        log.warning("shutdown: %d answer(s) still in flight after %.0f s; stopping anyway", left, grace)


async def run_web(
    settings: Settings, services: Any, port: int, reuse_port: bool = False, stop: asyncio.Event | None = None
) -> int:
    """Slack Events API at /slack/events (when Slack is configured), Discord HTTP interactions at
    /discord/interactions (when DISCORD_PUBLIC_KEY is set), the advice console under /admin (when
    ADVISOR_ADMIN_TOKEN is set), plus /healthz, /readyz and /metrics."""
    stop = stop or stop_signal()
    app = web.Application(client_max_size=1024 * 1024)
    trackers: list[InFlight] = []
    closers: list[Callable[[], Awaitable[None]]] = []
    background: list[asyncio.Task[None]] = []
    mounted: list[str] = []
    if settings.slack.bot_token and settings.slack.signing_secret:
        from adapters.slack.app import SlackAdapter

        slack = SlackAdapter(
            services.engine,
            services.admin,
            settings,
            gate=services.redis_gate(),
            **services.adapter_state("slack"),
        )
        slack.add_routes(app)
        background.append(asyncio.create_task(slack.recover()))
        trackers.append(slack.inflight)
        mounted.append("POST /slack/events")
    if settings.discord.public_key and settings.discord.application_id:
        from adapters.discord.interactions import DiscordInteractions

        interactions = DiscordInteractions(services.engine, services.admin, settings)
        interactions.add_routes(app)
        # interactions keep being taken while draining (Discord does not redeliver them); their
        # answers in flight are awaited with the rest
        closers.append(lambda: _drain_then_close(interactions, settings.core.shutdown_grace_seconds))
        mounted.append("POST /discord/interactions")
    checks = readiness_checks(settings, services)
    if settings.console.token is not None:
        from adapters.admin_console import mount

        if mount(app, settings, services.admin, services.stack.retriever, checks, services.engine.memory) is not None:
            mounted.append("advice console at /admin")
    if not mounted:
        raise RuntimeError(
            "nothing to serve: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET, "
            "or DISCORD_PUBLIC_KEY and DISCORD_APPLICATION_ID, or ADVISOR_ADMIN_TOKEN for the advice console"
        )
    add_ops_routes(app, checks, draining=lambda: any(t.draining for t in trackers))
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port, reuse_port=reuse_port).start()
    log.info("web process %d on port %d: %s (%s mode)", os.getpid(), port, ", ".join(mounted), services.engine.mode)
    await stop.wait()
    log.info("SIGTERM: draining (new events get 503 and are retried by the platform)")
    await drain_all(trackers, settings.core.shutdown_grace_seconds)
    for task in background:
        task.cancel()
    for close in closers:
        await close()
    await runner.cleanup()
    return 0


async def _drain_then_close(interactions: Any, grace: float) -> None:
    await interactions.drain(grace)
    await interactions.close()


async def run_socket_mode(settings: Settings, services: Any, stop: asyncio.Event | None = None) -> int:
    """Slack over Socket Mode: no public URL; ops routes on ADVISOR_METRICS_PORT when set."""
    from adapters.slack.app import SlackAdapter

    stop = stop or stop_signal()
    adapter = SlackAdapter(
        services.engine,
        services.admin,
        settings,
        **services.adapter_state("slack"),
    )
    recovery = asyncio.create_task(adapter.recover())
    handler = adapter.socket_mode(settings.slack.app_token.get_secret_value())  # type: ignore[union-attr]
    ops = await _ops_server(settings, services, [adapter.inflight])
    await handler.connect_async()
    log.info("Slack Socket Mode connected (%s mode)", services.engine.mode)
    await stop.wait()
    await handler.disconnect_async()  # no new events; Slack redelivers unacknowledged ones to another connection
    await drain_all([adapter.inflight], settings.core.shutdown_grace_seconds)
    recovery.cancel()
    await handler.close_async()
    if ops is not None:
        await ops.cleanup()
    return 0


async def run_discord_gateway(settings: Settings, services: Any, stop: asyncio.Event | None = None) -> Any:
    """The Discord gateway (sharded as Discord recommends); returns the adapter's client task result."""
    from adapters.discord.gateway import DiscordAdapter

    stop = stop or stop_signal()
    install_platform_429_hooks()
    adapter = DiscordAdapter(
        services.engine,
        services.admin,
        settings,
        **services.adapter_state("discord"),
    )
    ops = await _ops_server(settings, services, [adapter.inflight])
    client_task = asyncio.create_task(adapter.client.start(settings.discord.token.get_secret_value()))  # type: ignore[union-attr]
    recovery = asyncio.create_task(adapter.recover())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({client_task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if client_task.done():
            return client_task.result()  # a login or intents failure: raised to the caller
        log.info("SIGTERM: finishing answers in flight before leaving the gateway")
        await drain_all([adapter.inflight], settings.core.shutdown_grace_seconds)
        return None
    finally:
        stopping.cancel()
        recovery.cancel()
        if not adapter.client.is_closed():
            await adapter.client.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await client_task
        if ops is not None:
            await ops.cleanup()


async def _ops_server(settings: Settings, services: Any, trackers: list[InFlight]) -> web.AppRunner | None:
    port = settings.core.metrics_port
    if port is None:
        return None
    runner = await start_ops_server(
        "0.0.0.0", port, readiness_checks(settings, services), draining=lambda: any(t.draining for t in trackers)
    )
    log.info("health, readiness and metrics on port %d", port)
    return runner


def run_workers(argv: Sequence[str], workers: int) -> int:
    """`workers` copies of this command (each binds the port with SO_REUSEPORT, all report in one
    /metrics); SIGTERM is passed on to each, and the exit code is the worst of theirs."""
    command = [sys.executable, "-m", "bot.cli", *argv]
    env = dict(os.environ)
    # one /metrics for all workers: prometheus_client's multiprocess mode, in a fresh directory
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="advisor-metrics-"))
    children: list[subprocess.Popen[bytes]] = []
    stopping: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)  # before the children exist, so none is left behind
    signal.signal(signal.SIGINT, forward)
    for _ in range(workers):
        if stopping:
            break
        children.append(subprocess.Popen(command, env=env))
    codes = [child.wait() for child in children]
    return max(codes, key=abs, default=0)
