"""Serving on loopback: free ports, an aiohttp app on a free port, and the base of the fake servers."""

from __future__ import annotations

import socket
from types import TracebackType
from typing import Any

from aiohttp import web


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def serve(app: web.Application, **runner_options: Any) -> tuple[web.AppRunner, int]:
    """`app` served on 127.0.0.1 at a free port: (its runner, to clean up; the port)."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


class LoopbackServer:
    """What every fake server shares: `port = await self._serve(app)` in `__aenter__`; leaving the
    context (or `await self._stop()` in a subclass's own `__aexit__`) closes it."""

    _runner: web.AppRunner | None = None

    async def _serve(self, app: web.Application, *, handler_cancellation: bool = True) -> int:
        # handler_cancellation: a client that gives up (timeout) stops its handler, e.g. a "slow" fault.
        self._runner, port = await serve(
            app, access_log=None, shutdown_timeout=1.0, handler_cancellation=handler_cancellation
        )
        return port

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()
