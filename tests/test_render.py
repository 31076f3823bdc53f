"""Splitting long answers for platforms' message limits."""

from __future__ import annotations

import pytest

from adapters.render import split_message

CODE = "```python\n" + "\n".join(f"total_{i} = income * 0.{i % 10}  # step {i}" for i in range(60)) + "\n```"


def test_short_text_is_one_part() -> None:
    assert split_message("Hello.\n\nWorld.", 2000) == ["Hello.\n\nWorld."]


def test_paragraph_boundaries_first() -> None:
    paragraphs = [f"Paragraph {i}. " + "Words about saving money. " * 20 for i in range(8)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    parts = split_message(text, 2000)
    assert len(parts) > 1 and all(len(p) <= 2000 for p in parts)
    assert all(part.startswith("Paragraph") for part in parts)
    assert "\n\n".join(parts) == text


def test_code_block_spanning_the_split_point_stays_whole() -> None:
    code = "\n".join(CODE.split("\n")[:30]) + "\n```"
    text = "Intro. " * 200 + "\n\n" + code + "\n\nOutro."
    assert 1400 < 2000 < len(text) and len(code) < 2000  # the block straddles the 2,000th character
    parts = split_message(text, 2000)
    assert all(len(p) <= 2000 for p in parts)
    assert any(code in part for part in parts)
    for part in parts:
        assert part.count("```") % 2 == 0


def test_code_block_longer_than_a_message_is_refenced() -> None:
    parts = split_message(CODE, 500)
    assert len(parts) > 2 and all(len(p) <= 500 for p in parts)
    for part in parts:
        assert part.startswith("```python\n") and part.endswith("\n```")
    body = [line for part in parts for line in part.split("\n")[1:-1]]
    assert body == CODE.split("\n")[1:-1]


def test_giant_sentence_and_giant_line() -> None:
    word_wall = "word " * 3000
    parts = split_message(word_wall.strip(), 1000)
    assert all(len(p) <= 1000 for p in parts) and " ".join(parts).split() == word_wall.split()
    line = "```\n" + "x" * 2500 + "\n```"
    parts = split_message(line, 1000)
    assert all(len(p) <= 1000 for p in parts) and "".join(p[4:-4] for p in parts) == "x" * 2500


def test_unclosed_fence_is_closed() -> None:
    parts = split_message("Text. " * 100 + "\n\n```\ncode line\n" + "more code\n" * 100, 600)
    assert all(p.count("```") % 2 == 0 for p in parts)


def test_limit_must_be_sane() -> None:
    with pytest.raises(ValueError):
        split_message("x", 5)
