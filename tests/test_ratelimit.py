"""Token buckets on a fake clock, and one answer at a time per conversation."""

from __future__ import annotations

import asyncio

import pytest

from bot.state.limits_local import ConversationLocks, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_tokens_refill_continuously_and_retry_after_is_exact() -> None:
    clock = Clock()
    bucket = TokenBucket(30, burst=2, clock=clock)  # one token every 2 s
    assert bucket.try_take("u1") == 0.0
    assert bucket.try_take("u1") == 0.0
    assert bucket.try_take("u1") == 2.0
    clock.now += 1.0
    assert bucket.try_take("u1") == 1.0  # half a token back; a refusal takes nothing
    clock.now += 0.5
    assert bucket.try_take("u1") == 0.5
    clock.now += 0.5
    assert bucket.try_take("u1") == 0.0
    assert bucket.try_take("u1") == 2.0


def test_refill_stops_at_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(60, burst=3, clock=clock)
    for _ in range(3):
        assert bucket.try_take("u1") == 0.0
    clock.now += 3600
    assert [bucket.try_take("u1") for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(("rate", "burst", "retry_after"), [(6, 6, 10.0), (0.5, 1, 120.0)])
def test_default_burst_is_the_rate_but_at_least_one(rate: float, burst: int, retry_after: float) -> None:
    bucket = TokenBucket(rate, clock=Clock())
    assert [bucket.try_take("u1") for _ in range(burst)] == [0.0] * burst
    assert bucket.try_take("u1") == retry_after


def test_cost_and_keys_are_independent() -> None:
    clock = Clock()
    bucket = TokenBucket(60, burst=4, clock=clock)
    assert bucket.try_take("u1", cost=3) == 0.0
    assert bucket.try_take("u1", cost=2) == 1.0
    assert bucket.try_take("u2", cost=4) == 0.0
    clock.now += 1.0
    assert bucket.try_take("u1", cost=2) == 0.0
    with pytest.raises(ValueError):
        bucket.try_take("u1", cost=5)
    with pytest.raises(ValueError):
        bucket.try_take("u1", cost=0)


def test_a_changed_rate_applies_at_once() -> None:
    clock = Clock()
    bucket = TokenBucket(1, clock=clock)
    assert bucket.try_take("u1") == 0.0
    bucket.rate = 120
    assert bucket.try_take("u1") == 0.5


def test_invalid_limits_are_refused() -> None:
    for kwargs in ({"rate_per_minute": 0}, {"rate_per_minute": 1, "burst": 0}, {"rate_per_minute": 1, "max_keys": 0}):
        with pytest.raises(ValueError):
            TokenBucket(**kwargs)


def test_at_most_max_keys_buckets_and_full_ones_go_first() -> None:
    clock = Clock()
    bucket = TokenBucket(1, max_keys=3, clock=clock)  # burst 1, a minute to refill
    for key in "abcd":
        assert bucket.try_take(key) == 0.0
        assert len(bucket) <= 3
    assert bucket.try_take("a") == 0.0  # the oldest bucket was dropped: "a" starts full again
    assert bucket.try_take("d") == 60.0  # the newest were kept
    assert len(bucket) == 3
    clock.now += 60
    bucket.try_take("e")
    assert len(bucket) == 1  # every other bucket was full again, so as good as absent


async def test_one_key_runs_one_holder_at_a_time_in_arrival_order() -> None:
    locks = ConversationLocks()
    log: list[str] = []

    async def answer(name: str) -> None:
        async with locks.hold("c1"):
            log.append(f"{name} start")
            assert locks.busy("c1")
            for _ in range(3):
                await asyncio.sleep(0)
            log.append(f"{name} end")

    await asyncio.gather(*(answer(name) for name in "abcd"))
    assert log == [f"{name} {step}" for name in "abcd" for step in ("start", "end")]


async def test_different_keys_run_concurrently() -> None:
    locks = ConversationLocks()
    inside = {"c1": asyncio.Event(), "c2": asyncio.Event()}

    async def answer(key: str, other: str) -> None:
        async with locks.hold(key):
            inside[key].set()
            await asyncio.wait_for(inside[other].wait(), timeout=1.0)

    await asyncio.gather(answer("c1", "c2"), answer("c2", "c1"))


async def test_lock_entries_vanish_after_use_error_or_cancel() -> None:
    locks = ConversationLocks()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("c1"):
            await release.wait()

    async def failing() -> None:
        async with locks.hold("c2"):
            raise RuntimeError("boom")

    first = asyncio.create_task(holder())
    waiter = asyncio.create_task(holder())
    await asyncio.sleep(0)
    assert locks.busy("c1") and len(locks) == 1
    waiter.cancel()
    with pytest.raises(RuntimeError):
        await failing()
    release.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not locks.busy("c1") and not locks.busy("c2") and len(locks) == 0
    async with locks.hold("c1"):  # and the key works again
        assert locks.busy("c1")
