"""The Discord HTTP interactions endpoint: a real aiohttp server on loopback, requests signed with a real
Ed25519 key, the real engine and embedded Qdrant, a fake webhook REST server recording what is posted."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nacl.signing import SigningKey

from adapters.discord.interactions import DiscordInteractions, is_admin
from config.settings import AdminSettings, load_settings
from tests.harness import discord_payloads as dp
from tests.harness.discord_webhooks import FakeWebhooks
from tests.harness.openai_server import FakeOpenAI
from tests.harness.stack import Stack

TIMEOUT = 10
APP_ID = "123456789012345678"
KEY = SigningKey.generate()
QUESTION = "How big should my emergency fund be?"


def signed(body: bytes, key: SigningKey = KEY, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body).signature.hex()
    return {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": stamp, "Content-Type": "application/json"}


def ask(question: str = QUESTION, **kw: Any) -> dict[str, Any]:
    return dp.interaction_create(options={"question": question}, application_id=APP_ID, **kw)


def command(subcommand: str, options: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return dp.interaction_create(subcommand=subcommand, options=options, application_id=APP_ID, **kw)


class Endpoint:
    def __init__(
        self, adapter: DiscordInteractions, hooks: FakeWebhooks, url: str, http: aiohttp.ClientSession
    ) -> None:
        self.adapter, self.hooks, self.url, self.http = adapter, hooks, url, http
        self.asked: list[Any] = []
        answer = adapter.engine.answer

        def spy(message: Any) -> Any:
            self.asked.append(message)
            return answer(message)

        adapter.engine.answer = spy

    async def send(self, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        async with self.http.post(self.url, data=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def post(self, payload: dict[str, Any]) -> tuple[int, Any]:
        body = json.dumps(payload).encode()
        return await self.send(body, signed(body))

    def edits(self, payload: dict[str, Any], ok: bool = True) -> list[dict[str, Any]]:
        return [
            c["json"]
            for c in self.hooks.calls_to("PATCH", f"/webhooks/{APP_ID}/{payload['token']}/messages/@original", ok)
        ]

    def followups(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        return [c["json"] for c in self.hooks.calls_to("POST", f"/webhooks/{APP_ID}/{payload['token']}", ok=True)]

    async def finished(self) -> None:
        assert await self.adapter.drain(TIMEOUT)


@pytest.fixture
async def hooks() -> AsyncIterator[FakeWebhooks]:
    async with FakeWebhooks() as server:
        yield server


@pytest.fixture
def start(
    stack: Stack, kb_dir: Path, hooks: FakeWebhooks, openai_fake: FakeOpenAI, setenv: Callable[..., None]
) -> Callable[..., Any]:
    async def launch(model: bool = False, edit_interval: float | None = None, **env: str) -> Endpoint:
        setenv(**{
            "DISCORD_PUBLIC_KEY": KEY.verify_key.encode().hex(),
            "DISCORD_APPLICATION_ID": APP_ID,
            "ADVISOR_KNOWLEDGE_PATHS": str(kb_dir),
            **env,
        })
        settings = load_settings(None)
        chat_model = stack.chat_model(openai_fake) if model else None
        engine = stack.engine(settings, chat_model, memory=stack.memory("memory.sqlite3"))
        admin = stack.admin(engine, settings)
        adapter = DiscordInteractions(engine, admin, settings, api_base=hooks.api_base, edit_interval=edit_interval)
        base = await stack.serve(adapter.web_app(), access_log=None, shutdown_timeout=1.0)  # drains before memory closes
        http = aiohttp.ClientSession()
        stack.later(http.close)
        return Endpoint(adapter, hooks, f"{base}/discord/interactions", http)

    return launch


# -- verification ------------------------------------------------------------------------------


async def test_ping_is_answered_with_pong(start: Any) -> None:
    endpoint = await start()
    assert await endpoint.post({"id": "1", "application_id": APP_ID, "type": 1, "version": 1}) == (200, {"type": 1})


def _forged(body: bytes) -> dict[str, str]:
    return signed(body, key=SigningKey.generate())


def _tampered(body: bytes) -> dict[str, str]:
    return signed(body.replace(b"emergency", b"EMERGENCY"))


def _missing(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json"}


def _no_timestamp(body: bytes) -> dict[str, str]:
    return {k: v for k, v in signed(body).items() if k != "X-Signature-Timestamp"}


def _not_hex(body: bytes) -> dict[str, str]:
    return {**signed(body), "X-Signature-Ed25519": "zz" * 64}


def _short(body: bytes) -> dict[str, str]:
    return {**signed(body), "X-Signature-Ed25519": signed(body)["X-Signature-Ed25519"][:64]}


def _huge_timestamp(body: bytes) -> dict[str, str]:
    return {**signed(body), "X-Signature-Timestamp": "9" * 5000}


def _stale(body: bytes) -> dict[str, str]:
    return signed(body, timestamp=int(time.time()) - 301)


def _ahead(body: bytes) -> dict[str, str]:
    return signed(body, timestamp=int(time.time()) + 301)


@pytest.mark.parametrize(
    "headers",
    [_forged, _tampered, _missing, _no_timestamp, _not_hex, _short, _huge_timestamp, _stale, _ahead],
    ids=["forged", "tampered", "missing", "no-timestamp", "not-hex", "short", "huge-timestamp", "stale", "ahead"],
)
async def test_unverified_requests_get_401_and_run_nothing(
    start: Any, headers: Callable[[bytes], dict[str, str]]
) -> None:
    endpoint = await start()
    body = json.dumps(ask()).encode()
    status, error = await endpoint.send(body, headers(body))
    assert status == 401 and error == {"error": "invalid request signature"}
    await endpoint.finished()
    assert endpoint.asked == [] and endpoint.hooks.calls == [] and not endpoint.adapter.tasks


async def test_wrong_content_type_is_415(start: Any) -> None:
    endpoint = await start()
    body = json.dumps(ask()).encode()
    status, error = await endpoint.send(body, {**signed(body), "Content-Type": "text/plain"})
    assert status == 415 and "application/json" in error["error"]
    assert endpoint.asked == []


async def test_oversized_bodies_are_413(start: Any) -> None:
    endpoint = await start()
    body = json.dumps({**ask(), "padding": "x" * 70_000}).encode()
    assert (await endpoint.send(body, signed(body)))[0] == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused once the limit is passed
        yield body[:60_000]
        yield body[60_000:]

    async with endpoint.http.post(endpoint.url, data=chunks(), headers=signed(body)) as response:
        assert response.status == 413
    assert endpoint.asked == []


async def test_malformed_json_with_a_valid_signature_is_400(start: Any) -> None:
    endpoint = await start()
    for body in (b'{"type": 2, "id": ', b"[1, 2]", b"\xff\xfe"):
        status, error = await endpoint.send(body, signed(body))
        assert status == 400 and "error" in error
    assert endpoint.asked == []


async def test_unknown_interaction_types_are_400_and_known_leftovers_answered_politely(start: Any) -> None:
    endpoint = await start()
    unknown = {**ask(), "type": 42}
    assert await endpoint.post(unknown) == (400, {"error": "unsupported interaction type"})
    for kind in (None, True, "2", 2.0):
        assert (await endpoint.post({**ask(), "type": kind}))[0] == 400
    status, autocomplete = await endpoint.post({**ask(), "type": 4})
    assert status == 200 and autocomplete == {"type": 8, "data": {"choices": []}}
    status, other = await endpoint.post(command("horoscope"))
    assert status == 200 and other["type"] == 4 and other["data"]["flags"] == 64
    assert "don't know that command" in other["data"]["content"]
    await endpoint.finished()
    assert endpoint.asked == [] and endpoint.hooks.calls == []


# -- /advisor ask ------------------------------------------------------------------------------


async def test_ask_is_deferred_then_the_answer_edits_the_response(start: Any) -> None:
    endpoint = await start()
    payload = ask()
    assert await endpoint.post(payload) == (200, {"type": 5, "data": {"flags": 64}})
    await endpoint.finished()
    (edit,) = endpoint.edits(payload)
    assert "three to six months" in edit["content"] and "-# Sources: [1] Emergency fund" in edit["content"]
    assert edit["allowed_mentions"] == {"parse": []}
    assert endpoint.followups(payload) == []
    (incoming,) = endpoint.asked
    assert (incoming.workspace, incoming.channel, incoming.thread) == (
        dp.GUILD_ID,
        dp.CHANNEL_ID,
        f"slash-{dp.USER_ID}",
    )
    assert incoming.message_id == payload["id"] and incoming.author == dp.USER_ID
    turns = await endpoint.adapter.engine.memory.history(f"discord:{dp.GUILD_ID}:{dp.CHANNEL_ID}:slash-{dp.USER_ID}")
    assert [t.role for t in turns] == ["user", "assistant"]


async def test_ask_in_a_dm_and_in_public(start: Any) -> None:
    endpoint = await start()
    payload = dp.interaction_create(
        options={"question": QUESTION, "private": False},
        guild_id=None,
        channel_id=dp.DM_CHANNEL_ID,
        application_id=APP_ID,
    )
    assert await endpoint.post(payload) == (200, {"type": 5})
    await endpoint.finished()
    assert "three to six months" in endpoint.edits(payload)[0]["content"]
    assert endpoint.asked[0].workspace == "dm" and endpoint.asked[0].author == dp.USER_ID


async def test_a_long_answer_is_split_into_follow_ups_without_pings(start: Any, openai_fake: FakeOpenAI) -> None:
    code = "```python\n" + "\n".join(f"savings_{i} = income * 0.{i}" for i in range(1, 10)) + "\n```"
    text = ("Plan your budget carefully each month, @everyone. " * 45).strip() + "\n\n" + code + "\n\n"
    openai_fake.default_answer = text + "Keep going [1] <@2000>. " * 40
    openai_fake.chunk_chars = 400
    openai_fake.chunk_delay = 0.01
    endpoint = await start(model=True, edit_interval=0.02)
    payload = ask("How do I budget for an emergency fund?")
    assert (await endpoint.post(payload))[1]["type"] == 5
    await endpoint.finished()
    edits, followups = endpoint.edits(payload), endpoint.followups(payload)
    assert len(edits) >= 2  # streamed, then final
    messages = [edits[-1], *followups]
    assert len(messages) >= 2 and all(len(m["content"]) <= 2000 for m in messages)
    assert all(m["allowed_mentions"] == {"parse": []} for m in edits + followups)
    assert all(f["flags"] == 64 for f in followups)  # private, like the deferred response
    assert sum(code in m["content"] for m in messages) == 1
    assert all(m["content"].count("```") % 2 == 0 for m in messages)
    assert "Keep going" in messages[-1]["content"]


async def test_a_duplicate_delivery_runs_the_engine_once(start: Any) -> None:
    endpoint = await start()
    payload = ask()
    first, again = await asyncio.gather(endpoint.post(payload), endpoint.post(payload))
    assert first == again == (200, {"type": 5, "data": {"flags": 64}})
    await endpoint.finished()
    assert await endpoint.post(payload) == first  # a late re-delivery too
    await endpoint.finished()
    assert len(endpoint.asked) == 1 and len(endpoint.edits(payload)) == 1


@pytest.mark.parametrize("retry_after", [0.3, 1.4], ids=["under-a-second", "above-the-rounded-header"])
async def test_a_webhook_429_is_retried_after_retry_after(start: Any, retry_after: float) -> None:
    """The body's exact retry_after is waited, no less (the Retry-After header says 1 for both), on the
    fake's own clock: at 1.4 s a client going by the rounded header would come back too soon."""
    endpoint = await start()
    payload = ask()
    endpoint.hooks.fail_next("PATCH", f"/webhooks/{APP_ID}/{payload['token']}", retry_after=retry_after)
    await endpoint.post(payload)
    await endpoint.finished()
    limited, retried = endpoint.hooks.calls_to("PATCH", f"/webhooks/{APP_ID}/{payload['token']}")
    assert (limited["status"], retried["status"]) == (429, 200) and retried["json"] == limited["json"]
    assert retried["at"] - limited["at"] >= retry_after
    assert "three to six months" in retried["json"]["content"]


async def test_an_engine_failure_is_told_and_the_token_never_logged(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint = await start()
    await endpoint.adapter.engine.memory.close()  # memory unusable: the engine cannot answer
    payload = ask()
    endpoint.hooks.fail_next("PATCH", "/webhooks/", retry_after=0.05)
    await endpoint.post(payload)
    await endpoint.finished()
    assert endpoint.edits(payload)[-1]["content"].startswith("Sorry, something went wrong on my side")
    assert "answering interaction" in caplog.text and "rate-limited" in caplog.text
    assert payload["token"] not in caplog.text


# -- status, forget, feedback, reindex ----------------------------------------------------------


async def test_status_forget_and_feedback(start: Any) -> None:
    endpoint = await start()
    asked = command("status")
    assert await endpoint.post(asked) == (200, {"type": 5, "data": {"flags": 64}})  # acked before any I/O
    await endpoint.finished()
    assert "**indexed passages**: 3" in endpoint.edits(asked)[-1]["content"]
    await endpoint.post(ask())
    await endpoint.finished()
    key = f"discord:{dp.GUILD_ID}:{dp.CHANNEL_ID}:slash-{dp.USER_ID}"
    answer = next(t for t in await endpoint.adapter.engine.memory.history(key) if t.role == "assistant")
    click = dp.component_interaction(
        f"advisor:feedback:up:{answer.id}", {"id": "1", "channel_id": dp.CHANNEL_ID}, application_id=APP_ID
    )
    assert (await endpoint.post(click))[1] == {"type": 5, "data": {"flags": 64}}
    await endpoint.finished()
    assert endpoint.edits(click)[-1]["content"] == "Thanks for the feedback."
    assert [t.feedback for t in await endpoint.adapter.engine.memory.history(key) if t.role == "assistant"] == [1]
    forget = command("forget")
    assert (await endpoint.post(forget))[1] == {"type": 5, "data": {"flags": 64}}
    await endpoint.finished()
    assert endpoint.edits(forget)[-1]["content"] == "Done: I forgot our conversations here (2 messages)."


async def test_reindex_refused_for_non_admins(start: Any) -> None:
    endpoint = await start()
    for payload in (command("reindex", permissions=dp.EVERYONE_PERMISSIONS), command("reindex", guild_id=None)):
        status, reply = await endpoint.post(payload)
        assert status == 200 and reply["type"] == 4 and reply["data"]["flags"] == 64
        assert reply["data"]["content"] == "Sorry, only admins can reindex the knowledge base."
    await endpoint.finished()
    assert endpoint.hooks.calls == [] and not endpoint.adapter.admin.reindexing


async def test_admin_reindex_is_deferred_reported_and_exclusive(start: Any, kb_dir: Path) -> None:
    endpoint = await start()
    (kb_dir / "pension.md").write_text("# Pensions\n\nA pension is saving for retirement.\n")
    first = command("reindex", permissions=dp.MODERATOR_PERMISSIONS)  # Manage Server
    second = command("reindex", {"path": "debt.md"}, permissions=dp.MODERATOR_PERMISSIONS)
    assert await endpoint.post(first) == (200, {"type": 5, "data": {"flags": 64}})
    _, refusal = await endpoint.post(second)  # straight after: the first has not even started
    assert "already running" in refusal["data"]["content"] and refusal["data"]["flags"] == 64
    await endpoint.finished()
    assert "4 files: 4 indexed" in endpoint.edits(first)[-1]["content"]
    outside = command("reindex", {"path": "/etc"}, permissions=dp.MODERATOR_PERMISSIONS)
    assert (await endpoint.post(outside))[1]["type"] == 5  # the path is looked at after the ack
    await endpoint.finished()
    assert "is not inside the configured knowledge paths" in endpoint.edits(outside)[-1]["content"]


async def test_reindex_by_a_listed_admin_in_a_dm(start: Any) -> None:
    endpoint = await start(ADVISOR_ADMINS_DISCORD_USER_IDS=dp.USER_ID)
    payload = command("reindex", {"path": "debt.md"}, guild_id=None, channel_id=dp.DM_CHANNEL_ID)
    assert (await endpoint.post(payload))[1]["type"] == 5
    await endpoint.finished()
    assert "Reindex finished" in endpoint.edits(payload)[-1]["content"]


@pytest.mark.parametrize(
    ("payload", "admins", "expected"),
    [
        (command("reindex", permissions=dp.MODERATOR_PERMISSIONS), {}, True),
        (command("reindex", permissions=dp.ALL_PERMISSIONS), {}, True),
        (command("reindex", permissions=1 << 3), {}, True),  # ADMINISTRATOR alone
        (command("reindex", permissions=dp.EVERYONE_PERMISSIONS), {}, False),
        (command("reindex", permissions="not a number"), {}, False),
        (command("reindex", roles=["42"]), {"discord_role_ids": ["42"]}, True),
        (command("reindex", guild_id=None), {"discord_user_ids": [dp.USER_ID]}, True),
        (command("reindex", guild_id=None), {"discord_role_ids": ["42"]}, False),
    ],
    ids=["manage-server", "owner", "administrator", "everyone", "malformed", "listed-role", "listed-user", "dm"],
)
def test_the_admin_rule(payload: dict[str, Any], admins: dict[str, list[str]], expected: bool) -> None:
    assert is_admin(payload, AdminSettings(**admins)) is expected


async def test_close_cancels_what_is_left(start: Any, openai_fake: FakeOpenAI) -> None:
    openai_fake.default_answer = "Slow advice. " * 50
    openai_fake.chunk_delay = 0.2
    endpoint = await start(model=True)
    await endpoint.post(ask())
    assert await endpoint.adapter.drain(0.05) is False
    await endpoint.adapter.close()
    assert not endpoint.adapter.tasks


def test_the_public_key_is_required(settings: Any) -> None:
    with pytest.raises(ValueError, match="DISCORD_PUBLIC_KEY"):
        DiscordInteractions(object(), object(), settings)  # type: ignore[arg-type]
