"""SqliteMemory through its public methods, on real SQLite files."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.state.memory_sqlite import SqliteMemory, Turn


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture
async def memory(tmp_path: Path) -> AsyncIterator[SqliteMemory]:
    store = SqliteMemory(tmp_path / "memory.sqlite3", count_tokens=words)
    yield store
    await store.close()


def contents(turns: list[Turn]) -> list[str]:
    return [turn.content for turn in turns]


async def test_add_returns_the_stored_turn_and_history_is_oldest_first(memory: SqliteMemory) -> None:
    first = await memory.add("c1", "user", "how much should I save", {"author": "u1"}, at=100.0)
    second = await memory.add("c1", "assistant", "about three months", {"sources": [{"n": 1}]}, at=101.0)
    assert first == Turn(first.id, "c1", "user", "how much should I save", 100.0, 5, {"author": "u1"}, None)
    assert second.id > first.id and second.meta == {"sources": [{"n": 1}]} and second.tokens == 3
    assert await memory.history("c1") == [first, second]
    assert await memory.history("nobody") == []


async def test_history_orders_by_time_then_insertion(memory: SqliteMemory) -> None:
    await memory.add("c1", "user", "later", at=200.0)
    await memory.add("c1", "user", "earlier", at=100.0)
    await memory.add("c1", "assistant", "also later", at=200.0)
    assert contents(await memory.history("c1")) == ["earlier", "later", "also later"]


async def test_unknown_role_is_refused(memory: SqliteMemory) -> None:
    with pytest.raises(ValueError, match="role"):
        await memory.add("c1", "system", "be nice")
    assert await memory.history("c1") == []


async def test_default_token_count_is_words_and_punctuation(tmp_path: Path) -> None:
    memory = SqliteMemory(tmp_path / "nested" / "dir" / "memory.sqlite3")
    assert (await memory.add("c1", "user", "Hello, world!")).tokens == 4
    await memory.close()


async def test_everything_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite3"
    memory = SqliteMemory(path)
    huge = "é" * 1_000_000 + "\x00 end"
    await memory.add("c1", "user", "hi", at=1.0)
    answer = await memory.add("c1", "assistant", huge, {"platform_message_id": "m1"}, at=2.0)
    await memory.add("c2", "user", "other", at=3.0)
    assert await memory.set_feedback(answer.id, -1)
    before = await memory.history("c1")
    await memory.close()

    reopened = SqliteMemory(path)
    after = await reopened.history("c1")
    assert after == before and after[1].content == huge and after[1].feedback == -1
    assert await reopened.conversations() == 2
    assert await reopened.find_by_meta("c1", "platform_message_id", "m1") == after[1]
    await reopened.close()


async def test_ids_are_never_reused(memory: SqliteMemory) -> None:
    old = await memory.add("c1", "assistant", "old answer")
    await memory.forget("c1")
    new = await memory.add("c1", "assistant", "new answer")
    assert new.id > old.id
    assert not await memory.set_feedback(old.id, 1)
    assert (await memory.history("c1"))[0].feedback is None


async def test_200_concurrent_adds_across_20_conversations_stay_apart_and_in_order(memory: SqliteMemory) -> None:
    calls = [(f"conv-{n % 20}", f"message {n // 20} of conv-{n % 20}") for n in range(200)]
    await asyncio.gather(*(memory.add(conversation, "user", text) for conversation, text in calls))
    assert await memory.conversations() == 20
    for n in range(20):
        assert contents(await memory.history(f"conv-{n}")) == [f"message {i} of conv-{n}" for i in range(10)]


async def fill(memory: SqliteMemory, conversation: str, sizes: list[int]) -> list[Turn]:
    """Alternating user/assistant turns of `sizes` words each, one second apart."""
    return [
        await memory.add(conversation, ("user", "assistant")[i % 2], " ".join(["w"] * size), at=100.0 + i)
        for i, size in enumerate(sizes)
    ]


async def test_fit_keeps_the_newest_turns_within_the_budget(memory: SqliteMemory) -> None:
    turns = await fill(memory, "c1", [3, 4, 5, 6])
    await fill(memory, "c2", [50])
    expected_kept = {
        18: 4,  # 6+5+4+3: exactly the budget
        17: 3,
        14: 2,  # 6+5 fit, 4 does not; the older 3 would, but kept turns stay contiguous
        11: 2,
        10: 1,
        2: 1,  # the newest turn is kept even alone over the budget
    }
    for budget, kept in expected_kept.items():
        assert await memory.fit("c1", budget) == (turns[4 - kept :], turns[: 4 - kept]), budget


async def test_fit_on_an_empty_conversation(memory: SqliteMemory) -> None:
    assert await memory.fit("c1", 100) == ([], [])


async def test_fit_counts_the_summary_and_keeps_it_first(memory: SqliteMemory) -> None:
    turns = await fill(memory, "c1", [3, 4, 5, 6])
    summary = await memory.summarise("c1", turns[:2], "short summary")
    assert await memory.fit("c1", 13) == ([summary, *turns[2:]], [])
    assert await memory.fit("c1", 12) == (turns[2:], [summary])


async def test_summarise_replaces_the_old_turns_and_any_earlier_summary(memory: SqliteMemory) -> None:
    turns = await fill(memory, "c1", [1, 1, 1, 1, 1])
    other = await fill(memory, "c2", [1])
    first = await memory.summarise("c1", turns[:2], "they asked about savings")
    assert first.role == "summary" and first.created_at == turns[1].created_at and first.tokens == 4
    assert await memory.history("c1") == [first, *turns[2:]]

    second = await memory.summarise("c1", [first, turns[2]], "savings, then debts")
    assert second.created_at == turns[2].created_at
    assert await memory.history("c1") == [second, *turns[3:]]
    assert await memory.history("c2") == other


async def test_summarise_without_turns_is_refused(memory: SqliteMemory) -> None:
    with pytest.raises(ValueError):
        await memory.summarise("c1", [], "nothing")


async def test_drop_deletes_only_those_turns_of_that_conversation(memory: SqliteMemory) -> None:
    turns = await fill(memory, "c1", [1, 1, 1])
    other = await fill(memory, "c2", [1])
    await memory.drop("c1", [turns[0], turns[2], *other])
    await memory.drop("c1", [])
    assert await memory.history("c1") == [turns[1]]
    assert await memory.history("c2") == other


async def test_forget_deletes_one_conversation_and_counts_it(memory: SqliteMemory) -> None:
    await fill(memory, "c1", [1, 1, 1])
    other = await fill(memory, "c2", [1, 1])
    assert await memory.forget("c1") == 3
    assert await memory.history("c1") == []
    assert await memory.history("c2") == other
    assert await memory.conversations() == 1
    assert await memory.forget("c1") == 0


async def test_retention_purges_old_turns_in_every_conversation(memory: SqliteMemory) -> None:
    await memory.add("c1", "user", "ancient", at=100.0)
    await memory.add("c1", "user", "on the cutoff", at=800.0)
    await memory.add("c2", "user", "old", at=799.0)
    await memory.add("c2", "user", "recent", at=990.0)
    assert await memory.purge_older_than(200.0, now=1000.0) == 2
    assert contents(await memory.history("c1")) == ["on the cutoff"]
    assert contents(await memory.history("c2")) == ["recent"]
    assert await memory.purge_older_than(200.0, now=1000.0) == 0


async def test_retention_defaults_to_the_current_time(memory: SqliteMemory) -> None:
    await memory.add("c1", "user", "a year ago", at=1.0)
    await memory.add("c1", "user", "just now")
    assert await memory.purge_older_than(30 * 86400) == 1
    assert contents(await memory.history("c1")) == ["just now"]


async def test_feedback_is_recorded_replaced_and_validated(memory: SqliteMemory) -> None:
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


async def test_find_by_meta_finds_the_newest_match_in_that_conversation(memory: SqliteMemory) -> None:
    await memory.add("c1", "assistant", "older", {"platform_message_id": "m1"})
    newer = await memory.add("c1", "assistant", "newer", {"platform_message_id": "m1", "slack.ts": "17.5"})
    elsewhere = await memory.add("c2", "assistant", "other", {"platform_message_id": "m1"})
    await memory.add("c1", "user", "no meta")
    assert await memory.find_by_meta("c1", "platform_message_id", "m1") == newer
    assert await memory.find_by_meta("c2", "platform_message_id", "m1") == elsewhere
    assert await memory.find_by_meta("c1", "slack.ts", "17.5") == newer
    assert await memory.find_by_meta("c1", "platform_message_id", "m2") is None
    assert await memory.find_by_meta("c3", "platform_message_id", "m1") is None
