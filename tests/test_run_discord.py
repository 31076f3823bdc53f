"""`advisor run discord` as an operator runs it: clear errors instead of stack traces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import serving_in_thread

from bot.cli import main
from tests.harness import discord_payloads as dp
from tests.harness.discord_api import FakeDiscord


def serve_in_thread(monkeypatch: pytest.MonkeyPatch, **options: object) -> Iterator[FakeDiscord]:
    with serving_in_thread(FakeDiscord(**options)) as fake:  # type: ignore[arg-type]
        fake.patch(monkeypatch)
        monkeypatch.setenv("DISCORD_TOKEN", dp.BOT_TOKEN)
        yield fake


@pytest.fixture
def portal_without_message_content(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDiscord]:
    yield from serve_in_thread(monkeypatch, enabled_privileged_intents=0)


@pytest.fixture
def discord_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDiscord]:
    yield from serve_in_thread(monkeypatch)


def test_missing_message_content_intent_is_explained(
    portal_without_message_content: FakeDiscord, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "discord"]) == 1
    err = capsys.readouterr().err
    assert "Message Content Intent" in err and "Traceback" not in err


def test_a_rejected_token_is_explained(discord_server: FakeDiscord, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "wrong-token")
    assert main(["run", "discord"]) == 1
    assert "Discord rejected DISCORD_TOKEN" in capsys.readouterr().err


def test_no_token_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "discord"]) == 2
    assert "set DISCORD_TOKEN" in capsys.readouterr().err
