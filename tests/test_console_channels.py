"""The console's /admin/channels page through HTTP: list, add, edit and delete a scope's settings;
forged CSRF tokens and bad values refused with nothing changed; edits reach the engine at once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.models import Final, IncomingMessage
from bot.state.channel_settings import ChannelSettings
from bot.state.channel_settings_sqlite import SqliteChannelSettings
from config.settings import load_settings
from tests.harness.console import TOKEN, ConsoleServer, client, csrf_of, sign_in


@pytest.fixture
async def served(
    setenv: Callable[..., None], kb_dir: Path, stack: Any, retriever: Any, tmp_path: Path
) -> AsyncIterator[tuple[ConsoleServer, Any, SqliteChannelSettings]]:
    setenv(ADVISOR_ADMIN_TOKEN=TOKEN, ADVISOR_KNOWLEDGE_PATHS=str(kb_dir))
    settings = load_settings(None)
    channels = SqliteChannelSettings(tmp_path / "channels.sqlite3")
    engine = stack.engine(settings, channels=channels)
    server = await ConsoleServer.serving(settings, engine, retriever)
    yield server, engine, channels
    await server.stop()
    await channels.close()


@pytest.fixture
async def signed_in(served: tuple[ConsoleServer, Any, Any]) -> AsyncIterator[aiohttp.ClientSession]:
    async with client() as http:
        response = await sign_in(http, served[0].url)
        assert response.status == 303
        yield http


async def page(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url, allow_redirects=False) as response:
        return response.status, await response.text()


async def post(http: aiohttp.ClientSession, url: str, form: dict[str, str]) -> tuple[int, str]:
    async with http.post(url, data=form, allow_redirects=False) as response:
        return response.status, await response.text()


async def test_the_page_needs_a_session(served: Any) -> None:
    server = served[0]
    async with client() as http:
        async with http.get(server.url + "/admin/channels", allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/admin/login"
        assert (await post(http, server.url + "/admin/channels", {"scope": "slack:T1"}))[0] == 401


async def test_add_list_edit_and_delete(served: Any, signed_in: aiohttp.ClientSession, kb_dir: Path) -> None:
    server, engine, channels = served
    status, body = await page(signed_in, server.url + "/admin/channels")
    assert status == 200 and "No channel or workspace has its own settings" in body
    assert '<a href="/admin/channels">Channels</a>' in body
    form = {"csrf_token": csrf_of(body), "scope": "slack:T1:C1", "persona": "You are <Penny>.",
            "knowledge_scope": "fund.md\n", "user_per_minute": "1", "conversation_per_minute": ""}
    async with signed_in.post(server.url + "/admin/channels", data=form, allow_redirects=False) as response:
        assert response.status == 303 and response.headers["Location"] == "/admin/channels?saved=slack:T1:C1"
    fund = str((kb_dir / "fund.md").resolve())
    assert await channels.get("slack:T1:C1") == ChannelSettings("You are <Penny>.", (fund,), 1, None)
    status, body = await page(signed_in, server.url + "/admin/channels?saved=slack:T1:C1")
    assert "Saved the settings of slack:T1:C1." in body
    assert "You are &lt;Penny&gt;." in body and "<Penny>" not in body and fund in body
    # the engine sees the edit at once: a second message in a minute is over the channel's own limit
    modes = []
    for text in ("emergency fund?", "and how big?"):
        message = IncomingMessage("slack", "T1", "C1", "t1", "U1", text, time.time())
        events = [event async for event in engine.answer(message)]
        assert isinstance(events[-1], Final)
        modes.append(events[-1].mode)
    assert modes == ["offline", "limited"]
    # edit: the form comes back filled in, and a save replaces the scope's settings
    _, body = await page(signed_in, server.url + "/admin/channels?scope=slack:T1:C1")
    assert 'value="slack:T1:C1"' in body and ">You are &lt;Penny&gt;.</textarea>" in body
    form = {**form, "csrf_token": csrf_of(body), "persona": "", "knowledge_scope": "", "user_per_minute": "",
            "conversation_per_minute": "30"}
    assert (await post(signed_in, server.url + "/admin/channels", form))[0] == 303
    assert await channels.get("slack:T1:C1") == ChannelSettings(conversation_per_minute=30)
    delete = {"csrf_token": form["csrf_token"], "scope": "slack:T1:C1"}
    assert (await post(signed_in, server.url + "/admin/channels/delete", delete))[0] == 303
    assert await channels.all() == {}
    status, body = await post(signed_in, server.url + "/admin/channels/delete", delete)
    assert status == 400 and "has no settings to delete" in body


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"scope": "teams:T1"}, "is not a scope"),
        ({"persona": "x" * 2001}, "at most 2,000"),
        ({"user_per_minute": "many"}, "must be a whole number"),
        ({"user_per_minute": "0"}, "between 1 and 600"),
        ({"conversation_per_minute": "100000"}, "between 1 and 600"),
        ({"knowledge_scope": "/etc"}, "is not inside the configured knowledge paths"),
        ({"knowledge_scope": "../elsewhere"}, "is not inside the configured knowledge paths"),
        ({"knowledge_scope": "missing.md"}, "is not inside the configured knowledge paths"),
    ],
)
async def test_bad_values_are_refused_and_change_nothing(
    served: Any, signed_in: aiohttp.ClientSession, change: dict[str, str], complaint: str
) -> None:
    server, _, channels = served
    await channels.put("slack:T1", ChannelSettings(persona="Kept."))
    _, body = await page(signed_in, server.url + "/admin/channels")
    form = {"csrf_token": csrf_of(body), "scope": "slack:T1", "persona": "New.", "knowledge_scope": "",
            "user_per_minute": "", "conversation_per_minute": "", **change}
    status, body = await post(signed_in, server.url + "/admin/channels", form)
    assert status == 400 and "Not saved:" in body and complaint in body
    assert 'class="flash error"' in body
    assert await channels.all() == {"slack:T1": ChannelSettings(persona="Kept.")}


async def test_forged_csrf_tokens_are_refused_and_change_nothing(served: Any, signed_in: aiohttp.ClientSession) -> None:
    server, _, channels = served
    await channels.put("slack:T1", ChannelSettings(persona="Kept."))
    _, body = await page(signed_in, server.url + "/admin/channels")
    real = csrf_of(body)
    async with client() as other:
        await sign_in(other, server.url)
        _, theirs = await page(other, server.url + "/admin/channels")
    for token in (None, "0" * 64, real[:-1] + ("0" if real[-1] != "0" else "1"), csrf_of(theirs)):
        form = {"scope": "slack:T1", "persona": "Forged."}
        if token is not None:
            form["csrf_token"] = token
        status, text = await post(signed_in, server.url + "/admin/channels", form)
        assert status == 403 and "security token is missing or does not belong to your session" in text
        assert (await post(signed_in, server.url + "/admin/channels/delete", {**form}))[0] == 403
    assert await channels.all() == {"slack:T1": ChannelSettings(persona="Kept.")}
