"""The Discord adapter: the real discord.py client against a fake gateway and REST API,
the real engine and embedded Qdrant, the fake OpenAI server where a model is needed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.discord.gateway import DiscordAdapter
from config.settings import load_settings
from tests.harness import discord_payloads as dp
from tests.harness.discord_api import FakeDiscord
from tests.harness.openai_server import FakeOpenAI
from tests.harness.stack import Stack, until


class Bot:
    def __init__(self, adapter: DiscordAdapter, fake: FakeDiscord) -> None:
        self.adapter, self.fake = adapter, fake

    def sent(self, channel: str = dp.CHANNEL_ID) -> list[dict[str, Any]]:
        return [c["json"] for c in self.fake.calls_to("POST", f"/channels/{channel}/messages")]

    def edits(self, channel: str = dp.CHANNEL_ID) -> list[dict[str, Any]]:
        return [c for c in self.fake.calls if c["method"] == "PATCH" and c["path"].startswith(f"/channels/{channel}/messages/")]

    def last_text(self, channel: str = dp.CHANNEL_ID) -> str:
        """What the bot's first answer message shows now (its last edit, or as sent)."""
        edits = self.edits(channel)
        return edits[-1]["json"]["content"] if edits else self.sent(channel)[0]["content"]

    def answers(self, channel: str = dp.CHANNEL_ID) -> int:
        """Finished answers: messages (as sent or edited) that carry the feedback buttons."""
        bodies = self.sent(channel) + [e["json"] for e in self.edits(channel)]
        return sum(1 for body in bodies if body.get("components"))

    def finished(self, channel: str = dp.CHANNEL_ID) -> bool:
        """An answer is finished when its last message carries the feedback buttons."""
        bodies = self.sent(channel) + [e["json"] for e in self.edits(channel)]
        return any(body.get("components") for body in bodies)

    async def say(self, content: str, **kw: Any) -> dict[str, Any]:
        payload = dp.message_create(content, **kw)
        await self.fake.dispatch("MESSAGE_CREATE", payload)
        return payload

    async def quiet(self, seconds: float = 0.4) -> None:
        await asyncio.sleep(seconds)


@pytest.fixture
def env(setenv: Callable[..., None], kb_dir: Path) -> Callable[..., None]:
    def apply(**values: str) -> None:
        setenv(**{"DISCORD_TOKEN": dp.BOT_TOKEN, "ADVISOR_KNOWLEDGE_PATHS": str(kb_dir), **values})

    apply()
    return apply


@pytest.fixture
def start(stack: Stack, discord_fake: FakeDiscord, openai_fake: FakeOpenAI, env: Any) -> Callable[..., Any]:
    async def launch(model: bool = False, edit_interval: float = 0.05) -> Bot:
        settings = load_settings(None)
        chat_model = stack.chat_model(openai_fake) if model else None
        engine = stack.engine(settings, chat_model, memory=stack.memory("memory.sqlite3"))
        adapter = await stack.discord_gateway(engine, settings, discord_fake, edit_interval=edit_interval)
        return Bot(adapter, discord_fake)

    return launch


# -- conversations --------------------------------------------------------------------


async def test_dm_is_answered_with_sources_buttons_and_no_pings(start: Any) -> None:
    bot = await start()
    question = await bot.say("How big should my emergency fund be?", channel_id=dp.DM_CHANNEL_ID, guild_id=None)
    await until(lambda: bot.finished(dp.DM_CHANNEL_ID))
    first = bot.sent(dp.DM_CHANNEL_ID)[0]
    assert str(first["message_reference"]["message_id"]) == question["id"]
    assert first["allowed_mentions"]["parse"] == []
    final = bot.last_text(dp.DM_CHANNEL_ID)
    assert "three to six months" in final and "-# Sources: [1] Emergency fund" in final
    assert bot.fake.calls_to("POST", f"/channels/{dp.DM_CHANNEL_ID}/typing")


async def test_guild_mentions_and_replies_to_the_bot_are_answered(start: Any) -> None:
    bot = await start()
    await bot.say("emergency fund chat without the bot")
    await bot.quiet()
    assert bot.sent() == []
    mention = await bot.say(f"<@{dp.BOT_ID}> How big should my emergency fund be?")
    await until(bot.finished)
    answer_id = (await until(lambda: bot.fake.messages_in(dp.CHANNEL_ID)))[-1]["id"]
    assert str(bot.sent()[0]["message_reference"]["message_id"]) == mention["id"]
    bot_message = bot.fake.get_message(dp.CHANNEL_ID, answer_id)
    follow_up = await bot.say(
        "and where should I keep it?",
        referenced_message=bot_message,
        message_reference={"message_id": answer_id, "channel_id": dp.CHANNEL_ID, "guild_id": dp.GUILD_ID},
        type=19,
    )
    await until(lambda: len(bot.sent()) == 2 and bot.answers() == 2)
    assert str(bot.sent()[1]["message_reference"]["message_id"]) == follow_up["id"]
    turns = await bot.adapter.engine.memory.history(f"discord:{dp.GUILD_ID}:{dp.CHANNEL_ID}:{mention['id']}")
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"]  # one reply chain, one conversation


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"author_id": dp.BOT_ID}, "the bot's own message"),
        ({"author_bot": True, "author_id": "7777"}, "a message from a bot or webhook"),
        ({"webhook_id": "8888", "author_id": "8888", "author_bot": True}, "a message from a bot or webhook"),
        ({"type": 7}, "a system message (new_member)"),
        ({"content_override": f"<@{dp.BOT_ID}>"}, "no text for the bot"),
        ({"content_override": "emergency fund size?"}, "a guild message that neither mentions nor replies to the bot"),
    ],
    ids=["own", "bot", "webhook", "system", "empty", "unaddressed"],
)
async def test_ignored_messages(start: Any, kwargs: dict[str, Any], reason: str) -> None:
    """Each is not answered for its own reason (another check catching it would pass a no-reply test)."""
    bot = await start()
    content = kwargs.pop("content_override", f"<@{dp.BOT_ID}> emergency fund size?")
    await bot.say(content, **kwargs)
    assert list(await until(lambda: bot.adapter.ignored)) == [reason]
    assert bot.sent() == []


async def test_allowlists(start: Any, env: Any) -> None:
    env(ADVISOR_DISCORD_BOT_ALLOWLIST="7777", ADVISOR_DISCORD_ALLOWED_CHANNEL_IDS=dp.CHANNEL_ID)
    bot = await start()
    await bot.say(f"<@{dp.BOT_ID}> emergency fund size?", author_bot=True, author_id="7777")
    await until(bot.finished)
    await bot.say(f"<@{dp.BOT_ID}> emergency fund?", channel_id="3999")
    await bot.quiet()
    assert "a channel that is not allowed" in bot.adapter.ignored


# -- streaming and limits --------------------------------------------------------------


async def test_streamed_edits_are_throttled(start: Any, openai_fake: FakeOpenAI) -> None:
    openai_fake.default_answer = "Streaming advice arrives word by word. " * 12
    openai_fake.chunk_delay = 0.03
    bot = await start(model=True, edit_interval=0.3)
    await bot.say(f"<@{dp.BOT_ID}> emergency fund size?")
    await until(bot.finished, timeout=20)
    times = [c["at"] for c in bot.edits()][:-1]  # the final edit is not throttled
    assert len(times) >= 2 and all(b - a >= 0.28 for a, b in zip(times, times[1:]))


async def test_2500_characters_with_a_code_block_across_the_split(start: Any, openai_fake: FakeOpenAI) -> None:
    code = "```python\n" + "\n".join(f"savings_{i} = income * 0.{i}" for i in range(1, 10)) + "\n```"
    openai_fake.default_answer = ("Plan your budget carefully each month. " * 45).strip() + "\n\n" + code + "\n\n" + "Keep going [1]. " * 25
    assert len(openai_fake.default_answer) > 2000
    openai_fake.chunk_chars = 500
    bot = await start(model=True, edit_interval=0.01)
    await bot.say(f"<@{dp.BOT_ID}> How do I budget for an emergency fund?")
    await until(bot.finished, timeout=20)
    messages = bot.fake.messages_in(dp.CHANNEL_ID)
    contents = [m["content"] for m in messages if m["author"]["id"] == dp.BOT_ID]
    assert len(contents) >= 2 and all(len(c) <= 2000 for c in contents)
    assert sum(code in c for c in contents) == 1
    assert all(c.count("```") % 2 == 0 for c in contents)


async def test_model_text_never_pings(start: Any, openai_fake: FakeOpenAI) -> None:
    openai_fake.default_answer = "Hey @everyone and <@2000> and <@&4200>, read this."
    bot = await start(model=True)
    await bot.say(f"<@{dp.BOT_ID}> emergency fund size?")
    await until(bot.finished)
    bodies = bot.sent() + [e["json"] for e in bot.edits()]
    assert bodies
    for body in bodies:
        allowed = body["allowed_mentions"]
        assert allowed["parse"] == [] and not allowed.get("users") and not allowed.get("roles")
        assert allowed.get("replied_user") in (None, False)


async def test_a_429_on_send_is_retried(start: Any) -> None:
    bot = await start()
    bot.fake.fail_next("POST", f"/channels/{dp.CHANNEL_ID}/messages", "rate_limited", retry_after=0.3)
    await bot.say(f"<@{dp.BOT_ID}> emergency fund size?")
    await until(bot.finished)
    limited, retried = bot.fake.calls_to("POST", f"/channels/{dp.CHANNEL_ID}/messages")
    assert (limited["status"], retried["status"]) == (429, 200) and retried["json"] == limited["json"]
    assert retried["at"] - limited["at"] >= 0.3  # no sooner than retry_after, on the fake's own clock


# -- reconnects --------------------------------------------------------------------------


async def test_resume_never_answers_twice(start: Any) -> None:
    bot = await start()
    first = await bot.say(f"<@{dp.BOT_ID}> emergency fund size?")
    await until(bot.finished)
    await bot.fake.drop_connection()
    missed = await bot.say(f"<@{dp.BOT_ID}> which debt first?")  # sent while the bot was away
    await until(lambda: bot.fake.resumes == 1)
    await until(lambda: len(bot.sent()) == 2)
    await bot.fake.dispatch("MESSAGE_CREATE", first)  # a replay of an answered message
    await bot.fake.dispatch("MESSAGE_CREATE", missed)
    await bot.quiet()
    assert len(bot.sent()) == 2 and bot.fake.identifies == 1


# -- /advisor ----------------------------------------------------------------------------


def callbacks(fake: FakeDiscord, payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [c["json"] for c in fake.calls_to("POST", f"/interactions/{payload['id']}/{payload['token']}/callback")]


def original_edits(fake: FakeDiscord, payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [c["json"] for c in fake.calls_to("PATCH", f"/webhooks/{dp.APPLICATION_ID}/{payload['token']}/messages/@original")]


async def test_ask_status_and_forget(start: Any) -> None:
    bot = await start()
    ask = dp.interaction_create(options={"question": "How big should my emergency fund be?", "private": True})
    await bot.fake.dispatch("INTERACTION_CREATE", ask)
    (edit,) = await until(lambda: original_edits(bot.fake, ask))
    assert callbacks(bot.fake, ask)[0]["type"] == 5 and callbacks(bot.fake, ask)[0]["data"]["flags"] == 64
    assert "three to six months" in edit["content"]
    status = dp.interaction_create(subcommand="status")
    await bot.fake.dispatch("INTERACTION_CREATE", status)
    (reply,) = await until(lambda: original_edits(bot.fake, status))  # deferred first: acked before any I/O
    assert "**indexed passages**: 3" in reply["content"] and callbacks(bot.fake, status)[0]["data"]["flags"] == 64
    forget = dp.interaction_create(subcommand="forget")
    await bot.fake.dispatch("INTERACTION_CREATE", forget)
    (done,) = await until(lambda: original_edits(bot.fake, forget))
    assert "forgot our conversations here (2 messages)" in done["content"]


async def test_reindex_refused_for_non_admins(start: Any) -> None:
    bot = await start()
    payload = dp.interaction_create(subcommand="reindex", permissions=dp.EVERYONE_PERMISSIONS)
    await bot.fake.dispatch("INTERACTION_CREATE", payload)
    (reply,) = await until(lambda: callbacks(bot.fake, payload))
    assert reply["type"] == 4 and reply["data"]["flags"] == 64
    assert reply["data"]["content"] == "Sorry, only admins can reindex the knowledge base."


async def test_admin_reindex_is_deferred_reported_and_exclusive(start: Any, kb_dir: Path) -> None:
    bot = await start()
    (kb_dir / "pension.md").write_text("# Pensions\n\nA pension is saving for retirement.\n")
    first = dp.interaction_create(subcommand="reindex", permissions=dp.MODERATOR_PERMISSIONS)
    second = dp.interaction_create(subcommand="reindex", permissions=dp.MODERATOR_PERMISSIONS)
    await bot.fake.dispatch("INTERACTION_CREATE", first)
    await until(lambda: callbacks(bot.fake, first))
    await bot.fake.dispatch("INTERACTION_CREATE", second)
    (refusal,) = await until(lambda: callbacks(bot.fake, second))
    assert "already running" in refusal["data"]["content"]
    assert callbacks(bot.fake, first)[0]["type"] == 5
    done = await until(lambda: [e for e in original_edits(bot.fake, first) if "Reindex finished" in e["content"]])
    assert "4 files: 4 indexed" in done[-1]["content"]


async def test_feedback_button_is_stored(start: Any) -> None:
    bot = await start()
    await bot.say("emergency fund size?", channel_id=dp.DM_CHANNEL_ID, guild_id=None)
    await until(lambda: bot.finished(dp.DM_CHANNEL_ID))
    with_buttons = next(m for m in bot.fake.messages_in(dp.DM_CHANNEL_ID) if m.get("components"))
    custom_id = with_buttons["components"][0]["components"][0]["custom_id"]
    click = dp.component_interaction(custom_id, with_buttons, guild_id=None)
    await bot.fake.dispatch("INTERACTION_CREATE", click)
    (reply,) = await until(lambda: original_edits(bot.fake, click))  # deferred first: acked before any I/O
    assert reply["content"] == "Thanks for the feedback."
    turns = await bot.adapter.engine.memory.history(f"discord:dm:{dp.DM_CHANNEL_ID}:{[m for m in bot.fake.messages_in(dp.DM_CHANNEL_ID)][0]['id']}")
    assert [t.feedback for t in turns if t.role == "assistant"] == [1]


async def test_a_thread_the_bot_was_summoned_into_is_one_conversation(start: Any) -> None:
    bot = await start()
    await bot.say(f"<@{dp.BOT_ID}> How big should my emergency fund be?", channel_id=dp.THREAD_ID)
    await until(lambda: bot.finished(dp.THREAD_ID))
    await bot.say("and where should I keep it?", channel_id=dp.THREAD_ID)  # no mention
    await until(lambda: len(bot.sent(dp.THREAD_ID)) == 2 and bot.answers(dp.THREAD_ID) == 2)
    turns = await bot.adapter.engine.memory.history(f"discord:{dp.GUILD_ID}:{dp.CHANNEL_ID}:{dp.THREAD_ID}")
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"]
    await bot.say("chatter in the main channel")
    await bot.quiet()
    assert bot.sent() == []


async def test_an_engine_failure_is_told_not_swallowed(start: Any) -> None:
    bot = await start()
    await bot.adapter.engine.memory.close()  # memory unusable: the engine cannot answer
    await bot.say(f"<@{dp.BOT_ID}> emergency fund size?")
    (reply,) = await until(bot.sent)
    assert reply["content"].startswith("Sorry, something went wrong on my side")


async def test_the_crisis_protocol_alerts_the_admin_channel_without_the_message(start: Any, env: Any) -> None:
    env(ADVISOR_SAFETY_ALERT_CHANNEL=f"slack:CALERTS,discord:{dp.CHANNEL_ID}")
    bot = await start()
    await bot.say("I want to kill myself tonight", channel_id=dp.DM_CHANNEL_ID, guild_id=None)
    await until(lambda: bot.finished(dp.DM_CHANNEL_ID))
    (alert,) = await until(lambda: bot.sent(dp.CHANNEL_ID))
    assert "crisis protocol answered" in alert["content"] and "kill" not in alert["content"]
    assert alert["allowed_mentions"]["parse"] == []
