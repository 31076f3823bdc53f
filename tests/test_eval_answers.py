"""`advisor eval answers` offline: MTRAG tasks replayed through the full engine over an ingested FiQA subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from bot.models import Citation, Final
from bot.safety.answers_eval import AnswersReport, Task, classify, read_tasks, split_tasks
from tests.harness.openai_server import FakeOpenAI

DATA = Path(__file__).resolve().parent / "data" / "evals"
TASKS = DATA / "fiqa_tasks.jsonl"
CORPUS = DATA / "fiqa_corpus.jsonl"


def ingest_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(CORPUS), "--text-field", "text", "--title-field", "title", "--id-field", "_id"]) == 0
    capsys.readouterr()


def test_tasks_file_is_read_with_turns_classes_and_gold() -> None:
    tasks = read_tasks(TASKS)
    assert [t.answerability for t in tasks] == ["ANSWERABLE", "ANSWERABLE", "PARTIAL", "UNANSWERABLE", "UNANSWERABLE", "UNDERSPECIFIED"]
    assert tasks[0].question == "Is is possible to dispute IRS underpayment penalties?" and tasks[0].earlier == ()
    assert len(tasks[3].earlier) == 2 and tasks[3].question == "Is it safe to invest in options?"
    assert len(tasks[0].gold) == 3 and not tasks[3].gold
    assert len(read_tasks(TASKS, limit=2)) == 2


def test_classify_outcomes() -> None:
    cite = (Citation(1, "s", "t", "", 0.5, "x"),)
    assert classify(Final("Here are passages", cite, "offline")) == "answered"
    declined = Final("I don't have this in my knowledge base. I'm running without a language model", (), "offline")
    assert classify(declined) == "declined"
    assert classify(Final("I couldn't find this in my knowledge base, so this is general guidance.", (), "model")) == "declined"
    assert classify(Final("Which company do you mean?", (), "model")) == "clarified"
    assert classify(Final("Could you tell me which fund you hold, so I can help.", (), "model")) == "clarified"
    assert classify(Final("Index funds spread risk [1].", cite, "model")) == "answered"


def test_split_halves_each_class_the_same_way_every_time() -> None:
    labels = ["ANSWERABLE"] * 7 + ["UNANSWERABLE"] * 4
    tasks = [Task(f"t{n}", (), "q", label, frozenset()) for n, label in enumerate(labels)]
    dev, test = split_tasks(tasks)
    assert sorted(t.task_id for t in dev + test) == sorted(t.task_id for t in tasks)
    assert [sum(t.answerability == "ANSWERABLE" for t in half) for half in (dev, test)] == [4, 3]
    assert [sum(t.answerability == "UNANSWERABLE" for t in half) for half in (dev, test)] == [2, 2]
    assert split_tasks(list(reversed(tasks))) == (dev, test)


def test_balanced_accuracy_weighs_answering_and_declining_alike() -> None:
    report = AnswersReport()
    outcomes = [("ANSWERABLE", "answered")] * 3 + [
        ("ANSWERABLE", "declined"), ("UNANSWERABLE", "declined"), ("UNDERSPECIFIED", "answered"),
    ]
    for n, (label, outcome) in enumerate(outcomes):
        report.add(Task(f"t{n}", (), "q", label, frozenset()), outcome, [])
    assert report.to_json()["answer_decline_accuracy"] == (0.75 + 0.5) / 2
    assert "answer/decline accuracy (balanced):         62.5%" in report.table()
    assert AnswersReport().balanced_accuracy() is None


def test_empty_index_exits_2_with_the_ingest_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "answers", "--tasks", str(TASKS)]) == 2
    assert "advisor ingest corpus.jsonl --text-field text --title-field title --id-field _id" in capsys.readouterr().err


def test_bad_tasks_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "tasks.jsonl"
    bad.write_text('{"task_id": "x"}\n')
    assert main(["eval", "answers", "--tasks", str(bad)]) == 2
    assert "tasks.jsonl:1" in capsys.readouterr().err


def test_eval_answers_offline_json_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    ingest_corpus(capsys)
    assert main(["eval", "answers", "--tasks", str(TASKS), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tasks"] == 6 and report["mode"] == "offline"
    classes = report["by_answerability"]
    assert set(classes) == {"ANSWERABLE", "PARTIAL", "UNANSWERABLE", "UNDERSPECIFIED"}
    assert sum(sum(row.values()) for row in classes.values()) == 6
    assert sum(classes["ANSWERABLE"].values()) == 2 and set(classes["ANSWERABLE"]) == {"answered", "declined", "clarified"}
    # the gold passages of both answerable tasks are in the index, so offline search finds and quotes them
    assert report["answerable_answered"] == 1.0
    assert 0.0 <= report["unanswerable_declined_or_clarified"] <= 1.0
    cited = report["citations"]
    assert cited["with_id"] > 0 and cited["without_id"] == 0 and 0 < cited["in_gold"] <= cited["with_id"]
    assert report["citation_precision"] == pytest.approx(cited["in_gold"] / cited["with_id"], abs=1e-4)
    gold = {t.task_id: t.gold for t in read_tasks(TASKS)}
    assert {row["mode"] for row in report["results"]} == {"offline"}
    first = report["results"][0]
    assert first["outcome"] == "answered" and set(first["cited"]) & gold[first["task_id"]]
    corpus_ids = {json.loads(line)["_id"] for line in CORPUS.read_text().splitlines()}
    assert all(i in corpus_ids for row in report["results"] for i in row["cited"])

    assert main(["eval", "answers", "--tasks", str(TASKS), "--limit", "2"]) == 0
    table = capsys.readouterr().out
    assert "tasks: 2 (engine mode: offline)" in table and "ANSWERABLE" in table and "UNANSWERABLE" not in table
    assert "answerable tasks answered:                  100.0%" in table and "citation precision" in table


def test_long_conversations_are_not_rate_limited(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ten user turns back to back exceed the per-user limit (6 a minute); the replay must not be refused for it."""
    record = json.loads(TASKS.read_text().splitlines()[0])
    turn = record["input"][-1]
    record["input"] = [turn, {"speaker": "agent", "text": "..."}] * 9 + [turn]
    long_task = tmp_path / "long.jsonl"
    long_task.write_text(json.dumps(record) + "\n")
    ingest_corpus(capsys)
    assert main(["eval", "answers", "--tasks", str(long_task), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["results"]
    assert row["mode"] == "offline" and row["outcome"] == "answered" and row["cited"]


@pytest.fixture
def fake(openai_in_thread: FakeOpenAI) -> FakeOpenAI:
    """The fake OpenAI server in a thread (conftest), so the command can run its own loop."""
    return openai_in_thread


def test_eval_answers_with_a_model_classifies_replies(fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    ingest_corpus(capsys)
    fake.script_chat("Yes, you can ask the IRS to waive the penalty [1].", "Which bank do you use?", "The passages do not cover this.")
    assert main(["eval", "answers", "--tasks", str(TASKS), "--limit", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "model"
    assert [row["outcome"] for row in report["results"]] == ["answered", "clarified", "declined"]
    assert {row["mode"] for row in report["results"]} == {"model"}
    assert report["by_answerability"]["ANSWERABLE"] == {"answered": 1, "declined": 0, "clarified": 1}
    assert report["answerable_answered"] == 0.5 and report["unanswerable_declined_or_clarified"] is None
    (cited,) = report["results"][0]["cited"]
    assert report["citations"]["with_id"] == 1 and report["citation_precision"] == 1.0  # the top passage is gold
    assert cited is not None and report["results"][1]["cited"] == [] and report["results"][2]["cited"] == []
