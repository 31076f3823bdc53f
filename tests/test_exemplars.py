"""Retrieved few-shot examples: a second collection of Q&A pairs shown to the model as voice only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_engine import ask, chat_requests, fake, make_engine, model_for  # noqa: F401  (fixture re-used)

from bot.cli import main
from bot.models import Exemplar
from bot.wiring import build_retrieval, open_exemplars
from config.settings import load_settings
from retrieval.exemplars import ExemplarFileError, ExemplarIndex, load_exemplars
from retrieval.sparse import Bm25Encoder
from retrieval.store_edge import EdgeStore

BUDGET_Q = "How do I start a monthly budget when my income changes?"
BUDGET_A = "That's a great place to start. List your fixed costs first, then plan on your lowest month."
GRIEF_Q = "My dog died last week and I can't focus at work."
GRIEF_A = "I'm so sorry about your dog. Grief can make focus hard; be gentle with yourself."
RENT_Q = "Should I rent or buy a flat?"
RENT_A = "It depends on how long you'll stay; here is how to weigh it."


def chat_line(question: str, answer: str) -> str:
    messages = [
        {"role": "system", "content": "You are a kind advisor."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
    ]
    return json.dumps({"messages": messages})


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(chat_line(q, a) for q, a in [(BUDGET_Q, BUDGET_A), (GRIEF_Q, GRIEF_A), (RENT_Q, RENT_A)]))
    return path


async def exemplar_index(tmp_path: Path, embedder: Any, exemplars: list[Exemplar]) -> ExemplarIndex:
    index = ExemplarIndex(EdgeStore.open(tmp_path / "ex", "advisor-exemplars", embedder.dim), embedder, Bm25Encoder())
    await index.replace(exemplars, "train.jsonl")
    return index


def test_loads_chat_lines_question_answer_fields_and_csv(tmp_path: Path, train_file: Path) -> None:
    assert load_exemplars(train_file).exemplars[0] == Exemplar(BUDGET_Q, BUDGET_A)
    fields = tmp_path / "qa.jsonl"
    fields.write_text(json.dumps({"questionText": RENT_Q, "answerText": RENT_A}) + "\n")
    assert load_exemplars(fields).exemplars == [Exemplar(RENT_Q, RENT_A)]
    table = tmp_path / "qa.csv"
    table.write_text(f'question,answer\n"{RENT_Q}","{RENT_A}"\n')
    assert load_exemplars(table).exemplars == [Exemplar(RENT_Q, RENT_A)]


def test_bad_rows_are_skipped_with_reasons_and_a_useless_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join(
            [
                chat_line(BUDGET_Q, BUDGET_A),
                "{not json",
                json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
                json.dumps(["a list"]),
                chat_line(BUDGET_Q, BUDGET_A),  # a duplicate is dropped silently
            ]
        )
    )
    report = load_exemplars(path)
    assert report.exemplars == [Exemplar(BUDGET_Q, BUDGET_A)]
    assert [s.split(":")[0] for s in report.skipped] == ["line 2", "line 3", "line 4"]
    assert "not valid JSON" in report.skipped[0] and "no user message followed by an assistant" in report.skipped[1]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("{bad\n")
    with pytest.raises(ExemplarFileError, match="no usable question/answer pair.*line 1: not valid JSON"):
        load_exemplars(empty)


async def test_the_most_similar_pairs_come_back_and_replace_drops_the_old_set(tmp_path: Path, embedder: Any) -> None:
    index = await exemplar_index(tmp_path, embedder, [Exemplar(BUDGET_Q, BUDGET_A), Exemplar(GRIEF_Q, GRIEF_A)])
    try:
        (found,) = await index.similar("my pay is irregular, how should I budget?", 1)
        assert found == Exemplar(BUDGET_Q, BUDGET_A)
        assert await index.similar("anything", 0) == []
        await index.replace([Exemplar(RENT_Q, RENT_A)], "other.jsonl")
        assert await index.count() == 1 and await index.similar("budget", 3) == [Exemplar(RENT_Q, RENT_A)]
    finally:
        await index.close()


async def test_the_prompt_shows_similar_pairs_as_voice_never_as_sources(
    tmp_path: Path, retriever: Any, embedder: Any, fake: Any
) -> None:
    index = await exemplar_index(tmp_path, embedder, [Exemplar(BUDGET_Q, BUDGET_A), Exemplar(GRIEF_Q, GRIEF_A)])
    fake.script_chat("Start with your fixed costs [1].")
    engine = make_engine(tmp_path, retriever, model_for(fake), exemplars=index)
    try:
        _, final = await ask(engine, "How should I budget with an irregular income?")
    finally:
        await index.close()
    (request,) = chat_requests(fake)
    voice = request["messages"][1]
    assert voice["role"] == "system" and "<voice_examples>" in voice["content"]
    assert "not facts and not sources" in voice["content"]
    assert BUDGET_Q in voice["content"] and BUDGET_A in voice["content"]  # k = 2 by default: both pairs here
    assert "<reference_passages>" in request["messages"][-1]["content"]  # facts stay in the passages
    assert BUDGET_A not in request["messages"][-1]["content"]
    assert all(c.title != "exemplar" for c in final.citations) and final.citations


async def test_k_zero_disables_and_a_failing_index_does_not_stop_the_answer(
    tmp_path: Path, retriever: Any, embedder: Any, fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = await exemplar_index(tmp_path, embedder, [Exemplar(BUDGET_Q, BUDGET_A)])
    monkeypatch.setenv("ADVISOR_RETRIEVAL_EXEMPLARS_K", "0")
    fake.script_chat("Answer one [1].", "Answer two [1].")
    off = make_engine(tmp_path, retriever, model_for(fake), settings=load_settings(None), exemplars=index)
    await ask(off, "How should I budget?")
    await index.close()  # a closed store raises on search
    monkeypatch.setenv("ADVISOR_RETRIEVAL_EXEMPLARS_K", "1")
    broken = make_engine(tmp_path / "b", retriever, model_for(fake), settings=load_settings(None), exemplars=index)
    _, final = await ask(broken, "How should I budget?")
    assert final.mode == "model"
    assert all("<voice_examples>" not in m["content"] for r in chat_requests(fake) for m in r["messages"])


async def test_the_tone_pass_rewrite_sees_the_examples_too(
    tmp_path: Path, retriever: Any, embedder: Any, fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADVISOR_TONE_PASS", "true")
    index = await exemplar_index(tmp_path, embedder, [Exemplar(GRIEF_Q, GRIEF_A)])
    fake.script_chat("Draft [1].", "Polished [1].")
    engine = make_engine(tmp_path, retriever, model_for(fake), settings=load_settings(None), exemplars=index)
    try:
        await ask(engine, "How big should my emergency fund be?")
    finally:
        await index.close()
    draft_call, rewrite_call = chat_requests(fake)
    assert GRIEF_A in draft_call["messages"][1]["content"] and GRIEF_A in rewrite_call["messages"][1]["content"]


async def test_advisor_ingest_exemplars_then_the_engine_uses_them(
    tmp_path: Path, train_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _main(["ingest", "--exemplars", str(train_file)]) == 0
    out = capsys.readouterr().out
    assert "3 exemplar pairs indexed from train.jsonl (0 rows skipped); the 2 most similar" in out
    settings = load_settings(None)
    stack = await build_retrieval(settings)
    try:
        index = await open_exemplars(settings, stack)
        assert (await index.similar("budgeting on a variable income", 1))[0].question == BUDGET_Q
    finally:
        await stack.close()
    assert await _main(["ingest", "--exemplars", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert await _main(["ingest"]) == 2
    assert "advisor ingest PATH" in capsys.readouterr().err


async def _main(argv: list[str]) -> int:
    import asyncio

    return await asyncio.to_thread(main, argv)
