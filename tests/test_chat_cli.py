"""`advisor chat`, `ask` and `demo` as a user runs them: real command, fake OpenAI server in a thread."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bot.cli import main
from tests.harness.openai_server import FakeOpenAI


@pytest.fixture
def fake(openai_in_thread: FakeOpenAI) -> FakeOpenAI:
    """The fake OpenAI server in a thread (conftest), so the command can run its own loop."""
    return openai_in_thread


@pytest.fixture
def kb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "fund.md").write_text("# Emergency fund\n\nKeep three to six months of essential expenses saved.\n")
    (folder / "debt.md").write_text("# Debt\n\nThe avalanche method pays the highest interest rate first.\n")
    assert main(["ingest", str(folder)]) == 0
    capsys.readouterr()
    return folder


def chat(monkeypatch: pytest.MonkeyPatch, lines: list[str]) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(line + "\n" for line in lines)))
    return main(["chat"])


def test_chat_streams_keeps_the_conversation_and_forgets(
    kb: Path, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script_chat("Save three to six months [1].")
    assert chat(monkeypatch, ["How big should my emergency fund be?", "/sources"]) == 0
    out = capsys.readouterr().out
    assert "advisor> Save three to six months [1]." in out
    assert "[1] Emergency fund (" in out and str(kb / "fund.md") in out

    fake.script_chat("emergency fund where to keep", "In a savings account.")
    assert chat(monkeypatch, ["Where should I keep it?", "/quit", "never sent"]) == 0
    answer = [r["json"] for r in fake.requests if r["json"] and r["json"].get("stream")][-1]
    assert answer["messages"][1] == {"role": "user", "content": "<user_message>\nHow big should my emergency fund be?\n</user_message>"}
    assert "never sent" not in json.dumps([r["json"] for r in fake.requests])

    assert chat(monkeypatch, ["/forget", "Hello"]) == 0
    assert "Forgotten: this conversation starts over (4 messages deleted)." in capsys.readouterr().out
    last = [r["json"] for r in fake.requests if r["json"] and r["json"].get("stream")][-1]
    assert [m["role"] for m in last["messages"]] == ["system", "user"]


def test_ask_json(
    kb: Path, fake: FakeOpenAI, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.script_chat("Use the avalanche method [1].")
    assert main(["ask", "Which debt do I pay first?", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] == "Use the avalanche method [1]." and result["mode"] == "model"
    assert result["sources"][0]["source"] == str(kb / "debt.md") and result["sources"][0]["title"] == "Debt"
    # a server at another base URL is not billed at OpenAI's price under an OpenAI model name ...
    assert result["usage"]["total_tokens"] > 0 and result["usage"]["cost_usd"] is None
    # ... unless its prices are configured
    monkeypatch.setenv("ADVISOR_OPENAI_PRICE_INPUT_PER_MTOK", "1.0")
    monkeypatch.setenv("ADVISOR_OPENAI_PRICE_OUTPUT_PER_MTOK", "2.0")
    fake.script_chat("Use the avalanche method [1].")
    assert main(["ask", "Which debt do I pay first?", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["usage"]["cost_usd"] > 0


def test_ask_offline_without_any_key(kb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "How many months of expenses should I save?", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mode"] == "offline" and "without a language model" in result["answer"]
    assert result["sources"][0]["title"] == "Emergency fund"
    assert result["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost_usd": None}


def test_model_down_gives_a_short_message_and_exit_code(
    kb: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    monkeypatch.setenv("ADVISOR_OPENAI_TIMEOUT_SECONDS", "1")
    assert main(["ask", "How big should my emergency fund be?"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("I couldn't reach my language model just now.") and "three to six months" in out


def test_demo_indexes_the_sample_kb_and_chats(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ADVISOR_LOCAL_MODEL", "off")  # the offline mode; the local model's demo: tests/test_local_model.py
    monkeypatch.setattr("sys.stdin", io.StringIO("How big should my emergency fund be?\n"))
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "without a language model" in out
    assert "> A common guideline is three to six months of essential expenses" in out
    assert "retrieval/sample_kb/" in out.split("Sources:")[1]
