"""The Redis connection shared by the multi-process versions of memory, limits, dedupe and locks.

Every Redis failure that means "the server is not there" (refused, reset, timed out, still
loading, bad credentials) comes out as `RedisUnavailable`, whose message names host:port and
never the password, so callers handle one exception and logs stay free of secrets.

Keys live under one prefix (`advisor:` by default). Scripts build some keys from data
(conversation, author), so a single Redis server (or primary) is supported, not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from bot.ports import StateUnavailable

DEFAULT_PREFIX = "advisor:"
TIMEOUT_SECONDS = 2.0
RETRIES = 2  # after the first attempt; refused connections fail in well under a second in total
HEALTH_CHECK_SECONDS = 15
MAX_CONNECTIONS = 50
POOL_WAIT_SECONDS = 10.0

# Connection-level failures only: a ResponseError (wrong type, bad script) is a bug, not an outage.
UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError, TimeoutError)

P = ParamSpec("P")
R = TypeVar("R")


class RedisUnavailable(StateUnavailable):
    """Redis could not be reached or did not answer; the message is safe to log (no password)."""

    def __init__(self, where: str, reason: str = "") -> None:
        self.where = where
        detail = f": {reason}" if reason else ""
        super().__init__(f"Redis at {where} is unavailable{detail} (check REDIS_URL and that the server is running)")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for logs and `config check`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def connect(url: str, timeout: float = TIMEOUT_SECONDS, max_connections: int = MAX_CONNECTIONS) -> redis.asyncio.Redis:
    """A client for `url` (nothing is contacted yet; see `ping`). Replies are decoded as UTF-8 text.

    Commands are retried twice on connection errors, with backoff, reconnecting each time, so
    a restarted server is picked up without restarting the bot. At most `max_connections` are
    open; a burst of calls waits for a free one instead of failing. The key prefix is given to
    each Redis* class (`prefix=`, default `DEFAULT_PREFIX`), so one server can hold several bots.
    """
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_SECONDS,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=HEALTH_CHECK_SECONDS,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    )
    return redis.asyncio.Redis.from_pool(pool)  # the client owns the pool: closing it closes the pool


def where(client: Any) -> str:
    """host:port (or the socket path) of a client, without credentials."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    host = str(kwargs.get("host", "localhost"))
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{kwargs.get('port', 6379)}"


def _reason(client: Any, error: BaseException) -> str:
    text = str(error) or type(error).__name__
    password = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}).get("password")
    return text.replace(password, "***") if password else text


@asynccontextmanager
async def guard(client: Any) -> AsyncIterator[None]:
    """Turn connection errors and timeouts raised inside the block into `RedisUnavailable`."""
    try:
        yield
    except UNAVAILABLE as error:
        raise RedisUnavailable(where(client), _reason(client, error)) from None


def guarded(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """`guard` around an async method of an object that has a `client` attribute."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        async with guard(args[0].client):  # type: ignore[attr-defined]
            return await method(*args, **kwargs)

    return wrapper


def raise_if_cancelled() -> None:
    """Honour a cancellation that a Redis call swallowed; loops that poll Redis call this after each call.

    redis-py writes under `asyncio.wait_for`, which in Python 3.11 drops a cancellation that
    arrives just as the write completes (fixed in 3.12); the task is still marked as cancelling.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def ping(client: redis.asyncio.Redis) -> None:
    """Raise `RedisUnavailable` unless the server answers."""
    async with guard(client):
        await client.ping()


async def close(client: redis.asyncio.Redis) -> None:
    """Close the client and its pool (redis-py 5.0.0 has `close`, later versions `aclose`)."""
    closer = getattr(client, "aclose", None) or client.close
    await closer()


def text(value: Any) -> str:
    """A reply as str, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else str(value)
