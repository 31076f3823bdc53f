"""The console's conversations page (adapters/admin_console) through HTTP against `run_web`, on a real
engine and its SQLite memory: answered turns with their metadata, the filters and paging, message
text only when ADVISOR_ADMIN_SHOW_MESSAGES opts in, and reviews (mark good, correct) with their
refusals. The reviews' storage on both memories: tests/test_memory.py."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.engine.pipeline import Engine
from bot.models import Final, IncomingMessage
from bot.state.memory import MAX_CORRECTION_CHARS, Review
from config.settings import load_settings
from tests.harness.console import TOKEN, ConsoleServer, client, csrf_of, sign_in

QUESTION = "How big should my emergency fund be?"
Served = tuple[ConsoleServer, Engine, aiohttp.ClientSession]


@asynccontextmanager
async def console(setenv: Callable[..., None], kb_dir: Path, stack: Any, retriever: Any, show: bool) -> AsyncIterator[Served]:
    setenv(ADVISOR_ADMIN_TOKEN=TOKEN, ADVISOR_KNOWLEDGE_PATHS=str(kb_dir), ADVISOR_ADMIN_SHOW_MESSAGES=str(show).lower())
    settings = load_settings(None)
    assert settings.console.show_messages is show
    engine = stack.engine(settings)
    server = await ConsoleServer.serving(settings, engine, retriever)
    try:
        async with client() as http:
            assert (await sign_in(http, server.url)).status == 303
            yield server, engine, http
    finally:
        await server.stop()


@pytest.fixture
async def hidden(setenv: Callable[..., None], kb_dir: Path, stack: Any, retriever: Any) -> AsyncIterator[Served]:
    async with console(setenv, kb_dir, stack, retriever, show=False) as served:
        yield served


@pytest.fixture
async def shown(setenv: Callable[..., None], kb_dir: Path, stack: Any, retriever: Any) -> AsyncIterator[Served]:
    async with console(setenv, kb_dir, stack, retriever, show=True) as served:
        yield served


async def ask(engine: Engine, text: str, channel: str = "C1", platform: str = "slack", thread: str = "1.0") -> Final:
    message = IncomingMessage(platform, "T1", channel, thread, "U1", text, time.time(), f"m-{time.time_ns()}")
    finals = [event async for event in engine.answer(message) if isinstance(event, Final)]
    assert len(finals) == 1
    return finals[0]


async def page(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url, allow_redirects=False) as response:
        return response.status, await response.text()


def articles(body: str) -> list[int]:
    return [int(n) for n in re.findall(r'<article class="turn" id="turn-(\d+)"', body)]


def article(body: str, turn_id: int) -> str:
    start = body.index(f'id="turn-{turn_id}"')
    return body[start: body.index("</article>", start)]


async def post_review(served: Served, turn: int | str, data: dict[str, str], token: str | None = "") -> tuple[int, str, str]:
    server, _, http = served
    if token == "":
        _, listing = await page(http, server.url + "/admin/conversations")
        token = csrf_of(listing)
    form = {**data, **({"csrf_token": token} if token is not None else {})}
    async with http.post(f"{server.url}/admin/conversations/{turn}/review", data=form, allow_redirects=False) as response:
        return response.status, await response.text(), response.headers.get("Location", "")


# -- the list ---------------------------------------------------------------------------------------


async def test_answered_turns_show_metadata_and_lengths_but_no_text_by_default(hidden: Served) -> None:
    server, engine, http = hidden
    first = await ask(engine, QUESTION)
    second = await ask(engine, "What pays off debt fastest?", channel="C2", platform="discord", thread="77")
    assert await engine.record_feedback(second.turn_id or 0, -1)
    status, body = await page(http, server.url + "/admin/conversations")
    assert status == 200
    assert articles(body) == [second.turn_id, first.turn_id], "newest first"
    one = article(body, first.turn_id or 0)
    assert "<code>slack:T1:C1:1.0</code>" in one and 'data-mode="offline"' in one
    assert f"question: {len(QUESTION)} characters" in one
    assert f"answer: {len(first.text):,} characters" in one
    assert re.search(r"<th>latency</th><td>[\d.]+ ms</td>", one)
    assert "fund.md" in one and "Emergency fund" in one, "the cited sources"
    assert "<th>cost</th><td>none</td>" in one and 'data-review="unreviewed"' in one
    two = article(body, second.turn_id or 0)
    assert "discord:T1:C2:77" in two and "👎" in two and 'data-feedback="-1"' in two
    assert QUESTION not in body and first.text[:40] not in body, "no message text without the opt-in"
    assert "ADVISOR_ADMIN_SHOW_MESSAGES=true" in body and 'id="privacy"' in body
    assert 'href="/admin/conversations"' in body, "in the navigation"


async def test_text_is_shown_escaped_when_the_operator_opts_in(shown: Served) -> None:
    server, engine, http = shown
    final = await ask(engine, QUESTION + " <script>alert(1)</script>")
    status, body = await page(http, server.url + "/admin/conversations")
    assert status == 200 and 'id="privacy"' not in body
    one = article(body, final.turn_id or 0)
    assert f'<blockquote class="question">{QUESTION} &lt;script&gt;alert(1)&lt;/script&gt;</blockquote>' in one
    assert "<script>alert" not in body
    assert '<blockquote class="answer">' in one and "three to six months" in one


async def test_filters_and_paging(hidden: Served) -> None:
    server, engine, http = hidden
    memory = engine.memory
    ids: dict[str, list[int]] = {"slack": [], "disliked": [], "flagged": [], "discord": []}
    for n in range(120):
        key = f"slack:T1:C{n % 3}:1" if n % 2 else f"discord:G1:C{n % 3}:1"
        await memory.add(key, "user", f"question {n}", {"author": "U1"}, at=1000.0 + n)
        mode = {0: "crisis", 1: "moderated"}.get(n % 10, "offline")
        answer = await memory.add(key, "assistant", f"answer {n}", {"mode": mode}, at=1000.5 + n)
        if n % 7 == 0:
            await memory.set_feedback(answer.id, -1)
            ids["disliked"].append(answer.id)
        if key.startswith("slack:T1:C1"):
            ids["slack"].append(answer.id)
        if key.startswith("discord:"):
            ids["discord"].append(answer.id)
        if mode != "offline":
            ids["flagged"].append(answer.id)
    newest_first = {name: sorted(found, reverse=True) for name, found in ids.items()}

    _, body = await page(http, server.url + "/admin/conversations")
    first = articles(body)
    assert len(first) == 50 and 'id="older"' in body and 'id="newer"' not in body
    _, body = await page(http, server.url + "/admin/conversations?page=3")
    assert len(articles(body)) == 20 and 'id="older"' not in body and 'id="newer"' in body
    assert max(articles(body)) < min(first)
    _, body = await page(http, server.url + "/admin/conversations?disliked=1")
    assert articles(body) == newest_first["disliked"] and "👎" in body
    _, body = await page(http, server.url + "/admin/conversations?prefix=slack%3AT1%3AC1")
    assert articles(body) == newest_first["slack"]
    assert 'value="slack:T1:C1"' in body, "the filter form keeps its value"
    _, body = await page(http, server.url + "/admin/conversations?flagged=1")
    assert articles(body) == newest_first["flagged"] and 'data-mode="crisis"' in body and 'data-mode="moderated"' in body
    _, body = await page(http, server.url + "/admin/conversations?flagged=1&disliked=1&prefix=discord%3A")
    expected = [i for i in newest_first["flagged"] if i in ids["disliked"] and i in ids["discord"]]
    assert expected and articles(body) == expected
    _, body = await page(http, server.url + "/admin/conversations?prefix=nowhere")
    assert articles(body) == [] and "No answered turn matches." in body
    for junk in ("page=0", "page=-1", "page=abc", "page=99999999999"):
        status, body = await page(http, server.url + "/admin/conversations?" + junk)
        assert status == 200 and articles(body) == first, junk


async def test_without_a_session_nothing_is_shown_or_changed(hidden: Served) -> None:
    server, engine, _ = hidden
    final = await ask(engine, QUESTION)
    async with client() as anonymous:
        status, _ = await page(anonymous, server.url + "/admin/conversations")
        assert status == 303
        async with anonymous.post(f"{server.url}/admin/conversations/{final.turn_id}/review", data={"action": "good"}) as response:
            assert response.status == 401
    assert await engine.memory.reviewed_turns() == []


# -- reviews ----------------------------------------------------------------------------------------


async def test_mark_good_then_correct_an_answer(shown: Served) -> None:
    server, engine, http = shown
    final = await ask(engine, QUESTION)
    turn = final.turn_id or 0
    assert await engine.record_feedback(turn, -1)
    status, _, location = await post_review(shown, turn, {"action": "good", "back": "disliked=1"})
    assert status == 303 and location == f"/admin/conversations?disliked=1&saved={turn}#turn-{turn}"
    _, body = await page(http, server.url + location.split("#")[0])
    assert f"Review of answer #{turn} saved." in body
    assert 'data-review="good"' in article(body, turn)
    [reviewed] = await engine.memory.reviewed_turns()
    assert reviewed.review is not None and reviewed.review.status == "good" and reviewed.question is not None
    assert reviewed.question.content == QUESTION

    correction = "  Aim for three to six months of essential costs, in an easy-access account.\n"
    status, _, location = await post_review(shown, turn, {"action": "correct", "correction": correction})
    assert status == 303
    [reviewed] = await engine.memory.reviewed_turns()
    assert reviewed.review == Review("corrected", correction.strip(), reviewed.review.reviewed_at)  # type: ignore[union-attr]
    _, body = await page(http, server.url + "/admin/conversations")
    one = article(body, turn)
    assert 'data-review="corrected"' in one
    assert f'<blockquote class="correction">{correction.strip()}</blockquote>' in one


async def test_a_correction_shows_as_a_length_without_the_opt_in(hidden: Served) -> None:
    server, engine, http = hidden
    final = await ask(engine, QUESTION)
    status, _, _ = await post_review(hidden, final.turn_id or 0, {"action": "correct", "correction": "a private better answer"})
    assert status == 303
    _, body = await page(http, server.url + "/admin/conversations")
    assert "a private better answer" not in body and "correction: 23 characters" in body


async def test_a_forged_csrf_token_is_refused_and_nothing_changes(hidden: Served) -> None:
    server, engine, _ = hidden
    final = await ask(engine, QUESTION)
    turn = final.turn_id or 0
    for token in (None, "0" * 64, "forged"):
        status, body, _ = await post_review(hidden, turn, {"action": "correct", "correction": "x"}, token=token)
        assert status == 403 and "nothing was changed" in body
    async with client() as other:  # another session's token
        await sign_in(other, server.url)
        _, theirs = await page(other, server.url + "/admin/conversations")
    status, _, _ = await post_review(hidden, turn, {"action": "good"}, token=csrf_of(theirs))
    assert status == 403
    assert await engine.memory.reviewed_turns() == []


async def test_an_unknown_turn_is_404_and_nothing_changes(hidden: Served) -> None:
    _, engine, _ = hidden
    final = await ask(engine, QUESTION)
    question = (await engine.memory.history("slack:T1:C1:1.0"))[0]
    assert question.role == "user"
    for turn in (999_999, question.id):
        status, body, _ = await post_review(hidden, turn, {"action": "good"})
        assert status == 404 and f"There is no answered turn #{turn}" in body and "Nothing was changed." in body
    status, body, _ = await post_review(hidden, "abc", {"action": "good", "back": "a=1&" * 50})
    assert status == 404 and "There is no answered turn" in body
    assert await engine.memory.reviewed_turns() == [] and final.turn_id


async def test_empty_oversized_and_unknown_reviews_are_refused(shown: Served) -> None:
    _, engine, _ = shown
    final = await ask(engine, QUESTION)
    turn = final.turn_id or 0
    status, body, _ = await post_review(shown, turn, {"action": "correct", "correction": " \n\t "})
    assert status == 400 and "A corrected answer cannot be empty" in body and "Nothing was changed." in body
    status, body, _ = await post_review(shown, turn, {"action": "correct", "correction": "x" * (MAX_CORRECTION_CHARS + 1)})
    assert status == 413 and "at most 8,000 characters; this one has 8,001" in body
    status, body, _ = await post_review(shown, turn, {"action": "delete"})
    assert status == 400
    status, _, _ = await post_review(shown, turn, {"action": "correct", "correction": "y" * 200_000})
    assert status == 413, "beyond the form limit"
    assert await engine.memory.reviewed_turns() == []
    widest = "€" * MAX_CORRECTION_CHARS  # 8,000 characters of 3 bytes each still fit the form
    status, _, _ = await post_review(shown, turn, {"action": "correct", "correction": widest})
    assert status == 303
    [reviewed] = await engine.memory.reviewed_turns()
    assert reviewed.review is not None and reviewed.review.correction == widest


async def test_a_memory_that_cannot_be_read_gives_a_clear_page(hidden: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    server, engine, http = hidden

    async def broken(*_: Any, **__: Any) -> Any:
        raise OSError("disk gone")

    monkeypatch.setattr(engine.memory, "answered_turns", broken)
    status, body = await page(http, server.url + "/admin/conversations")
    assert status == 503 and "The conversation memory could not be read" in body


async def test_a_correction_sent_in_pieces_is_read_whole(shown: Served) -> None:
    """A long form arriving in several TCP writes (chunked here) is read to its end, not cut at the first."""
    import asyncio
    from urllib.parse import urlencode

    server, engine, http = shown
    final = await ask(engine, QUESTION)
    _, listing = await page(http, server.url + "/admin/conversations")
    correction = "Three to six months of costs. " * 200
    body = urlencode({"csrf_token": csrf_of(listing), "action": "correct", "correction": correction}).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start: start + 1000]
            await asyncio.sleep(0.01)

    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    url = f"{server.url}/admin/conversations/{final.turn_id}/review"
    async with http.post(url, data=pieces(), headers=headers, allow_redirects=False) as response:
        assert response.status == 303
    [reviewed] = await engine.memory.reviewed_turns()
    assert reviewed.review is not None and reviewed.review.correction == correction.strip()
