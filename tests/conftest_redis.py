"""Fixtures for the Redis tests: one real server per test module, flushed before each test.

Test modules load them with `pytest_plugins = ["conftest_redis"]` (a module-level line); tests/conftest.py
could carry that line instead, for every module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio

from bot.state.redis_client import close, connect
from tests.harness.redis_server import ClientFactory, RedisServer, running_redis


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
async def redis_clients(redis_server: RedisServer) -> AsyncIterator[ClientFactory]:
    """Makes clients of an empty server; each client stands for one bot process."""
    redis_server.flush()
    made: list[redis.asyncio.Redis] = []

    def make() -> redis.asyncio.Redis:
        made.append(connect(redis_server.url))
        return made[-1]

    yield make
    for client in made:
        await close(client)
