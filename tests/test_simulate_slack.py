"""`advisor simulate slack`: recorded payloads through the production adapter, one JSON line per call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from tests.harness import slack_payloads as sp


def write(folder: Path, name: str, body: dict | bytes) -> Path:
    path = folder / name
    path.write_bytes(body if isinstance(body, bytes) else json.dumps(body).encode())
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    assert main(["simulate", "slack", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_session_of_recorded_payloads(tmp_path: Path, kb_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(kb_dir)]) == 0
    capsys.readouterr()
    mention = sp.app_mention("How big should my emergency fund be?", bot_user_id="UB0T")
    files = [
        write(tmp_path, "1.json", sp.url_verification("chal")),
        write(tmp_path, "2.json", mention),
        write(tmp_path, "3.json", {**mention, "event_id": sp.new_event_id()}),
        write(tmp_path, "4.json", sp.bot_message("beep", channel="D1", channel_type="im")),
        write(tmp_path, "5.txt", sp.slash_command("help")),
        write(tmp_path, "6.txt", sp.slash_command("ask which debt first?")),
    ]
    lines = run(capsys, *map(str, files))
    by_file: dict[str, list[dict]] = {}
    for line in lines:
        assert line["platform"] == "slack"
        by_file.setdefault(Path(line["file"]).name, []).append(line)
    assert by_file["1.json"] == [{"platform": "slack", "file": str(files[0]), "http_response": {"status": 200, "body": {"challenge": "chal"}}}]
    methods = [line["method"] for line in by_file["2.json"]]
    assert methods[0] == "chat.postMessage" and methods[-1] == "chat.update"
    assert by_file["2.json"][0]["thread_ts"] == mention["event"]["ts"] and by_file["2.json"][0]["channel"] == "C1"
    assert "three to six months" in by_file["2.json"][-1]["text"] and by_file["2.json"][-1]["blocks"]
    assert by_file["3.json"] == [
        {"platform": "slack", "file": str(files[2]), "ignored": True, "reason": f"duplicate delivery of message {mention['event']['ts']} in C1"}
    ]
    assert by_file["4.json"][0]["ignored"] is True and by_file["4.json"][0]["reason"] == "message from another bot"
    assert "reindex [path]" in by_file["5.txt"][0]["http_response"]["body"]["text"]
    ask = by_file["6.txt"]
    assert ask[0]["http_response"]["body"]["response_type"] == "ephemeral"
    assert ask[1]["method"] == "response_url" and "avalanche" in ask[1]["text"]


def test_bot_user_id_option_decides_who_the_bot_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = write(tmp_path, "dm.json", sp.dm_message("hello", user="UME"))
    (line,) = run(capsys, "--bot-user-id", "UME", str(message))
    assert line["ignored"] is True and line["reason"] == "the bot's own message"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"type": "event_callback"}', "expected an Events API body"),
        (b"hello=world", "not a Slack request body"),
        (b"payload=%7Bbad", "the payload field is not valid JSON"),
    ],
)
def test_malformed_files_exit_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, problem: str) -> None:
    good = write(tmp_path, "good.json", sp.url_verification("x"))
    bad = write(tmp_path, "bad.json", content)
    assert main(["simulate", "slack", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing ran
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"error: {bad}: ") and problem in line
