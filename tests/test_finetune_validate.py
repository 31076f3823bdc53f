"""`advisor finetune validate` on hand-made files in tests/data/finetune, token counts and the estimate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.finetune.basemodels import base_model
from bot.finetune.errors import InputError
from bot.finetune.tokens import count, encoding_for, message_tokens
from bot.finetune.validate import default_epochs, distribution, estimate

DATA = Path(__file__).parent / "data" / "finetune"


def validate(capsys: pytest.CaptureFixture[str], name: str, *options: str) -> tuple[int, dict[str, Any]]:
    code = main(["finetune", "validate", str(DATA / name), "--json", *options])
    return code, json.loads(capsys.readouterr().out)


def test_a_good_file_has_no_errors_or_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = validate(capsys, "good.jsonl")
    assert code == 0
    assert result["examples"] == 10 and result["errors"] == {} and result["warnings"] == {}
    assert result["stats"]["messages"] == {"min": 3, "max": 5, "mean": 3.4, "median": 3.0, "p10": 3.0, "p90": 5.0}
    assert result["estimate"]["epochs"] == 10  # 10 examples x 3 < 100 passes -> ceil(100 / 10)
    assert result["estimate"]["total_billed_tokens"] == 10 * result["estimate"]["billed_tokens"]


def test_every_error_kind_with_its_line_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = validate(capsys, "broken.jsonl")
    assert code == 1
    assert result["examples"] == 15
    assert result["errors"] == {
        "invalid_utf8": [2],
        "invalid_json": [3],
        "data_type": [4],
        "missing_messages_list": [5],
        "message_missing_key": [6],
        "message_unrecognized_key": [7],
        "unrecognized_role": [8],
        "missing_content": [9],
        "example_missing_assistant_message": [10, 15],
        "invalid_weight": [11, 12],
        "invalid_tool_calls": [13],
    }
    assert result["warnings"] == {"unusual_role_order": [10]}


def test_too_few_examples_is_an_error_for_the_whole_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = validate(capsys, "few.jsonl")
    assert code == 1 and result["errors"] == {"too_few_examples": []} and result["examples"] == 3
    assert result["estimate"]["epochs"] == 25  # 3 examples: min(25, ceil(100 / 3))


def test_every_warning_kind_with_its_line_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = validate(capsys, "warnings.jsonl", "--max-tokens", "60")
    assert code == 0 and result["errors"] == {}
    assert result["warnings"] == {
        "missing_system_message": [2],
        "missing_user_message": [3],
        "over_token_limit": [5],
        "duplicate_example": [4],
        "unusual_role_order": [3, 6, 7],
    }
    totals = result["stats"]["total_tokens"]
    assert totals["max"] > 60
    # each example is billed at most the limit
    assert result["estimate"]["billed_tokens"] == round(totals["mean"] * 10) - (totals["max"] - 60)


def test_the_readable_report_names_kinds_lines_and_details(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["finetune", "validate", str(DATA / "broken.jsonl"), "--price-per-mtok", "3"]) == 1
    out = capsys.readouterr().out
    assert "ERRORS: do not upload" in out
    assert "example_missing_assistant_message: no assistant message to learn from (lines 10, 15)" in out
    assert "line 13: message 4 answers no earlier tool call (tool_call_id 'call_9')" in out
    assert "line 12: message 3 weight is 2: expected 0 or 1" in out
    assert "assistant tokens" in out and "Estimate: 7 epochs" in out and "per million" in out


@pytest.mark.parametrize("target", ["missing.jsonl", "."])
def test_an_unreadable_file_exits_2(capsys: pytest.CaptureFixture[str], target: str) -> None:
    assert main(["finetune", "validate", str(DATA / target)]) == 2
    assert "cannot read the file" in capsys.readouterr().err


def test_an_unknown_model_needs_max_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["finetune", "validate", str(DATA / "good.jsonl"), "--model", "llama-3-8b"]) == 2
    assert "unknown base model 'llama-3-8b': pass --max-tokens" in capsys.readouterr().err
    code, result = validate(capsys, "good.jsonl", "--model", "llama-3-8b", "--max-tokens", "4096")
    assert code == 0 and result["estimate"]["price_per_mtok"] is None and result["estimate"]["cost_usd"] is None


# ----- tokens, statistics and the estimate ------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4o", "o200k_base"),
        ("gpt-4.1-nano-2025-04-14", "o200k_base"),
        ("ft:gpt-3.5-turbo-0125:org:advisor:abc123", "cl100k_base"),
    ],
)
def test_encoding_per_model(model: str, encoding: str) -> None:
    assert encoding_for(model) == encoding


def test_counts_match_tiktoken_reference_values() -> None:
    # Reference counts from tiktoken 0.12 with OpenAI's published encoding files.
    texts = [
        "hello world",
        "How big should my emergency fund be? Keep three to six months of expenses.",
        "Ünïcödé 漢字 🧠 and   spaces\n\nnew paragraph",
    ]
    assert count(texts, "cl100k_base") == [2, 16, 20]
    assert count(texts, "o200k_base") == [2, 16, 17]


def test_message_tokens_follow_the_cookbook_rule() -> None:
    messages = [
        {"role": "system", "content": "You are advisor."},
        {"role": "user", "content": "How do I ask for a raise?"},
        {"role": "assistant", "content": "Prepare evidence of your impact, pick a good moment, and name a number."},
    ]
    assert message_tokens(messages, "cl100k_base") == (43, 16)  # tiktoken: 43 by the cookbook's function
    named = [{**messages[0]}, {**messages[1], "name": "sam"}, {**messages[2], "weight": 1}]
    # "sam" is one token, plus one for the name
    assert message_tokens(named, "o200k_base") == (43 + 1 + 1, 16)


@pytest.mark.parametrize(
    ("examples", "epochs"),
    [(1, 25), (3, 25), (10, 10), (34, 3), (50, 3), (8333, 3), (8334, 2), (10_000, 2), (30_000, 1)],
)
def test_default_epochs(examples: int, epochs: int) -> None:
    assert default_epochs(examples) == epochs


def test_distribution_and_estimate() -> None:
    assert distribution([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]) == {
        "min": 1,
        "max": 11,
        "mean": 6.0,
        "median": 6,
        "p10": 2.0,
        "p90": 10.0,
    }
    assert distribution([]) == dict.fromkeys(("min", "max", "mean", "median", "p10", "p90"))
    model = base_model("gpt-4o-mini", max_tokens=100)
    result = estimate(model, 40, [50, 150, 100] + [10] * 37)
    assert result["epochs"] == 3 and result["billed_tokens"] == 50 + 100 + 100 + 370
    assert result["total_billed_tokens"] == 3 * 620 and result["cost_usd"] == round(3 * 620 * 3.0 / 1e6, 4)
    assert estimate(model, 40, [10] * 40, epochs=5)["total_billed_tokens"] == 2000
    with pytest.raises(InputError, match="unknown base model"):
        base_model("my-local-model")
