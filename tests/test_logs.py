"""bot.ops.logs: JSON lines with the turn context and extras, text mode, and no secret in any output."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bot.ops import logs

CONFIGURED = "hunter2-configured-secret"
SECRETS = {
    "configured": CONFIGURED,
    "openai": "sk-proj-AbCdEfGhIjKlMnOpQrStUv_12-34",
    "slack bot": "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp",
    "slack app": "xapp-1-A0123456789-1234567890123-abcdef0123456789",
    "discord": "MTA5ODc2NTQzMjEwOTg3NjU0MzI.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB",
    "bearer": "abc123.opaque-token-value",
    "redis": "r3dis-pass-word",
    "rediss": "s3cond-pass",
}
LEAKY = (
    f"configured={CONFIGURED} key={SECRETS['openai']} slack={SECRETS['slack bot']} app={SECRETS['slack app']} "
    f"discord={SECRETS['discord']} auth=Bearer {SECRETS['bearer']} "
    f"redis://:{SECRETS['redis']}@cache:6379/0 rediss://advisor:{SECRETS['rediss']}@cache.example:6380"
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in logs.CHATTY}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in chatty.items():
        logging.getLogger(name).setLevel(old)
    logs.set_secrets(())


def json_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def assert_no_secret(text: str) -> None:
    for name, secret in SECRETS.items():
        assert secret not in text, f"{name} secret leaked"
    assert "[redacted]" in text


async def test_json_lines_carry_context_across_awaits_and_extras(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("INFO", "json")
    log = logging.getLogger("advisor.test")
    turn = logs.new_turn_id()
    with logs.turn_context(turn_id=turn, conversation="slack:T1:C1:1.0", platform="slack"):
        await asyncio.sleep(0)
        log.info("answered %s", "ok", extra={"elapsed_ms": 12.5, "sources": ["a.md", "b.md"]})

        async def child() -> None:  # a task started inside the turn inherits it
            await asyncio.sleep(0)
            log.warning("from a task")

        await asyncio.create_task(child())
        with logs.turn_context(platform="discord"):  # nesting overrides only what it names
            log.info("nested")
    log.info("after")
    log.debug("not at INFO")
    first, task, nested, after = json_lines(capsys.readouterr().err)
    assert first["msg"] == "answered ok" and first["level"] == "INFO" and first["logger"] == "advisor.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert (first["turn_id"], first["conversation"], first["platform"]) == (turn, "slack:T1:C1:1.0", "slack")
    assert first["elapsed_ms"] == 12.5 and first["sources"] == ["a.md", "b.md"]
    assert task["turn_id"] == turn and task["level"] == "WARNING"
    assert (nested["turn_id"], nested["platform"]) == (turn, "discord")
    assert "turn_id" not in after and "platform" not in after


def test_exception_text_is_in_exc(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("INFO", "json")
    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger("advisor.test").exception("it failed")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["msg"] == "it failed"
    assert "Traceback" in line["exc"] and "ValueError: bad value" in line["exc"]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_never_reach_the_output(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("DEBUG", fmt, secrets=[CONFIGURED, "short", None])  # type: ignore[arg-type]
    log = logging.getLogger("advisor.test")
    log.info("message %s", LEAKY)
    log.info("plain " + LEAKY, extra={"header": f"Bearer {SECRETS['bearer']}", "nested": {"k": [LEAKY]}})
    try:
        raise RuntimeError(LEAKY)
    except RuntimeError:
        log.exception("failed", extra={"url": f"redis://:{SECRETS['redis']}@cache:6379"})
    log.warning("stack", stack_info=True, extra={"token": SECRETS["discord"]})
    err = capsys.readouterr().err
    assert_no_secret(err)
    assert "cache:6379/0" in err and "rediss://advisor:[redacted]@cache.example" in err  # the rest is kept
    if fmt == "json":
        lines = json_lines(err)
        assert lines[1]["header"] == "Bearer [redacted]" and lines[1]["nested"]["k"][0].count("[redacted]") >= 8
        assert "RuntimeError" in lines[2]["exc"] and lines[2]["url"] == "redis://:[redacted]@cache:6379"


def test_redact_ignores_short_secrets_and_keeps_ordinary_text() -> None:
    logs.set_secrets(["short", "longer-secret-value"])
    text = "a short note about longer-secret-value and sk-ab and foo.bar.baz"
    assert logs.redact(text) == "a short note about [redacted] and sk-ab and foo.bar.baz"


def test_text_mode(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("INFO", "text")
    with logs.turn_context(turn_id="abc123", platform="slack"):
        logging.getLogger("advisor.test").info("hello %s", "there")
    logging.getLogger("advisor.test").info("no turn")
    first, second = capsys.readouterr().err.splitlines()
    assert first.endswith("INFO advisor.test [turn_id=abc123 platform=slack]: hello there")
    assert second.endswith("INFO advisor.test: no turn")
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_json_unless_stderr_is_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    logs.configure_logging("INFO", "auto")
    logging.getLogger("advisor.test").info("piped")
    assert json.loads(piped.getvalue())["msg"] == "piped"
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    logs.configure_logging("INFO", "auto")
    logging.getLogger("advisor.test").info("terminal")
    assert tty.getvalue().rstrip().endswith("INFO advisor.test: terminal")
    assert "piped" not in tty.getvalue() and piped.getvalue().count("\n") == 1  # replaced, not added


def test_configure_sets_levels_and_quiets_chatty_loggers(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("DEBUG", "json")
    assert logging.getLogger().level == logging.DEBUG
    assert all(logging.getLogger(name).level == logging.WARNING for name in logs.CHATTY)
    logging.getLogger("httpx").info("HTTP Request: GET https://example/ 200")
    assert capsys.readouterr().err == ""
    logs.configure_logging("ERROR", "json")
    assert logging.getLogger("httpx").level == logging.ERROR


def test_new_turn_id_is_short_random_hex() -> None:
    ids = {logs.new_turn_id() for _ in range(50)}
    assert len(ids) == 50 and all(re.fullmatch(r"[0-9a-f]{12}", turn) for turn in ids)
