"""RedisMemory keeps SqliteMemory's contract: the same scenarios on both give the same results.

Then what only Redis has: several processes on one memory, the server going away and back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.state.memory_sqlite import SqliteMemory, Turn
from bot.state.redis_client import RedisUnavailable, close, connect, ping, redact_url
from bot.state.memory_redis import RedisMemory
from tests.harness.loopback import free_port
from tests.harness.redis_server import ClientFactory, RedisServer, running_redis

pytest_plugins = ["conftest_redis"]  # the redis_server and redis_clients fixtures

Memory = SqliteMemory | RedisMemory


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture(params=["sqlite", "redis"])
async def memory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Memory]:
    if request.param == "sqlite":
        store: Memory = SqliteMemory(tmp_path / "memory.sqlite3", count_tokens=words)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flush()
        store = RedisMemory(connect(server.url), count_tokens=words, owns_client=True)
    yield store
    await store.close()


def contents(turns: list[Turn]) -> list[str]:
    return [turn.content for turn in turns]


async def fill(memory: Memory, conversation: str, sizes: list[int]) -> list[Turn]:
    """Alternating user/assistant turns of `sizes` words each, one second apart."""
    return [
        await memory.add(conversation, ("user", "assistant")[i % 2], " ".join(["w"] * size), at=100.0 + i)
        for i, size in enumerate(sizes)
    ]


# The contract, on both stores.


async def test_add_returns_the_stored_turn_and_history_is_oldest_first(memory: Memory) -> None:
    first = await memory.add("c1", "user", "how much should I save", {"author": "u1"}, at=100.0)
    second = await memory.add("c1", "assistant", "about three months", {"sources": [{"n": 1}]}, at=101.0)
    assert first == Turn(first.id, "c1", "user", "how much should I save", 100.0, 5, {"author": "u1"}, None)
    assert second.id > first.id and second.tokens == 3
    assert await memory.history("c1") == [first, second]
    assert await memory.history("nobody") == []


async def test_history_orders_by_time_then_insertion_with_the_summary_first(memory: Memory) -> None:
    await memory.add("c1", "user", "later", at=200.0)
    await memory.add("c1", "user", "earlier", at=100.0)
    await memory.add("c1", "assistant", "also later", at=200.0)
    await memory.add("c1", "summary", "the gist", at=300.0)
    assert contents(await memory.history("c1")) == ["the gist", "earlier", "later", "also later"]


async def test_unknown_role_is_refused(memory: Memory) -> None:
    with pytest.raises(ValueError, match="role"):
        await memory.add("c1", "system", "be nice")
    assert await memory.history("c1") == []


async def test_awkward_text_and_meta_come_back_unchanged(memory: Memory) -> None:
    huge = "é" * 200_000 + "\x00 end 🙂"
    meta = {"author": "ü:1", "nested": {"list": [1, 2.5, None, True]}, "quote": 'a "b"'}
    turn = await memory.add("slack:T1:C1:1.5", "user", huge, meta, at=1715000000.123456)
    assert await memory.history("slack:T1:C1:1.5") == [turn]
    assert turn.created_at == 1715000000.123456


async def test_ids_are_unique_increasing_and_never_reused(memory: Memory) -> None:
    old = await memory.add("c1", "assistant", "old answer")
    await memory.forget("c1")
    new = await memory.add("c1", "assistant", "new answer")
    assert new.id > old.id
    assert not await memory.set_feedback(old.id, 1)
    turns = await asyncio.gather(*(memory.add(f"c{n % 3}", "user", "hi") for n in range(30)))
    ids = [turn.id for turn in turns]
    assert len(set(ids)) == 30 and min(ids) > new.id


async def test_concurrent_adds_across_conversations_stay_apart_and_in_order(memory: Memory) -> None:
    calls = [(f"conv-{n % 10}", f"message {n // 10} of conv-{n % 10}") for n in range(100)]
    await asyncio.gather(*(memory.add(conversation, "user", text) for conversation, text in calls))
    assert await memory.conversations() == 10
    for n in range(10):
        assert contents(await memory.history(f"conv-{n}")) == [f"message {i} of conv-{n}" for i in range(10)]


async def test_fit_keeps_the_newest_turns_within_the_budget(memory: Memory) -> None:
    turns = await fill(memory, "c1", [3, 4, 5, 6])
    await fill(memory, "c2", [50])
    for budget, kept in {18: 4, 17: 3, 14: 2, 11: 2, 10: 1, 2: 1}.items():
        assert await memory.fit("c1", budget) == (turns[4 - kept :], turns[: 4 - kept]), budget
    assert await memory.fit("empty", 100) == ([], [])


async def test_fit_counts_the_summary_and_keeps_it_first(memory: Memory) -> None:
    turns = await fill(memory, "c1", [3, 4, 5, 6])
    summary = await memory.summarise("c1", turns[:2], "short summary")
    assert await memory.fit("c1", 13) == ([summary, *turns[2:]], [])
    assert await memory.fit("c1", 12) == (turns[2:], [summary])


async def test_summarise_replaces_the_old_turns_and_any_earlier_summary(memory: Memory) -> None:
    turns = await fill(memory, "c1", [1, 1, 1, 1, 1])
    other = await fill(memory, "c2", [1])
    first = await memory.summarise("c1", turns[:2], "they asked about savings")
    assert first.role == "summary" and first.created_at == turns[1].created_at and first.tokens == 4
    assert first.id > other[0].id
    assert await memory.history("c1") == [first, *turns[2:]]

    second = await memory.summarise("c1", [first, turns[2]], "savings, then debts")
    assert second.created_at == turns[2].created_at
    assert await memory.history("c1") == [second, *turns[3:]]
    assert await memory.history("c2") == other
    with pytest.raises(ValueError):
        await memory.summarise("c1", [], "nothing")


async def test_drop_deletes_only_those_turns_of_that_conversation(memory: Memory) -> None:
    turns = await fill(memory, "c1", [1, 1, 1])
    other = await fill(memory, "c2", [1])
    await memory.drop("c1", [turns[0], turns[2], *other])
    await memory.drop("c1", [])
    assert await memory.history("c1") == [turns[1]]
    assert await memory.history("c2") == other


async def test_forget_deletes_one_conversation_and_counts_it(memory: Memory) -> None:
    await fill(memory, "c1", [1, 1, 1])
    other = await fill(memory, "c2", [1, 1])
    assert await memory.forget("c1") == 3
    assert await memory.history("c1") == []
    assert await memory.history("c2") == other
    assert await memory.conversations() == 1
    assert await memory.forget("c1") == 0


async def test_retention_purges_old_turns_in_every_conversation(memory: Memory) -> None:
    await memory.add("c1", "user", "ancient", at=100.0)
    await memory.add("c1", "user", "on the cutoff", at=800.0)
    await memory.add("c2", "user", "old", at=799.0)
    await memory.add("c2", "user", "recent", at=990.0)
    await memory.add("c3", "summary", "old summary", at=500.0)
    assert await memory.purge_older_than(200.0, now=1000.0) == 3
    assert contents(await memory.history("c1")) == ["on the cutoff"]
    assert contents(await memory.history("c2")) == ["recent"]
    assert await memory.conversations() == 2
    assert await memory.purge_older_than(200.0, now=1000.0) == 0


async def test_retention_defaults_to_the_current_time_and_handles_many_turns(memory: Memory) -> None:
    await asyncio.gather(*(memory.add(f"c{n % 7}", "user", "a year ago", at=1.0 + n) for n in range(1200)))
    await memory.add("c1", "user", "just now")
    assert await memory.purge_older_than(30 * 86400) == 1200
    assert contents(await memory.history("c1")) == ["just now"]
    assert await memory.conversations() == 1


async def test_feedback_is_recorded_replaced_and_validated(memory: Memory) -> None:
    answer = await memory.add("c1", "assistant", "an answer")
    assert await memory.set_feedback(answer.id, 1)
    assert (await memory.history("c1"))[0].feedback == 1
    assert await memory.set_feedback(answer.id, -1)
    assert (await memory.history("c1"))[0].feedback == -1
    for bad in (0, 2, -5):
        with pytest.raises(ValueError):
            await memory.set_feedback(answer.id, bad)
    assert (await memory.history("c1"))[0].feedback == -1
    assert not await memory.set_feedback(answer.id + 1000, 1)
    assert not await memory.set_feedback(-1, 1)


async def test_find_by_meta_finds_the_newest_match_in_that_conversation(memory: Memory) -> None:
    await memory.add("c1", "assistant", "older", {"platform_message_id": "m1"})
    newer = await memory.add("c1", "assistant", "newer", {"platform_message_id": "m1", "slack.ts": "17.5"})
    elsewhere = await memory.add("c2", "assistant", "other", {"platform_message_id": "m1"})
    await memory.add("c1", "user", "no meta")
    await memory.add("c1", "user", "a number", {"platform_message_id": 7})
    assert await memory.find_by_meta("c1", "platform_message_id", "m1") == newer
    assert await memory.find_by_meta("c2", "platform_message_id", "m1") == elsewhere
    assert await memory.find_by_meta("c1", "slack.ts", "17.5") == newer
    assert await memory.find_by_meta("c1", "platform_message_id", "m2") is None
    assert await memory.find_by_meta("c1", "platform_message_id", "7") is None
    assert await memory.find_by_meta("c3", "platform_message_id", "m1") is None
    with pytest.raises(ValueError, match="quote"):
        await memory.find_by_meta("c1", 'a"b', "x")


async def test_conversations_of_an_author_by_literal_prefix(memory: Memory) -> None:
    await memory.add("slack:T_1:C%1", "user", "mine", {"author": "U1"})
    await memory.add("slack:T_1:Cab", "user", "mine too", {"author": "U1"})
    await memory.add("slack:TX1:C01", "user", "_ is not a wildcard", {"author": "U1"})
    await memory.add("slack:T_1:C%9", "user", "someone else's", {"author": "U2"})
    await memory.add("slack:T_1:C%8", "assistant", "not written by U1", {"author": "U1"})
    await memory.add("discord:1:2", "user", "other platform", {"author": "U1"})
    assert await memory.conversations_of("slack:T_1:", "U1") == ["slack:T_1:C%1", "slack:T_1:Cab"]
    assert await memory.conversations_of("slack:T_1:C%", "U1") == ["slack:T_1:C%1"]
    everywhere = ["discord:1:2", "slack:TX1:C01", "slack:T_1:C%1", "slack:T_1:Cab"]  # sorted: "X" < "_"
    assert await memory.conversations_of("", "U1") == everywhere
    assert await memory.conversations_of("slack:", "nobody") == []


async def test_conversations_of_follows_deletions(memory: Memory) -> None:
    first = await memory.add("s:1", "user", "one", {"author": "U1"}, at=10.0)
    second = await memory.add("s:1", "user", "two", {"author": "U1"}, at=20.0)
    await memory.add("s:2", "user", "old", {"author": "U1"}, at=1.0)
    await memory.add("s:3", "user", "x", {"author": "U1"}, at=30.0)
    await memory.drop("s:1", [first])
    assert await memory.conversations_of("s:", "U1") == ["s:1", "s:2", "s:3"]
    await memory.summarise("s:1", [second], "summary of U1's words")  # a summary has no author
    await memory.purge_older_than(5.0, now=10.0)
    await memory.forget("s:3")
    assert await memory.conversations_of("s:", "U1") == []
    await memory.add("s:3", "user", "back", {"author": "U1"}, at=40.0)
    assert await memory.conversations_of("s:", "U1") == ["s:3"]


async def test_conversations_counts_those_with_turns(memory: Memory) -> None:
    assert await memory.conversations() == 0
    turns = await fill(memory, "c1", [1, 1])
    await fill(memory, "c2", [1])
    assert await memory.conversations() == 2
    await memory.drop("c1", turns)
    assert await memory.conversations() == 1


# The same random session on both stores gives identical turns, ids included.


async def test_a_random_session_gives_identical_results_on_both(tmp_path: Path, redis_server: RedisServer) -> None:
    redis_server.flush()
    sqlite = SqliteMemory(tmp_path / "memory.sqlite3", count_tokens=words)
    redis_memory = RedisMemory(connect(redis_server.url), count_tokens=words, owns_client=True)
    rng = random.Random(7)
    conversations = ["a:1", "a:2", "b_%:1", "b:2"]
    results: dict[str, list[Any]] = {"sqlite": [], "redis": []}
    for step in range(200):
        conversation = rng.choice(conversations)
        action = rng.choice(["add", "add", "add", "fit", "summarise", "drop", "forget", "purge", "feedback", "find"])
        at = float(rng.randint(0, 50))
        author = rng.choice(["U1", "U2"])
        for name, memory in (("sqlite", sqlite), ("redis", redis_memory)):
            out: Any
            if action == "add":
                role = ("user", "assistant", "user", "assistant", "summary")[step % 5]
                out = await memory.add(conversation, role, f"text {step} " * (step % 4 + 1), {"author": author}, at=at)
            elif action == "fit":
                out = await memory.fit(conversation, step % 20)
            elif action == "summarise":
                _, overflow = await memory.fit(conversation, step % 12)
                out = await memory.summarise(conversation, overflow, f"summary {step}") if overflow else None
            elif action == "drop":
                history = await memory.history(conversation)
                await memory.drop(conversation, history[step % 2 :: 3])
                out = await memory.history(conversation)
            elif action == "forget":
                out = await memory.forget(conversation) if step % 5 == 0 else None
            elif action == "purge":
                out = await memory.purge_older_than(40.0, now=at + 10)
            elif action == "feedback":
                out = await memory.set_feedback(step % 40 + 1, (1, -1)[step % 2])
            else:
                out = await memory.find_by_meta(conversation, "author", author)
            results[name].append((step, action, out))
        for name, memory in (("sqlite", sqlite), ("redis", redis_memory)):
            results[name].append(
                (
                    step,
                    await memory.history(conversation),
                    await memory.conversations(),
                    await memory.conversations_of("b_%", author),
                    await memory.conversations_of("", author),
                )
            )
        assert results["redis"] == results["sqlite"], step
    await sqlite.close()
    await redis_memory.close()


# Only on Redis: several processes, and the server going away.


async def test_two_processes_share_one_memory(redis_clients: ClientFactory) -> None:
    first, second = RedisMemory(redis_clients(), count_tokens=words), RedisMemory(redis_clients(), count_tokens=words)
    asked = await first.add("c1", "user", "question", {"author": "U1"}, at=1.0)
    answered = await second.add("c1", "assistant", "answer", at=2.0)
    assert answered.id > asked.id
    assert await first.history("c1") == await second.history("c1") == [asked, answered]
    assert await second.set_feedback(answered.id, 1)
    assert (await first.history("c1"))[1].feedback == 1
    summary = await first.summarise("c1", [asked], "a question")
    assert await second.history("c1") == [summary, dataclasses.replace(answered, feedback=1)]
    assert await second.conversations_of("c", "U1") == []
    assert await second.forget("c1") == 2
    assert await first.conversations() == 0


async def test_prefixes_keep_two_bots_apart(redis_clients: ClientFactory) -> None:
    client = redis_clients()
    one, two = RedisMemory(client, prefix="bot1:"), RedisMemory(client, prefix="bot2:")
    await one.add("c1", "user", "for bot one", {"author": "U1"})
    assert await two.history("c1") == [] and await two.conversations() == 0
    assert await two.conversations_of("", "U1") == []
    assert all(key.startswith("bot1:") for key in await client.keys("*"))


async def test_an_unreachable_server_is_reported_without_the_password() -> None:
    port = free_port()
    client = connect(f"redis://:s3cret@127.0.0.1:{port}/0")
    memory = RedisMemory(client, owns_client=True)
    for call in (memory.add("c1", "user", "hi"), ping(client)):
        with pytest.raises(RedisUnavailable) as caught:
            await call
        assert f"127.0.0.1:{port}" in str(caught.value) and "s3cret" not in str(caught.value)
    await memory.close()


def test_urls_are_redacted_for_logs() -> None:
    assert redact_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("rediss://bot:s3cret@cache:6380") == "rediss://bot:***@cache:6380"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"


async def test_memory_survives_redis_going_down_and_coming_back(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis", password="s3cret") as server:
        client = connect(server.url)
        memory = RedisMemory(client, count_tokens=words, owns_client=True)
        turns = [await memory.add("c1", "user", f"message {n}", {"author": "U1"}, at=float(n)) for n in range(20)]
        assert await memory.set_feedback(turns[3].id, -1)
        before = await memory.history("c1")

        server.stop()
        for call in (memory.add("c1", "user", "lost"), memory.history("c1")):
            with pytest.raises(RedisUnavailable) as caught:
                await call
            message = str(caught.value)
            assert f"127.0.0.1:{server.port}" in message and "s3cret" not in message

        server.start()
        await ping(client)
        assert await memory.history("c1") == before and before[3].feedback == -1
        assert await memory.conversations_of("c", "U1") == ["c1"]
        later = await memory.add("c1", "assistant", "still here")
        assert later.id > turns[-1].id
        await memory.close()


async def test_a_second_client_after_close_still_sees_everything(redis_server: RedisServer) -> None:
    redis_server.flush()
    memory = RedisMemory(connect(redis_server.url), owns_client=True)
    turn = await memory.add("c1", "user", "kept")
    await memory.close()
    client = connect(redis_server.url)
    assert await RedisMemory(client).history("c1") == [turn]
    await close(client)
