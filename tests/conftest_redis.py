"""Fixtures for the Redis tests: one real server per test module, flushed before each test.

Test modules load them with `pytest_plugins = ["conftest_redis"]` (a module-level line); tests/conftest.py
could carry that line instead, for every module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio

from bot.state.redis_client import close, connect
from bot.wiring import SharedState, build_shared
from config.settings import load_settings
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


@pytest.fixture
async def shared(redis_server: RedisServer, setenv: Callable[..., None]) -> AsyncIterator[Callable[[], Any]]:
    """Redis state for one process per call (REDIS_URL on the test's server), closed at the end."""
    redis_server.flush()
    setenv(REDIS_URL=redis_server.url, ADVISOR_MEMORY_WORK_LEASE_SECONDS="1", ADVISOR_SAFETY_MODERATION="false")
    made: list[SharedState] = []

    async def make() -> SharedState:
        state = await build_shared(load_settings(None))
        assert state is not None
        made.append(state)
        return state

    yield make
    for state in made:
        await state.close()
