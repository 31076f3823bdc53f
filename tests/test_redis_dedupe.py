"""Once across processes: event dedupe and the reindex lock, on a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from bot.state.redis_client import RedisUnavailable, close, connect
from bot.state.dedupe_redis import RedisDeduper
from bot.state.locks_redis import LockHeld, RedisReindexLock
from tests.harness.loopback import free_port
from tests.harness.redis_server import ClientFactory, RedisServer, holder_process

pytest_plugins = ["conftest_redis"]  # the redis_server and redis_clients fixtures

# Dedupe.


async def test_the_first_claim_wins_in_every_process(redis_clients: ClientFactory) -> None:
    one, two = RedisDeduper(redis_clients()), RedisDeduper(redis_clients())
    assert await one.claim("slack:Ev1")
    assert not await two.claim("slack:Ev1") and not await one.claim("slack:Ev1")
    assert await two.claim("slack:Ev2")


async def test_fifty_concurrent_deliveries_on_five_processes_are_claimed_once(redis_clients: ClientFactory) -> None:
    dedupers = [RedisDeduper(redis_clients()) for _ in range(5)]
    claims = await asyncio.gather(*(dedupers[n % 5].claim("discord:123") for n in range(50)))
    assert claims.count(True) == 1


async def test_release_lets_a_retry_through_anywhere(redis_clients: ClientFactory) -> None:
    one, two = RedisDeduper(redis_clients()), RedisDeduper(redis_clients())
    assert await one.claim("e1")
    await one.release("e1")
    assert await two.claim("e1")
    assert not await one.claim("e1")
    await two.release("never-claimed")


async def test_a_claim_is_forgotten_after_the_ttl(redis_clients: ClientFactory) -> None:
    deduper = RedisDeduper(redis_clients(), ttl=0.2)
    assert await deduper.claim("e1")
    assert not await deduper.claim("e1")
    await asyncio.sleep(0.35)
    assert await deduper.claim("e1")
    with pytest.raises(ValueError):
        RedisDeduper(redis_clients(), ttl=0)


async def test_an_unreachable_server_raises_redis_unavailable() -> None:
    port = free_port()
    client = connect(f"redis://user:s3cret@127.0.0.1:{port}/0")
    deduper = RedisDeduper(client)
    for call in (deduper.claim("e1"), deduper.release("e1")):
        with pytest.raises(RedisUnavailable, match=f"127.0.0.1:{port}") as caught:
            await call
        assert "s3cret" not in str(caught.value)
    await close(client)


# The reindex lock.


async def test_one_reindex_at_a_time_and_only_the_owner_releases(redis_clients: ClientFactory) -> None:
    one, two = RedisReindexLock(redis_clients()), RedisReindexLock(redis_clients())
    assert not await one.locked()
    assert await one.acquire() and one.held
    assert not await one.acquire()  # not re-entrant
    assert not await two.acquire() and not two.held
    assert await two.locked()
    await two.release()  # not the owner: nothing happens
    assert await one.locked() and not await two.acquire()
    await one.release()
    assert not one.held and not await two.locked()
    assert await two.acquire()
    await two.release()


async def test_an_expired_owner_cannot_release_the_next_owners_lock(redis_clients: ClientFactory) -> None:
    client = redis_clients()
    one, two = RedisReindexLock(client), RedisReindexLock(redis_clients())
    assert await one.acquire()
    await client.delete(one.key)  # as if one's lease had lapsed while its process was stalled
    assert await two.acquire()
    await one.release()
    assert await two.locked() and two.held
    await two.release()


async def test_the_lease_is_renewed_while_held(redis_clients: ClientFactory) -> None:
    one, two = RedisReindexLock(redis_clients(), lease_seconds=0.3), RedisReindexLock(redis_clients())
    assert await one.acquire()
    await asyncio.sleep(0.8)  # well past the lease: only renewals keep it
    assert not await two.acquire()
    await one.release()
    assert await two.acquire()
    await two.release()


async def test_hold_refuses_when_taken_and_releases_on_exit(redis_clients: ClientFactory) -> None:
    one, two = RedisReindexLock(redis_clients()), RedisReindexLock(redis_clients())
    with pytest.raises(RuntimeError, match="boom"):
        async with one.hold():
            with pytest.raises(LockHeld, match="reindex"):
                async with two.hold():
                    pass
            raise RuntimeError("boom")
    assert not await two.locked()
    other_name = RedisReindexLock(redis_clients(), name="backup")
    async with one.hold(), other_name.hold():
        assert await two.locked()


async def test_the_lock_frees_itself_when_its_owner_dies(
    redis_server: RedisServer, redis_clients: ClientFactory
) -> None:
    lock = RedisReindexLock(redis_clients(), lease_seconds=0.6)
    with holder_process(redis_server.url, "reindex", "reindex", lease_seconds=0.6) as owner:
        assert not await lock.acquire()
        owner.kill()
        owner.wait(10)
        async with asyncio.timeout(10):
            while not await lock.acquire():
                await asyncio.sleep(0.05)
    await lock.release()
