"""Rate limits and per-conversation turn-taking shared by every process, on Redis.

Same behaviour as `bot.state.limits_local`, but one bucket and one queue per key for all processes:
buckets run on the Redis server's clock (TIME), so processes on different machines agree.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio

from bot.state.redis_client import DEFAULT_PREFIX, RedisUnavailable, guard, guarded, raise_if_cancelled

log = logging.getLogger(__name__)

# KEYS: bucket; ARGV: rate per second, burst, cost -> seconds to wait (as text: Lua numbers become integers)
TAKE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = burst
if state[1] and state[2] then
  level = math.min(burst, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rate)
end
local wait = 0
if level >= cost then level = level - cost else wait = (cost - level) / rate end
local full_in_ms = math.ceil((burst - level) / rate * 1000)
if full_in_ms > 0 then
  redis.call('HSET', KEYS[1], 'level', string.format('%.17g', level), 'at', string.format('%.17g', now))
  redis.call('PEXPIRE', KEYS[1], full_in_ms)
else
  redis.call('DEL', KEYS[1])
end
return string.format('%.17g', wait)
"""


class RedisTokenBucket:
    """`TokenBucket.try_take` for all processes: one atomic script per call; a bucket's key expires once full."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        rate_per_minute: float,
        burst: float | None = None,
        prefix: str = DEFAULT_PREFIX,
        name: str = "user",
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.client = client
        self.rate = rate_per_minute
        self.burst = max(1.0, rate_per_minute) if burst is None else burst
        if self.burst <= 0:
            raise ValueError("burst must be positive")
        self.key_prefix = f"{prefix}bucket:{name}:"
        self._take = client.register_script(TAKE)

    @guarded
    async def try_take(self, key: str, cost: float = 1.0) -> float:
        """0.0 if `cost` tokens were taken, else the seconds until they could be (nothing taken)."""
        if not 0 < cost <= self.burst:
            raise ValueError(f"cost must be in (0, {self.burst}], not {cost}")
        args = [repr(self.rate / 60), repr(float(self.burst)), repr(float(cost))]
        return float(await self._take(keys=[self.key_prefix + key], args=args))


# The queue of one conversation is a sorted set token -> ticket (INCR), so the lowest ticket
# answers and the others follow in arrival order. Each token has a lease key, renewed while
# its holder waits or answers; a token whose lease is gone (its process died) is skipped.

# KEYS: queue, ticket, lease; ARGV: token, lease ms, queue ms
JOIN = """
local ticket = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], ticket, ARGV[1])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return ticket
"""

# KEYS: queue; ARGV: token, lease key prefix -> 1 my turn, 0 wait, -1 not in the queue any more
TURN = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return -1 end
while true do
  local head = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if head == ARGV[1] then return 1 end
  if redis.call('EXISTS', ARGV[2] .. head) == 1 then return 0 end
  redis.call('ZREM', KEYS[1], head)
end
"""

# KEYS: lease, queue, ticket; ARGV: token, lease ms, queue ms -> 0 when the token was dropped from the queue
RENEW = """
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return 1
"""

# KEYS: queue, ticket, lease; ARGV: token
LEAVE = """
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1], KEYS[2]) end
return 1
"""

# KEYS: queue; ARGV: lease key prefix -> how many tokens are alive (dead ones are removed)
LIVE = """
local live = 0
for _, token in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', ARGV[1] .. token) == 1 then live = live + 1 else redis.call('ZREM', KEYS[1], token) end
end
return live
"""


class RedisConversationLocks:
    """`ConversationLocks` across processes: `async with locks.hold(key):` waits its turn (FIFO), never interleaves.

    Waiters poll every `poll_seconds`. A holder or waiter renews its lease every third of
    `lease_seconds`; if its process dies, the conversation is free again within `lease_seconds`.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str = DEFAULT_PREFIX,
        lease_seconds: float = 120.0,
        poll_seconds: float = 0.05,
    ) -> None:
        if lease_seconds <= 0 or poll_seconds <= 0:
            raise ValueError("lease_seconds and poll_seconds must be positive")
        self.client = client
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.prefix = f"{prefix}turns:"
        self._lease_ms = max(1, int(lease_seconds * 1000))
        self._join = client.register_script(JOIN)
        self._turn = client.register_script(TURN)
        self._renew = client.register_script(RENEW)
        self._leave = client.register_script(LEAVE)
        self._live = client.register_script(LIVE)

    def _keys(self, key: str) -> tuple[str, str]:
        return f"{self.prefix}queue:{key}", f"{self.prefix}ticket:{key}"

    async def _enqueue(self, key: str, token: str) -> None:
        queue, ticket = self._keys(key)
        lease = self.prefix + "lease:" + token
        await self._join(keys=[queue, ticket, lease], args=[token, self._lease_ms, 2 * self._lease_ms])

    async def _wait_turn(self, key: str, token: str) -> None:
        queue, _ = self._keys(key)
        while True:
            state = await self._turn(keys=[queue], args=[token, self.prefix + "lease:"])
            raise_if_cancelled()
            if state == 1:
                return
            if state == -1:  # our lease lapsed (a stalled loop?) and we were skipped: queue again
                log.warning("conversation %s: lost our place in the queue, queueing again", key)
                await self._enqueue(key, token)
                raise_if_cancelled()
            await asyncio.sleep(self.poll_seconds)

    async def _keep_lease(self, key: str, token: str) -> None:
        queue, ticket = self._keys(key)
        lease = self.prefix + "lease:" + token
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            alive = True
            try:
                async with guard(self.client):
                    alive = await self._renew(
                        keys=[lease, queue, ticket], args=[token, self._lease_ms, 2 * self._lease_ms]
                    )
            except RedisUnavailable as error:
                log.warning("conversation %s: could not renew the lease: %s", key, error)
            raise_if_cancelled()
            if not alive:
                log.warning("conversation %s: the lease lapsed; another process may answer at the same time", key)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Raises `RedisUnavailable` if Redis cannot be reached to queue or wait."""
        token = uuid.uuid4().hex
        async with guard(self.client):
            await self._enqueue(key, token)
        renewal = asyncio.create_task(self._keep_lease(key, token))
        try:
            async with guard(self.client):
                await self._wait_turn(key, token)
            yield
        finally:
            renewal.cancel()
            await asyncio.wait([renewal])
            queue, ticket = self._keys(key)
            try:
                async with guard(self.client):
                    await self._leave(keys=[queue, ticket, self.prefix + "lease:" + token], args=[token])
            except RedisUnavailable as error:  # the lease expires on its own
                log.warning("conversation %s: could not leave the queue: %s", key, error)

    @guarded
    async def queued(self, key: str) -> int:
        """How many holders and waiters (in any process) this conversation has."""
        queue, _ = self._keys(key)
        return int(await self._live(keys=[queue], args=[self.prefix + "lease:"]))

    async def busy(self, key: str) -> bool:
        """Whether an answer in this conversation is under way or waiting, in any process."""
        return await self.queued(key) > 0
