"""Shared token buckets and conversation turn-taking on a real Redis, with clients standing for processes."""

from __future__ import annotations

import asyncio

import pytest

from bot.state.redis_client import RedisUnavailable, close, connect
from bot.state.limits_redis import RedisConversationLocks, RedisTokenBucket
from tests.harness.loopback import free_port
from tests.harness.redis_server import ClientFactory, RedisServer, holder_process

pytest_plugins = ["conftest_redis"]  # the redis_server and redis_clients fixtures

# Token buckets run on the server's clock, so the waits are checked within bounds that only
# assume two calls in a row take less than a second.


async def test_the_burst_is_shared_by_every_process(redis_clients: ClientFactory) -> None:
    one, two = (RedisTokenBucket(redis_clients(), 0.6, burst=3) for _ in range(2))  # a token every 100 s
    assert [await one.try_take("u1"), await two.try_take("u1"), await one.try_take("u1")] == [0.0, 0.0, 0.0]
    wait = await two.try_take("u1")
    assert 99.0 < wait <= 100.0
    again = await one.try_take("u1")  # a refusal takes nothing: still about one token away
    assert 99.0 < again <= wait
    assert await two.try_take("u2") == 0.0


async def test_cost_keys_and_names_are_independent(redis_clients: ClientFactory) -> None:
    client = redis_clients()
    users = RedisTokenBucket(client, 0.6, burst=4)
    channels = RedisTokenBucket(client, 0.6, burst=4, name="channel")
    assert await users.try_take("k", cost=3) == 0.0
    assert 99.0 < await users.try_take("k", cost=2) <= 100.0
    assert await users.try_take("k", cost=1) == 0.0
    assert await channels.try_take("k", cost=4) == 0.0


async def test_tokens_refill_and_a_full_bucket_leaves_no_key(redis_clients: ClientFactory) -> None:
    client = redis_clients()
    bucket = RedisTokenBucket(client, 600, burst=1)  # a token every 0.1 s
    key = bucket.key_prefix + "u1"
    assert await bucket.try_take("u1") == 0.0
    assert 0 < await client.pttl(key) <= 100
    wait = await bucket.try_take("u1")
    assert 0.0 < wait <= 0.1
    await asyncio.sleep(wait + 0.05)
    assert await bucket.try_take("u1") == 0.0
    await asyncio.sleep(0.15)
    assert await client.exists(key) == 0  # full again, so forgotten
    assert await bucket.try_take("u1") == 0.0


@pytest.mark.parametrize(("rate", "burst", "retry_after"), [(6, 6, 10.0), (0.5, 1, 120.0)])
async def test_default_burst_is_the_rate_but_at_least_one(
    redis_clients: ClientFactory, rate: float, burst: int, retry_after: float
) -> None:
    bucket = RedisTokenBucket(redis_clients(), rate)
    assert [await bucket.try_take("u1") for _ in range(burst)] == [0.0] * burst
    assert retry_after - 1 < await bucket.try_take("u1") <= retry_after


async def test_bad_costs_and_rates_are_refused_before_any_call() -> None:
    client = connect(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens: a call would fail differently
    bucket = RedisTokenBucket(client, 60, burst=4)
    for cost in (0, -1, 4.5):
        with pytest.raises(ValueError, match="cost"):
            await bucket.try_take("u1", cost=cost)
    with pytest.raises(RedisUnavailable):
        await bucket.try_take("u1")
    for rate, burst in ((0, None), (-1, None), (60, 0)):
        with pytest.raises(ValueError):
            RedisTokenBucket(client, rate, burst=burst)
    await close(client)


# Conversation locks.


async def test_holders_in_two_processes_never_overlap(redis_clients: ClientFactory) -> None:
    locks = [RedisConversationLocks(redis_clients(), poll_seconds=0.01) for _ in range(2)]
    events: list[tuple[str, int]] = []

    async def answer(n: int) -> None:
        async with locks[n % 2].hold("c1"):
            events.append(("enter", n))
            await asyncio.sleep(0.01)
            events.append(("exit", n))

    await asyncio.gather(*(answer(n) for n in range(8)))
    assert len(events) == 16
    for i in range(0, 16, 2):
        assert events[i][0] == "enter" and events[i + 1] == ("exit", events[i][1])
    assert not await locks[0].busy("c1")


async def test_other_conversations_are_not_held_up(redis_clients: ClientFactory) -> None:
    one, two = RedisConversationLocks(redis_clients()), RedisConversationLocks(redis_clients())
    async with one.hold("c1"):
        assert await two.busy("c1") and not await two.busy("c2")
        async with asyncio.timeout(10):
            async with two.hold("c2"):
                assert await one.queued("c2") == 1


async def queued_reaches(locks: RedisConversationLocks, key: str, count: int) -> None:
    """Wait until `count` holders and waiters are queued on `key` (a test step, not a timing check)."""
    async with asyncio.timeout(10):
        while await locks.queued(key) != count:
            await asyncio.sleep(0.01)


async def test_waiters_go_in_arrival_order_across_processes(redis_clients: ClientFactory) -> None:
    locks = [RedisConversationLocks(redis_clients(), poll_seconds=0.01) for _ in range(3)]
    order: list[int] = []
    entered, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with locks[0].hold("c1"):
            order.append(0)
            entered.set()
            await release.wait()

    async def waiter(n: int) -> None:
        async with locks[n % 3].hold("c1"):
            order.append(n)

    tasks = [asyncio.create_task(first())]
    await entered.wait()
    for n in range(1, 6):
        tasks.append(asyncio.create_task(waiter(n)))
        await queued_reaches(locks[0], "c1", n + 1)
    assert order == [0]
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4, 5]
    assert not await locks[1].busy("c1")


async def test_a_cancelled_waiter_leaves_the_queue(redis_clients: ClientFactory) -> None:
    one, two = RedisConversationLocks(redis_clients()), RedisConversationLocks(redis_clients())
    async with one.hold("c1"):
        waiting = asyncio.create_task(two.hold("c1").__aenter__())
        await queued_reaches(one, "c1", 2)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await queued_reaches(one, "c1", 1)
    assert not await one.busy("c1")


async def test_a_crashed_holder_stops_blocking_once_its_lease_expires(
    redis_server: RedisServer, redis_clients: ClientFactory
) -> None:
    locks = RedisConversationLocks(redis_clients(), lease_seconds=0.6, poll_seconds=0.02)
    with holder_process(redis_server.url, "conversation", "c1", lease_seconds=0.6) as holder:
        assert await locks.busy("c1")
        with pytest.raises(TimeoutError):  # alive and renewing past its lease: nobody else gets in
            async with asyncio.timeout(1.0):
                async with locks.hold("c1"):
                    pass
        holder.kill()
        holder.wait(10)
        async with asyncio.timeout(10):
            async with locks.hold("c1"):
                assert await locks.queued("c1") == 1
    assert not await locks.busy("c1")


async def test_hold_reports_an_unreachable_server() -> None:
    client = connect(f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    locks = RedisConversationLocks(client)
    with pytest.raises(RedisUnavailable) as caught:
        async with locks.hold("c1"):
            pass
    assert "s3cret" not in str(caught.value)
    with pytest.raises(RedisUnavailable):
        await locks.busy("c1")
    await close(client)


async def test_cancelled_waiters_and_holders_always_stop(redis_clients: ClientFactory) -> None:
    """Cancelled at many different moments (some land as a Redis call completes), every task still ends."""
    one = RedisConversationLocks(redis_clients(), poll_seconds=0.001)
    two = RedisConversationLocks(redis_clients(), lease_seconds=0.006, poll_seconds=0.001)  # renews every 2 ms

    async def wait_for_turn() -> None:
        async with one.hold("c1"):
            raise AssertionError("a waiter got in while the conversation was held")

    async def answer_forever(entered: asyncio.Event) -> None:
        async with two.hold("c2"):
            entered.set()
            await asyncio.Event().wait()

    async with one.hold("c1"):
        for n in range(30):
            waiter = asyncio.create_task(wait_for_turn())
            entered = asyncio.Event()
            holder = asyncio.create_task(answer_forever(entered))
            await entered.wait()
            await asyncio.sleep(n * 0.0003)
            waiter.cancel()
            holder.cancel()
            async with asyncio.timeout(5):
                await asyncio.wait([waiter, holder])
            assert waiter.cancelled() and holder.cancelled()
        assert await one.queued("c1") == 1
    assert not await one.busy("c1") and not await two.busy("c2")
