"""Conversation memory on Redis: the same methods and results as `SqliteMemory`, shared by every process.

Layout under `{prefix}mem:` (a turn's member is its id zero-padded to 20 digits):
  next_id                 counter (INCR): ids are unique, increasing, never reused
  turn:{member}           hash: conversation, role, content, created_at, tokens, meta (JSON), feedback, author,
                          and an admin's review: review_status, review_correction, reviewed_at
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

from bot.state.memory import ROLES, AnsweredTurn, Review, Turn, TurnFilters, checked_review, matches, split_to_budget
from bot.state.redis_client import DEFAULT_PREFIX, close, guarded, text
from bot.tokens import estimate_tokens

PURGE_BATCH = 500
SCAN_BATCH = 500  # turns read at a time when answered turns are listed

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

# KEYS: the turn; ARGV: status, correction ('' for none), reviewed_at
REVIEW = """
if redis.call('HGET', KEYS[1], 'role') ~= 'assistant' then return 0 end
redis.call('HSET', KEYS[1], 'review_status', ARGV[1], 'reviewed_at', ARGV[3])
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], 'review_correction')
else
  redis.call('HSET', KEYS[1], 'review_correction', ARGV[2])
end
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


def _review(fields: dict[str, str]) -> Review | None:
    status = fields.get("review_status")
    if status is None:
        return None
    return Review(status, fields.get("review_correction"), float(fields["reviewed_at"]))


def _question(history: list[Turn], answer: Turn) -> Turn | None:
    """The user turn right before `answer` in its conversation's history (summaries aside), if it is one."""
    before = [turn for turn in history if turn.role != "summary" and (turn.created_at, turn.id) < (answer.created_at, answer.id)]
    return before[-1] if before and before[-1].role == "user" else None


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
        self._review = client.register_script(REVIEW)

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

    async def _answers(self, keep: Callable[[Turn, Review | None], bool], newest_first: bool, wanted: int | None) -> list[tuple[Turn, Review | None]]:
        """Assistant turns that `keep` accepts, read in batches along the `times` index (its ties fall in
        member order, that is id order, as SQLite's `ORDER BY created_at, id`); at most `wanted`."""
        found: list[tuple[Turn, Review | None]] = []
        start = 0
        while wanted is None or len(found) < wanted:
            end = start + SCAN_BATCH - 1
            key = self.prefix + "times"
            members = await (self.client.zrevrange(key, start, end) if newest_first else self.client.zrange(key, start, end))
            if not members:
                break
            pipe = self.client.pipeline(transaction=False)
            for member in members:
                pipe.hgetall(f"{self.prefix}turn:{text(member)}")
            for member, raw in zip(members, await pipe.execute()):
                fields = {text(k): text(v) for k, v in raw.items()}
                if fields.get("role") != "assistant":
                    continue
                turn = _turn([*sum(fields.items(), ()), "member", text(member)])
                review = _review(fields)
                if keep(turn, review):
                    found.append((turn, review))
            start += SCAN_BATCH
        return found if wanted is None else found[:wanted]

    async def _with_questions(self, answers: list[tuple[Turn, Review | None]]) -> list[AnsweredTurn]:
        histories: dict[str, list[Turn]] = {}
        out = []
        for answer, review in answers:
            if answer.conversation not in histories:
                histories[answer.conversation] = await self.history(answer.conversation)
            out.append(AnsweredTurn(answer, _question(histories[answer.conversation], answer), review))
        return out

    @guarded
    async def answered_turns(
        self, filters: TurnFilters | None = None, limit: int = 50, offset: int = 0
    ) -> list[AnsweredTurn]:
        """Assistant turns passing `filters`, newest first (time, then id), `limit` from `offset`."""
        chosen = filters or TurnFilters()
        limit, offset = max(0, limit), max(0, offset)
        if limit == 0:
            return []
        found = await self._answers(lambda turn, _: matches(chosen, turn), True, offset + limit)
        return await self._with_questions(found[offset:])

    @guarded
    async def set_review(self, turn_id: int, status: str, correction: str | None = None, at: float | None = None) -> bool:
        """Review an assistant turn; False when there is no such assistant turn."""
        stored = checked_review(status, correction)
        reviewed_at = time.time() if at is None else at
        key = f"{self.prefix}turn:{_member(turn_id)}"
        return bool(await self._review(keys=[key], args=[status, stored or "", repr(float(reviewed_at))]))

    @guarded
    async def reviewed_turns(self) -> list[AnsweredTurn]:
        """Every reviewed answer with its question, oldest first."""
        return await self._with_questions(await self._answers(lambda _, review: review is not None, False, None))

    async def close(self) -> None:
        if self.owns_client:
            await close(self.client)
