"""`advisor finetune prepare`: cleaning steps, de-duplication, and the real counsel-chat file."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.finetune.clean import clean_answer, html_to_text, mask, split_run_together, strip_signature
from bot.finetune.dedupe import DuplicateFilter, normalise
from bot.finetune.prepare import PrepareOptions, PrepareReport, prepare

COUNSEL_CHAT = Path(__file__).resolve().parents[2] / "shared/datasets/advice_conversations/counsel_chat_20200325.csv"
PERSONA = "You are advisor, a test persona."


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ----- cleaning steps ------------------------------------------------------------------------------


def test_html_becomes_text_with_line_breaks() -> None:
    text = html_to_text("<p>First &amp; best.</p><p>Second<br>line with <b>bold</b>.</p><script>x()</script>")
    assert text.split() == ["First", "&", "best.", "Second", "line", "with", "bold."]
    assert "\n" in text and "<" not in text
    assert html_to_text("Fish &amp; chips") == "Fish & chips"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("hang out with.Seriously, the context", "hang out with. Seriously, the context"),
        ("Be well...Robin", "Be well... Robin"),
        ("Really?I think so!You too.", "Really? I think so! You too."),
        ("see Dr.Smith today", "see Dr.Smith today"),
        ("J.K.Rowling wrote it", "J.K.Rowling wrote it"),
        ("it costs 3.50 dollars", "it costs 3.50 dollars"),
        ("visit www.PsychologyResource.ca today", "visit www.PsychologyResource.ca today"),
        ("mail jo.Smith@example.com now", "mail jo.Smith@example.com now"),
    ],
)
def test_run_together_sentences_are_split_but_not_abbreviations_decimals_or_urls(before: str, after: str) -> None:
    assert split_run_together(before) == after


def test_masks_emails_urls_and_phones_but_keeps_the_suicide_lifeline() -> None:
    text, counts = mask(
        "Write to jane.doe@example.com, see https://example.com/a/b. or www.site.org/Your next step, "
        "call (555) 123-4567 or +44 20 7946 0958; the Lifeline is 1-800-273-8255."
    )
    assert text == (
        "Write to [email], see [url]. or [url] Your next step, call [phone] or [phone]; the Lifeline is 1-800-273-8255."
    )
    assert counts == {"email": 1, "url": 2, "phone": 2}


def test_signatures_are_stripped() -> None:
    assert strip_signature("Hope this helps. Be well.Robin Landwehr, DBH, LPCC", "Robin Landwehr") == (
        "Hope this helps. Be well."
    )
    assert strip_signature("Good luck with it. Katrina Whitehead MA LPCC") == "Good luck with it."
    assert strip_signature("I hope you feel better soon. ~Mark (www.example.com)") == "I hope you feel better soon."
    # the author's name inside the advice is not a signature
    assert strip_signature("Robin Landwehr once wrote about this at length, and it still holds.", "Robin Landwehr") == (
        "Robin Landwehr once wrote about this at length, and it still holds."
    )


def test_clean_answer_drops_self_promotion_and_links_to_the_practice() -> None:
    cleaned = clean_answer(
        "Breathing slowly helps.Try it twice a day. I am a Licensed Professional Counselor in Texas. "
        "You may reach me at 787-466-5478 to schedule an appointment. More at www.janedoetherapy.com/blog.\n"
        "-------------\nTraducción: ...",
        "Jane Doe, LPC",
    )
    assert cleaned.text == "Breathing slowly helps. Try it twice a day."
    assert set(cleaned.steps) == {"run_together", "promotion", "practice_link", "separator"}


def test_near_duplicates_are_found_by_shingle_jaccard() -> None:
    seen = DuplicateFilter(threshold=0.8)
    base = "I feel anxious every time I have to speak in a meeting at work and my hands shake badly"
    assert seen.check(base) is None
    assert seen.check(base.upper() + "!") == "duplicate"
    assert seen.check(base + " too") == "near_duplicate"
    assert seen.check("How should I split the rent with my partner when we earn very different salaries") is None


# ----- the real counsel-chat file --------------------------------------------------------------------


@pytest.fixture(scope="module")
def counsel(tmp_path_factory: pytest.TempPathFactory) -> tuple[PrepareReport, Path]:
    out = tmp_path_factory.mktemp("counsel")
    return prepare(COUNSEL_CHAT, out, PERSONA, {}, PrepareOptions()), out


def test_counsel_chat_counts_per_split_and_drops_by_reason(counsel: tuple[PrepareReport, Path]) -> None:
    _, out = counsel
    saved = json.loads((out / "report.json").read_text())
    assert saved["mapping"] == "counsel-chat" and saved["rows"] == 2129 and saved["questions"] == 815
    assert saved["splits"] == {"train": 688, "validation": 80, "test": 39}
    assert saved["dropped"] == {
        "empty_question": 0,
        "empty_answer": 4,
        "too_short": 19,
        "too_long": 3,
        "not_best_answer": 1291,
        "duplicate_question": 4,
        "near_duplicate_question": 0,
        "duplicate_answer": 1,
        "near_duplicate_answer": 0,
    }
    assert saved["questions_without_answer"] == 3
    assert saved["examples"] + sum(saved["dropped"].values()) == saved["rows"]
    assert {name: len(read_jsonl(out / f"{name}.jsonl")) for name in ("train", "validation", "test")} == saved["splits"]
    assert (
        saved["cleaned"]["signature"] > 50 and saved["cleaned"]["url"] > 100 and saved["cleaned"]["run_together"] > 900
    )


def test_counsel_chat_examples_are_clean_and_one_per_question(counsel: tuple[PrepareReport, Path]) -> None:
    _, out = counsel
    rows = list(csv.DictReader(COUNSEL_CHAT.open(encoding="utf-8")))
    splits_of_question: dict[str, set[str]] = {}  # a few questions were posted twice, in different splits
    for row in rows:
        splits_of_question.setdefault(normalise(row["questionText"]), set()).add(row["split"])
    users: list[str] = []
    for name, source_split in (("train", "train"), ("validation", "val"), ("test", "test")):
        for example in read_jsonl(out / f"{name}.jsonl"):
            system, user, assistant = example["messages"]
            assert system == {"role": "system", "content": PERSONA}
            assert user["role"] == "user" and assistant["role"] == "assistant"
            # the user turn is "title\n\ntext", or the text alone when it already contains the title
            text = user["content"].split("\n\n", 1)[-1]
            splits = splits_of_question.get(normalise(text)) or splits_of_question[normalise(user["content"])]
            assert source_split in splits
            for text in (user["content"], assistant["content"]):
                assert not re.search(r"<[a-zA-Z/][^>]*>|&[a-z]+;", text), text
                assert not re.search(r"https?://|www\.|\b[\w-]+\.(com|org|net)\b|[\w.+-]+@[\w-]+\.\w", text), text
                assert not re.search(r"[a-z]{2}[.!?][A-Z][a-z]", text), text
            assert len(assistant["content"].split()) >= 25
            assert "Landwehr" not in assistant["content"] and "787-466-5478" not in assistant["content"]
            users.append(user["content"])
    assert len(users) == len(set(users)) == 807


def test_counsel_chat_keeps_the_best_answer_cleaned(counsel: tuple[PrepareReport, Path]) -> None:
    _, out = counsel
    example = next(
        e for e in read_jsonl(out / "train.jsonl") if e["messages"][1]["content"].startswith("I'm going through some")
    )
    # the title is left out: the text ends with the same question
    assert example["messages"][1]["content"].endswith("How can I change my feeling of being worthless to everyone?")
    answer = example["messages"][2]["content"]
    # question 0: five answers with 1 upvote each; the first of the best is kept
    assert answer.startswith(
        "If everyone thinks you're worthless, then maybe you need to find new people to hang out with. "
    )
    assert "with. Seriously, the social" in answer and "\xa0" not in answer


# ----- generic mappings, seeded split, bad input ----------------------------------------------------------


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def qa(number: int, **extra: Any) -> dict[str, Any]:
    words = " ".join(f"word{number}x{i}" for i in range(30))
    return {"q": f"Question number {number} about money?", "a": f"Answer {number}: {words}.", **extra}


def test_generic_jsonl_with_rank_and_seeded_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = [qa(n, score=1) for n in range(20)]
    records.append({**qa(3, score=5), "a": "A much better answer to three: " + " ".join(["good"] * 30)})
    records.append(qa(30, score=0) | {"a": "Too short."})
    source = write_jsonl(tmp_path / "qa.jsonl", records)
    args = ["finetune", "prepare", "--source", str(source), "--out", str(tmp_path / "out")]
    args += ["--question-field", "q", "--answer-field", "a", "--rank-field", "score", "--seed", "7"]
    assert main(args) == 0
    report = json.loads((tmp_path / "out/report.json").read_text())
    assert report["splits"] == {"train": 16, "validation": 2, "test": 2}
    assert report["dropped"]["not_best_answer"] == 1 and report["dropped"]["too_short"] == 1
    assert "seeded shuffle (seed 7" in report["split_from"]
    assert "Prepared 20 examples" in capsys.readouterr().out
    answers = [
        e["messages"][2]["content"]
        for s in ("train", "validation", "test")
        for e in read_jsonl(tmp_path / f"out/{s}.jsonl")
    ]
    assert any(a.startswith("A much better answer to three") for a in answers)
    assert main(args) == 0  # the same seed gives the same split
    again = [
        e["messages"][2]["content"]
        for s in ("train", "validation", "test")
        for e in read_jsonl(tmp_path / f"out/{s}.jsonl")
    ]
    assert again == answers


def test_generic_csv_keeps_its_split_column(tmp_path: Path) -> None:
    source = tmp_path / "qa.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["title", "body", "reply", "part"])
        for n in range(6):
            record = qa(n)
            writer.writerow([f"Title {n}", record["q"], record["a"], ["train", "dev", "test"][n % 3]])
    out = tmp_path / "out"
    fields = {"question": "body", "answer": "reply", "title": "title", "split": "part"}
    report = prepare(source, out, PERSONA, fields, PrepareOptions())
    assert report.splits == {"train": 2, "validation": 2, "test": 2}
    assert read_jsonl(out / "validation.jsonl")[0]["messages"][1]["content"] == (
        "Title 1\n\nQuestion number 1 about money?"
    )


@pytest.mark.parametrize(
    ("content", "suffix", "extra", "message"),
    [
        ('{"q": "x", "a": "y"}\n[1, 2]\n', ".jsonl", [], "qa.jsonl:2: expected a JSON object"),
        ('{"q": "x", "a": "y"}\n{"q": \n', ".jsonl", [], "qa.jsonl:2: invalid JSON"),
        (
            "q,a,part\nx,y,train\nx2,y2,holdout\n",
            ".csv",
            ["--split-field", "part"],
            "qa.csv:3: field 'part' is 'holdout'",
        ),
        (
            'q,a,score\n"multi\nline",y,1\nx,y,lots\n',
            ".csv",
            ["--rank-field", "score"],
            "qa.csv:4: field 'score' is 'lots'",
        ),
        ("q,a\nx,y\n", ".csv", ["--title-field", "heading"], "qa.csv: no field 'heading'"),
        ("question,reply\nx,y\n", ".csv", None, "qa.csv: not the counsel-chat layout"),
    ],
)
def test_bad_input_exits_2_naming_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, suffix: str, extra: list[str] | None, message: str
) -> None:
    source = tmp_path / f"qa{suffix}"
    source.write_text(content, encoding="utf-8")
    args = ["finetune", "prepare", "--source", str(source), "--out", str(tmp_path / "out")]
    args += ["--question-field", "q", "--answer-field", "a", *extra] if extra is not None else []
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "qa.jsonl", [qa(1)])
    base = ["finetune", "prepare", "--source", str(source), "--out", str(tmp_path / "o"), "--question-field", "q"]
    assert main([*base, "--answer-field", "a", "--ratios", "0.5,0.1,0.1"]) == 2
    assert "--ratios must be three non-negative numbers" in capsys.readouterr().err
    assert main([*base, "--answer-field", "a", "--min-answer-words", "10", "--max-answer-words", "5"]) == 2
    assert main(["finetune", "prepare", "--source", str(tmp_path / "missing.csv"), "--out", str(tmp_path)]) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err
