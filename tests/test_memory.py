"""The memory contract: SqliteMemory (real SQLite files) and RedisMemory (a real redis-server) through
their public methods, each scenario run against both. Then what only SQLite has.

What only Redis has (several processes, the server going away) and the two compared step by
step: tests/test_redis_memory.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.state.memory import MAX_CORRECTION_CHARS, AnsweredTurn, Review, TurnFilters
from bot.state.memory_redis import RedisMemory
from bot.state.memory_sqlite import SCHEMA, SqliteMemory, Turn
from bot.state.redis_client import connect
from tests.harness.redis_server import RedisServer

pytest_plugins = ["conftest_redis"]  # the redis_server fixture

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


# -- the contract, on both stores -------------------------------------------------------------------


async def test_add_returns_the_stored_turn_and_history_is_oldest_first(memory: Memory) -> None:
    first = await memory.add("c1", "user", "how much should I save", {"author": "u1"}, at=100.0)
    second = await memory.add("c1", "assistant", "about three months", {"sources": [{"n": 1}]}, at=101.0)
    assert first == Turn(first.id, "c1", "user", "how much should I save", 100.0, 5, {"author": "u1"}, None)
    assert second.id > first.id and second.meta == {"sources": [{"n": 1}]} and second.tokens == 3
    assert await memory.history("c1") == [first, second]
    assert await memory.history("nobody") == []


async def test_history_orders_by_time_then_insertion_with_the_summary_first(memory: Memory) -> None:
    await memory.add("c1", "user", "later", at=200.0)
    await memory.add("c1", "user", "earlier", at=100.0)
    await memory.add("c1", "assistant", "also later", at=200.0)
    assert contents(await memory.history("c1")) == ["earlier", "later", "also later"]
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
    assert (await memory.history("c1"))[0].feedback is None
    turns = await asyncio.gather(*(memory.add(f"c{n % 3}", "user", "hi") for n in range(30)))
    ids = [turn.id for turn in turns]
    assert len(set(ids)) == 30 and min(ids) > new.id


async def test_200_concurrent_adds_across_20_conversations_stay_apart_and_in_order(memory: Memory) -> None:
    calls = [(f"conv-{n % 20}", f"message {n // 20} of conv-{n % 20}") for n in range(200)]
    await asyncio.gather(*(memory.add(conversation, "user", text) for conversation, text in calls))
    assert await memory.conversations() == 20
    for n in range(20):
        assert contents(await memory.history(f"conv-{n}")) == [f"message {i} of conv-{n}" for i in range(10)]


async def test_fit_keeps_the_newest_turns_within_the_budget(memory: Memory) -> None:
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
    with pytest.raises(ValueError):  # a summary of no turns
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
    assert await memory.purge_older_than(200.0, now=1000.0) == 2
    assert contents(await memory.history("c1")) == ["on the cutoff"]
    assert contents(await memory.history("c2")) == ["recent"]
    assert await memory.purge_older_than(200.0, now=1000.0) == 0
    await memory.add("c3", "summary", "old summary", at=500.0)  # summaries age out too
    assert await memory.purge_older_than(200.0, now=1000.0) == 1
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


async def exchange(memory: Memory, conversation: str, at: float, mode: str = "model", **meta: object) -> tuple[Turn, Turn]:
    question = await memory.add(conversation, "user", f"question at {at:g}", {"author": "U1"}, at=at)
    answer = await memory.add(conversation, "assistant", f"answer at {at:g}", {"mode": mode, **meta}, at=at + 0.5)
    return question, answer


async def test_answered_turns_newest_first_with_their_questions_and_paged(memory: Memory) -> None:
    asked, answered = await exchange(memory, "slack:T1:C1:1", 10.0)
    _, later = await exchange(memory, "discord:G1:C2:9", 20.0, "offline")
    await memory.add("slack:T1:C1:1", "user", "unanswered", at=30.0)
    summary_first = await memory.add("c3", "summary", "earlier talk", at=1.0)
    lone = await memory.add("c3", "assistant", "an answer after a summary only", {"mode": "model"}, at=5.0)
    tied = await memory.add("c3", "assistant", "same second, later id", {"mode": "model"}, at=5.0)
    everything = await memory.answered_turns()
    assert [item.answer for item in everything] == [later, answered, tied, lone]
    assert everything[1] == AnsweredTurn(answered, asked, None)
    assert everything[0].question is not None and everything[0].question.content == "question at 20"
    assert everything[2].question is None, "the turn before it is an answer, not a question"
    assert everything[3].question is None and summary_first.role == "summary"
    assert [item.answer for item in await memory.answered_turns(limit=2)] == [later, answered]
    assert [item.answer for item in await memory.answered_turns(limit=2, offset=2)] == [tied, lone]
    assert await memory.answered_turns(limit=2, offset=4) == []
    assert await memory.answered_turns(limit=0) == []


async def test_answered_turns_filters_feedback_prefix_and_flags(memory: Memory) -> None:
    async def answer_id(conversation: str, at: float, mode: str = "model", **meta: object) -> int:
        return (await exchange(memory, conversation, at, mode, **meta))[1].id

    liked = await answer_id("slack:T1:C1:1", 10.0)
    disliked = await answer_id("slack:T1:C2:1", 20.0)
    crisis = await answer_id("discord:G1:C1:1", 30.0, "crisis", reasons=["lexical"])
    moderated = await answer_id("slack:t1:C1:2", 40.0, "moderated", categories=["violence"])
    marked = await answer_id("slack:T1_%:C1:1", 50.0, flagged=True)
    not_marked = await answer_id("slack:T1:C1:3", 60.0, flagged="yes")  # only JSON true flags an answer
    assert await memory.set_feedback(liked, 1)
    assert await memory.set_feedback(disliked, -1)
    assert await memory.set_feedback(crisis, -1)

    async def answers(**filters: Any) -> list[int]:
        return [item.answer.id for item in await memory.answered_turns(TurnFilters(**filters))]

    assert await answers(disliked=True) == [crisis, disliked]
    assert await answers(prefix="slack:T1:") == [not_marked, disliked, liked], "a case-sensitive, literal prefix"
    assert await answers(prefix="slack:T1_%") == [marked]
    assert await answers(flagged=True) == [marked, moderated, crisis]
    assert await answers(flagged=True, disliked=True) == [crisis]
    assert await answers(flagged=True, prefix="slack:") == [marked, moderated]
    assert await answers(prefix="nowhere:") == []
    [listed] = await memory.answered_turns(TurnFilters(disliked=True, prefix="slack:"))
    assert listed.answer.feedback == -1 and listed.question is not None and listed.question.content == "question at 20"


async def test_reviews_are_stored_replaced_listed_and_validated(memory: Memory) -> None:
    asked, answer = await exchange(memory, "c1", 10.0)
    _, other = await exchange(memory, "c2", 20.0)
    assert await memory.reviewed_turns() == []
    assert await memory.set_review(answer.id, "corrected", "  Keep three to six months of costs.\n", at=100.0)
    assert await memory.set_review(other.id, "good", at=101.0)
    corrected = Review("corrected", "Keep three to six months of costs.", 100.0)
    assert await memory.reviewed_turns() == [
        AnsweredTurn(answer, asked, corrected),
        AnsweredTurn(other, (await memory.history("c2"))[0], Review("good", None, 101.0)),
    ]
    listed = await memory.answered_turns()
    assert [item.review for item in listed] == [Review("good", None, 101.0), corrected]
    assert await memory.set_review(answer.id, "good", at=102.0)  # a new verdict replaces the old one
    assert (await memory.reviewed_turns())[0].review == Review("good", None, 102.0)
    assert await memory.history("c1") == [asked, answer], "a review leaves the turns as they were"
    for status, correction in (("fine", None), ("corrected", "   "), ("corrected", None), ("good", "but why"),
                               ("corrected", "x" * (MAX_CORRECTION_CHARS + 1))):
        with pytest.raises(ValueError):
            await memory.set_review(answer.id, status, correction)
    assert await memory.set_review(answer.id, "corrected", "y" * MAX_CORRECTION_CHARS, at=103.0)
    assert not await memory.set_review(answer.id + 1000, "good"), "no such turn"
    assert not await memory.set_review(asked.id, "good"), "a question is not an answer"
    assert not await memory.set_review(-1, "good")
    assert [item.answer for item in await memory.reviewed_turns()] == [answer, other]


async def test_reviews_go_with_their_turns(memory: Memory) -> None:
    _, answer = await exchange(memory, "c1", 10.0)
    _, kept = await exchange(memory, "c2", 2000.0)
    assert await memory.set_review(answer.id, "good") and await memory.set_review(kept.id, "good")
    await memory.forget("c1")
    assert [item.answer for item in await memory.reviewed_turns()] == [kept]
    assert not await memory.set_review(answer.id, "good")
    await memory.purge_older_than(10.0, now=3000.0)
    assert await memory.reviewed_turns() == [] and await memory.answered_turns() == []


# -- only SQLite: its own token count, its file ---------------------------------------------------


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


async def test_reviews_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite3"
    memory = SqliteMemory(path)
    question = await memory.add("c1", "user", "how big an emergency fund?", at=1.0)
    answer = await memory.add("c1", "assistant", "a year of costs", {"mode": "model"}, at=2.0)
    assert await memory.set_feedback(answer.id, -1)
    assert await memory.set_review(answer.id, "corrected", "three to six months of costs", at=3.0)
    await memory.close()
    reopened = SqliteMemory(path)
    review = Review("corrected", "three to six months of costs", 3.0)
    assert await reopened.reviewed_turns() == [AnsweredTurn(replace_feedback(answer, -1), question, review)]
    await reopened.close()


def replace_feedback(turn: Turn, value: int) -> Turn:
    import dataclasses

    return dataclasses.replace(turn, feedback=value)


async def test_a_database_from_before_reviews_is_migrated_without_losing_a_turn(tmp_path: Path) -> None:
    import json
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old_schema = SCHEMA  # the review columns are added by migration, never by the CREATE TABLE
    assert "review" not in old_schema
    conn = sqlite3.connect(path)
    conn.executescript(old_schema)
    conn.execute("INSERT INTO turns (conversation, role, content, created_at, tokens, meta, feedback) "
                 "VALUES ('c1', 'user', 'old question', 1.0, 2, '{}', NULL)")
    conn.execute("INSERT INTO turns (conversation, role, content, created_at, tokens, meta, feedback) "
                 "VALUES ('c1', 'assistant', 'old answer', 2.0, 2, ?, -1)", (json.dumps({"mode": "offline"}),))
    conn.commit()
    conn.close()

    memory = SqliteMemory(path)
    before = await memory.history("c1")
    assert [(t.content, t.feedback) for t in before] == [("old question", None), ("old answer", -1)]
    [listed] = await memory.answered_turns(TurnFilters(disliked=True))
    assert listed == AnsweredTurn(before[1], before[0], None)
    assert await memory.set_review(before[1].id, "good", at=5.0)
    await memory.close()
    again = SqliteMemory(path)  # the migration runs again on the migrated file: nothing changes
    assert await again.history("c1") == before
    assert (await again.reviewed_turns())[0].review == Review("good", None, 5.0)
    await again.close()


async def test_two_processes_migrating_one_old_database_at_once(tmp_path: Path) -> None:
    """Web workers open the same file together: a column another one added between this one's look
    at the table and its ALTER is no error."""
    import sqlite3

    from bot.state.memory_sqlite import migrate

    class LookedEarlier:
        """A connection whose look at the table was taken before the other process migrated."""

        def __init__(self, conn: sqlite3.Connection, columns: list[Any]) -> None:
            self.conn, self.columns = conn, columns

        def __getattr__(self, name: str) -> Any:
            return getattr(self.conn, name)

        def execute(self, sql: str, *args: Any) -> Any:
            return iter(self.columns) if sql.startswith("PRAGMA table_info") else self.conn.execute(sql, *args)

        def __enter__(self) -> Any:
            return self.conn.__enter__()

        def __exit__(self, *exc: Any) -> Any:
            return self.conn.__exit__(*exc)

    path = tmp_path / "old.sqlite3"
    first, second = sqlite3.connect(path), sqlite3.connect(path)
    first.executescript(SCHEMA)
    stale = second.execute("PRAGMA table_info(turns)").fetchall()
    assert "review_status" not in {row[1] for row in stale}
    migrate(first)
    migrate(LookedEarlier(second, stale))  # type: ignore[arg-type]  # its ALTERs are refused as duplicates: fine
    for conn in (first, second):
        conn.close()
    memory = SqliteMemory(path)
    answer = await memory.add("c1", "assistant", "an answer", {"mode": "model"})
    assert await memory.set_review(answer.id, "good")
    await memory.close()
