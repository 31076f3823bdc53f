"""RedisMemory beside SqliteMemory: the same random session on both gives identical results (the
contract itself, scenario by scenario on both: tests/test_memory.py).

Then what only Redis has: several processes on one memory, the server going away and back.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest

from bot.state.memory import TurnFilters
from bot.state.memory_sqlite import SqliteMemory
from bot.state.redis_client import RedisUnavailable, close, connect, ping, redact_url
from bot.state.memory_redis import RedisMemory
from tests.harness.loopback import free_port
from tests.harness.redis_server import ClientFactory, RedisServer, running_redis

pytest_plugins = ["conftest_redis"]  # the redis_server and redis_clients fixtures

def words(text: str) -> int:
    return len(text.split())


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
        action = rng.choice(["add", "add", "add", "fit", "summarise", "drop", "forget", "purge", "feedback", "find", "review"])
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
            elif action == "review":
                correction = f"better answer {step}" if step % 3 else None
                out = await memory.set_review(step % 40 + 1, "corrected" if correction else "good", correction, at=float(step))
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
                    await memory.answered_turns(TurnFilters(disliked=step % 2 == 0, prefix="b"), limit=5, offset=step % 3),
                    await memory.reviewed_turns(),
                )
            )
        assert results["redis"] == results["sqlite"], step
    reviews = [entry[2] for entry in results["sqlite"] if len(entry) == 3 and entry[1] == "review"]
    assert True in reviews and False in reviews, "some reviews landed on answers, some did not"
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
