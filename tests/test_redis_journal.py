"""The work journal: answers in progress survive their process; lapsed ones are taken over once."""

from __future__ import annotations

import asyncio

from bot.state.journal_redis import RedisWorkJournal
from tests.harness.redis_server import ClientFactory

pytest_plugins = ["conftest_redis"]


async def test_live_work_is_not_taken_and_finished_work_is_gone(redis_clients: ClientFactory) -> None:
    mine, other = RedisWorkJournal(redis_clients(), 5.0), RedisWorkJournal(redis_clients(), 5.0)
    await mine.begin("C1:1.0", {"event": {"ts": "1.0"}})
    await mine.update("C1:1.0", {"event": {"ts": "1.0"}, "placeholder": "9.9"})
    assert await other.take_over() == []  # its lease is live
    assert await other.pending() == 1
    await mine.finish("C1:1.0")
    assert await other.pending() == 0 and await other.take_over() == []


async def test_a_lapsed_lease_is_taken_over_by_exactly_one_process(redis_clients: ClientFactory) -> None:
    dead = RedisWorkJournal(redis_clients(), 0.2)
    await dead.begin("C1:2.0", {"event": {"ts": "2.0"}})
    await dead.update("C1:2.0", {"event": {"ts": "2.0"}, "placeholder": "7.7"})
    await asyncio.sleep(0.3)  # the process died: nobody renews
    survivors = [RedisWorkJournal(redis_clients(), 5.0) for _ in range(5)]
    taken = await asyncio.gather(*(journal.take_over() for journal in survivors))
    winners = [found for found in taken if found]
    assert len(winners) == 1
    ((key, work),) = winners[0]
    assert key == "C1:2.0" and work["placeholder"] == "7.7"
    again = await asyncio.gather(*(journal.take_over() for journal in survivors))
    assert again == [[]] * 5  # now leased to the winner


async def test_renewal_keeps_long_work_from_being_taken(redis_clients: ClientFactory) -> None:
    worker, watcher = RedisWorkJournal(redis_clients(), 0.3), RedisWorkJournal(redis_clients(), 0.3)
    await worker.begin("C1:3.0", {"event": {"ts": "3.0"}})
    for _ in range(4):
        await asyncio.sleep(0.1)
        await worker.renew(["C1:3.0", "C1:gone"])  # an unknown key is ignored
        assert await watcher.take_over() == []
    assert await watcher.pending() == 1
