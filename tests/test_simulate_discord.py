"""`advisor simulate discord`: recorded dispatches through the production adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from tests.harness import discord_payloads as dp

BOT = "100000000000000001"
BOT_USER = {"id": BOT, "username": "advisor", "discriminator": "0", "bot": True, "avatar": None, "global_name": None}


def write(folder: Path, name: str, body: object) -> Path:
    path = folder / name
    path.write_text(json.dumps(body) if not isinstance(body, str) else body)
    return path


def dispatch(event: str, data: dict) -> dict:
    return {"op": 0, "t": event, "s": 1, "d": data}


def test_a_session_of_recorded_dispatches(tmp_path: Path, kb_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(kb_dir)]) == 0
    capsys.readouterr()
    mention = dp.message_create(f"<@{BOT}> How big should my emergency fund be?", mentions=[BOT_USER])
    files = [
        write(tmp_path, "1.json", dispatch("MESSAGE_CREATE", mention)),
        write(tmp_path, "2.json", dispatch("MESSAGE_CREATE", mention)),
        write(tmp_path, "3.json", dispatch("MESSAGE_CREATE", dp.message_create("just chatting"))),
        write(tmp_path, "4.json", dp.interaction_create(subcommand="status", application_id=BOT)),
    ]
    assert main(["simulate", "discord", *map(str, files)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_file: dict[str, list[dict]] = {}
    for line in lines:
        assert line["platform"] == "discord"
        by_file.setdefault(Path(line["file"]).name, []).append(line)
    first = [line for line in by_file["1.json"] if line["path"] == f"/channels/{dp.CHANNEL_ID}/messages"]
    assert first[0]["method"] == "POST" and str(first[0]["body"]["message_reference"]["message_id"]) == mention["id"]
    assert first[0]["body"]["allowed_mentions"]["parse"] == []
    assert "three to six months" in json.dumps(by_file["1.json"])
    assert by_file["2.json"] == [{"platform": "discord", "file": str(files[1]), "ignored": True, "reason": f"duplicate delivery of message {mention['id']}"}]
    assert by_file["3.json"][0]["reason"] == "a guild message that neither mentions nor replies to the bot"
    callback, status = by_file["4.json"]  # acked (deferred) before any I/O, then filled in
    assert callback["path"].endswith("/callback") and callback["body"]["type"] == 5
    assert status["path"].endswith("/messages/@original") and "**indexed passages**: 3" in status["body"]["content"]


def test_bot_user_id_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    own = write(tmp_path, "own.json", dispatch("MESSAGE_CREATE", dp.message_create("hi", author_id="42", channel_id=dp.DM_CHANNEL_ID, guild_id=None)))
    assert main(["simulate", "discord", "--bot-user-id", "42", str(own)]) == 0
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["ignored"] is True and line["reason"] == "the bot's own message"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{oops", "not valid JSON"),
        (json.dumps({"op": 0, "t": "GUILD_CREATE", "d": {}}), "expected a dispatch (op 0) of MESSAGE_CREATE or INTERACTION_CREATE"),
        (json.dumps({"op": 0, "t": "MESSAGE_CREATE", "d": {"id": "1"}}), "MESSAGE_CREATE data lacks channel_id, author"),
        (json.dumps({"hello": 1}), "not a gateway dispatch nor an interaction object"),
    ],
)
def test_malformed_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, problem: str) -> None:
    bad = write(tmp_path, "bad.json", content)
    assert main(["simulate", "discord", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"error: {bad}: ") and problem in line


def test_a_dispatch_discord_py_cannot_parse_is_one_line_and_the_others_still_run(
    tmp_path: Path, kb_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", str(kb_dir)]) == 0
    capsys.readouterr()
    mention = dp.message_create(f"<@{BOT}> How big should my emergency fund be?", mentions=[BOT_USER])
    broken = {**mention, "id": "123", "author": {"id": "5"}, "timestamp": "not a time"}  # passes the input check
    files = [
        write(tmp_path, "1.json", dispatch("MESSAGE_CREATE", broken)),
        write(tmp_path, "2.json", dispatch("MESSAGE_CREATE", mention)),
    ]
    assert main(["simulate", "discord", *map(str, files)]) == 2
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"error: {files[0]}: discord.py cannot parse this MESSAGE_CREATE dispatch" in errors[0]
    assert "Traceback" not in err
    answered = [json.loads(line) for line in out.splitlines()]
    assert answered and all(Path(line["file"]).name == "2.json" for line in answered)
    assert "three to six months" in json.dumps(answered)
