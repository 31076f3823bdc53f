"""Conversation memory on Redis: the same methods and results as `SqliteMemory`, shared by every process.

Layout under `{prefix}mem:` (a turn's member is its id zero-padded to 20 digits):
  next_id                 counter (INCR): ids are unique, increasing, never reused
  turn:{member}           hash: conversation, role, content, created_at, tokens, meta (JSON), feedback, author
  conv:{conversation}     set of the conversation's members
  times                   sorted set member -> created_at, for retention
  convs                   set of conversations with at least one turn
  author:{author}         hash conversation -> how many user turns that author has there (for /forget)

Every change is one Lua script, so the indexes never disagree with the turns. A new turn gets
its id first and is then written idempotently, so a command retried after a lost reply
cannot store it twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio

from bot.state.memory import ROLES, Turn, split_to_budget
from bot.state.redis_client import DEFAULT_PREFIX, close, guarded, text
from bot.tokens import estimate_tokens

PURGE_BATCH = 500

# delete_turn(prefix, member, only_in): removes one turn and its index entries; 1 if it existed.
DELETE_TURN = """
local function delete_turn(p, member, only_in)
  local key = p .. 'turn:' .. member
  local fields = redis.call('HMGET', key, 'conversation', 'role', 'author')
  local conv = fields[1]
  if not conv then
    redis.call('ZREM', p .. 'times', member)
    return 0
  end
  if only_in and conv ~= only_in then return 0 end
  redis.call('DEL', key)
  redis.call('ZREM', p .. 'times', member)
  local ckey = p .. 'conv:' .. conv
  redis.call('SREM', ckey, member)
  if redis.call('SCARD', ckey) == 0 then redis.call('SREM', p .. 'convs', conv) end
  if fields[2] == 'user' and fields[3] then
    local akey = p .. 'author:' .. fields[3]
    if redis.call('HINCRBY', akey, conv, -1) <= 0 then redis.call('HDEL', akey, conv) end
  end
  return 1
end
"""


def with_delete_turn(body: str) -> str:
    return DELETE_TURN + body


# ARGV: prefix, member, conversation, role, content, created_at, tokens, meta, author ('' for none)
ADD = """
local p, member, conv = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'turn:' .. member
redis.call('HSET', key, 'conversation', conv, 'role', ARGV[4], 'content', ARGV[5], 'created_at', ARGV[6],
           'tokens', ARGV[7], 'meta', ARGV[8])
if redis.call('SADD', p .. 'conv:' .. conv, member) == 1 and ARGV[9] ~= '' then
  redis.call('HSET', key, 'author', ARGV[9])
  redis.call('HINCRBY', p .. 'author:' .. ARGV[9], conv, 1)
end
redis.call('ZADD', p .. 'times', ARGV[6], member)
redis.call('SADD', p .. 'convs', conv)
return 1
"""

# ARGV: prefix, conversation -> flat list of each turn's HGETALL
HISTORY = """
local p = ARGV[1]
local out = {}
for _, member in ipairs(redis.call('SMEMBERS', p .. 'conv:' .. ARGV[2])) do
  local fields = redis.call('HGETALL', p .. 'turn:' .. member)
  if #fields > 0 then
    table.insert(fields, 'member')
    table.insert(fields, member)
    out[#out + 1] = fields
  end
end
return out
"""

# ARGV: prefix, conversation, members...
DROP = with_delete_turn("""
local deleted = 0
for i = 3, #ARGV do deleted = deleted + delete_turn(ARGV[1], ARGV[i], ARGV[2]) end
return deleted
""")

# ARGV: prefix, conversation
FORGET = with_delete_turn("""
local deleted = 0
for _, member in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'conv:' .. ARGV[2])) do
  deleted = deleted + delete_turn(ARGV[1], member, ARGV[2])
end
return deleted
""")

# ARGV: prefix, exclusive cutoff, batch -> {scanned, deleted}
PURGE = with_delete_turn("""
local members = redis.call('ZRANGEBYSCORE', ARGV[1] .. 'times', '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local deleted = 0
for _, member in ipairs(members) do deleted = deleted + delete_turn(ARGV[1], member, false) end
return {#members, deleted}
""")

# ARGV: prefix, conversation, new member, summary, created_at, tokens, replaced members...
SUMMARISE = with_delete_turn("""
local p, conv, member = ARGV[1], ARGV[2], ARGV[3]
local ckey = p .. 'conv:' .. conv
for _, old in ipairs(redis.call('SMEMBERS', ckey)) do
  if redis.call('HGET', p .. 'turn:' .. old, 'role') == 'summary' then delete_turn(p, old, conv) end
end
for i = 7, #ARGV do delete_turn(p, ARGV[i], conv) end
redis.call('HSET', p .. 'turn:' .. member, 'conversation', conv, 'role', 'summary', 'content', ARGV[4],
           'created_at', ARGV[5], 'tokens', ARGV[6], 'meta', '{}')
redis.call('SADD', ckey, member)
redis.call('ZADD', p .. 'times', ARGV[5], member)
redis.call('SADD', p .. 'convs', conv)
return 1
""")

# KEYS: the turn; ARGV: feedback
FEEDBACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'feedback', ARGV[1])
return 1
"""


def _member(turn_id: int) -> str:
    return f"{turn_id:020d}"


def _turn(flat: list[Any]) -> Turn:
    fields = {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}
    feedback = fields.get("feedback")
    return Turn(
        int(fields["member"]),
        fields["conversation"],
        fields["role"],
        fields["content"],
        float(fields["created_at"]),
        int(fields["tokens"]),
        json.loads(fields["meta"]),
        None if feedback is None else int(feedback),
    )


def _in_order(turns: list[Turn]) -> list[Turn]:
    """As SqliteMemory: the summary first, then by time, then by id."""
    return sorted(turns, key=lambda turn: (turn.role != "summary", turn.created_at, turn.id))


class RedisMemory:
    """Drop-in for `SqliteMemory`. Connection failures raise `bot.state.redis_client.RedisUnavailable`.

    The client belongs to the caller (other Redis classes may share it): `close()` closes it
    only when `owns_client=True`.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        count_tokens: Callable[[str], int] = estimate_tokens,
        prefix: str = DEFAULT_PREFIX,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.count_tokens = count_tokens
        self.prefix = prefix + "mem:"
        self.owns_client = owns_client
        self._add = client.register_script(ADD)
        self._history = client.register_script(HISTORY)
        self._drop = client.register_script(DROP)
        self._forget = client.register_script(FORGET)
        self._purge = client.register_script(PURGE)
        self._summarise = client.register_script(SUMMARISE)
        self._feedback = client.register_script(FEEDBACK)

    async def _next_id(self) -> int:
        return int(await self.client.incr(self.prefix + "next_id"))

    @guarded
    async def add(
        self, conversation: str, role: str, content: str, meta: dict[str, Any] | None = None, at: float | None = None
    ) -> Turn:
        if role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}, not {role!r}")
        created_at = time.time() if at is None else at
        meta = meta or {}
        tokens = self.count_tokens(content)
        encoded = json.dumps(meta)
        author = meta.get("author")
        indexed_author = author if role == "user" and isinstance(author, str) else ""
        turn_id = await self._next_id()
        args = [self.prefix, _member(turn_id), conversation, role, content, repr(float(created_at)), tokens, encoded]
        await self._add(keys=[], args=[*args, indexed_author])
        return Turn(turn_id, conversation, role, content, created_at, tokens, meta, None)

    @guarded
    async def history(self, conversation: str) -> list[Turn]:
        """Oldest first, the summary (if any) before everything."""
        rows = await self._history(keys=[], args=[self.prefix, conversation])
        return _in_order([_turn(row) for row in rows])

    async def fit(self, conversation: str, budget_tokens: int) -> tuple[list[Turn], list[Turn]]:
        """(kept, overflow), exactly as `SqliteMemory.fit`."""
        return split_to_budget(await self.history(conversation), budget_tokens)

    @guarded
    async def summarise(self, conversation: str, replaced: list[Turn], summary: str) -> Turn:
        """Replace `replaced` (and any earlier summary) by one summary turn, atomically."""
        if not replaced:
            raise ValueError("nothing to summarise")
        created_at = max(turn.created_at for turn in replaced)
        tokens = self.count_tokens(summary)
        turn_id = await self._next_id()
        args = [self.prefix, conversation, _member(turn_id), summary, repr(float(created_at)), tokens]
        await self._summarise(keys=[], args=[*args, *(_member(turn.id) for turn in replaced)])
        return Turn(turn_id, conversation, "summary", summary, created_at, tokens, {}, None)

    @guarded
    async def drop(self, conversation: str, turns: list[Turn]) -> None:
        if turns:
            await self._drop(keys=[], args=[self.prefix, conversation, *(_member(turn.id) for turn in turns)])

    @guarded
    async def forget(self, conversation: str) -> int:
        """Delete the whole conversation; how many turns it had."""
        return int(await self._forget(keys=[], args=[self.prefix, conversation]))

    @guarded
    async def purge_older_than(self, max_age_seconds: float, now: float | None = None) -> int:
        """Retention: delete every turn, in every conversation, older than `max_age_seconds` (in batches)."""
        cutoff = (time.time() if now is None else now) - max_age_seconds
        total = 0
        while True:
            scanned, deleted = await self._purge(keys=[], args=[self.prefix, repr(cutoff), PURGE_BATCH])
            total += int(deleted)
            if int(scanned) < PURGE_BATCH:
                return total

    @guarded
    async def set_feedback(self, turn_id: int, value: int) -> bool:
        """Record +1 or -1 on a turn; False when there is no such turn."""
        if value not in (1, -1):
            raise ValueError(f"feedback must be +1 or -1, not {value!r}")
        key = f"{self.prefix}turn:{_member(turn_id)}"
        return bool(await self._feedback(keys=[key], args=[value]))

    async def find_by_meta(self, conversation: str, key: str, value: str) -> Turn | None:
        """The newest turn of the conversation whose `meta[key] == value` (string values, as in SQLite)."""
        if '"' in key:
            raise ValueError(f"meta key cannot contain a double quote: {key!r}")
        matches = [turn for turn in await self.history(conversation) if turn.meta.get(key) == value]
        return max(matches, key=lambda turn: turn.id, default=None)

    @guarded
    async def conversations_of(self, prefix: str, author: str) -> list[str]:
        """Conversations whose key starts with `prefix` in which `author` wrote (for /forget).

        A plain, case-sensitive prefix: `%` and `_` are ordinary characters.
        """
        conversations = await self.client.hkeys(f"{self.prefix}author:{author}")
        return sorted(name for name in map(text, conversations) if name.startswith(prefix))

    @guarded
    async def conversations(self) -> int:
        """How many conversations have at least one turn."""
        return int(await self.client.scard(self.prefix + "convs"))

    async def close(self) -> None:
        if self.owns_client:
            await close(self.client)
