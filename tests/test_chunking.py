"""Chunks respect the token budget, keep exact offsets, never split code, and keep stable ids."""

from __future__ import annotations

from pathlib import Path

from bot.tokens import estimate_tokens
from retrieval.chunking import chunk_document, embedding_text
from retrieval.loaders import Document, Section, load

PROSE = " ".join(f"Sentence number {i} talks about saving money every month." for i in range(60))


def doc(text: str) -> Document:
    return Document("/kb/x.md", "X", [Section(("X", "Part"), text, 10)])


def test_budget_offsets_and_overlap() -> None:
    text = PROSE + "\n\n" + PROSE
    chunks = chunk_document(doc(text), "h", max_tokens=60, overlap=20)
    assert len(chunks) > 4
    for chunk in chunks:
        assert estimate_tokens(chunk.text) <= 60
        assert text[chunk.start - 10 : chunk.end - 10].strip() == chunk.text
        assert chunk.headings == ("X", "Part")
    shared = [a for a, b in zip(chunks, chunks[1:]) if b.start < a.end]
    assert shared, "consecutive chunks of one paragraph should overlap"


def test_code_block_is_never_split_between_sentences() -> None:
    code = "```python\n" + "\n".join(f"x{i} = {i}  # step {i}." for i in range(8)) + "\n```"
    text = "Intro sentence here.\n\n" + code + "\n\nOutro."
    chunks = chunk_document(doc(text), "h", max_tokens=200, overlap=0)
    assert any(code in chunk.text for chunk in chunks)


def test_ids_depend_on_text_not_position(tmp_path: Path) -> None:
    first = tmp_path / "a.md"
    first.write_text("# T\n\nAlpha paragraph.\n\nBeta paragraph.\n")
    before = {c.text: c.id for c in chunk_document(load(first), "h", max_tokens=4, overlap=0)}
    first.write_text("# T\n\nNew opening paragraph.\n\nAlpha paragraph.\n\nBeta paragraph.\n")
    after = {c.text: c.id for c in chunk_document(load(first), "h", max_tokens=4, overlap=0)}
    assert after["Alpha paragraph."] == before["Alpha paragraph."]
    assert after["Beta paragraph."] == before["Beta paragraph."]
    assert len(set(after.values())) == len(after)


def test_repeated_text_gets_distinct_ids() -> None:
    text = "Same words.\n\nOther words here.\n\nSame words."
    chunks = chunk_document(doc(text), "h", max_tokens=3, overlap=0)
    same = [c for c in chunks if c.text == "Same words."]
    assert len(same) == 2 and same[0].id != same[1].id


def test_embedding_text_has_title_and_trail_once() -> None:
    (chunk,) = chunk_document(doc("Body."), "h")
    assert embedding_text(chunk) == "X > Part\nBody."
