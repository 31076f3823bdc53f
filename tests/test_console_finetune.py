"""The console's fine-tuning page (/admin/finetune) through HTTP against `run_web`, with a real engine,
its SQLite memory and the fake OpenAI server: build a set from reviews, validate and cost it, launch and
follow the job, compare with the safety flag, switch the model and roll back; every POST's CSRF check,
an unknown job's 404 and the refusals that change nothing."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.admin_console import finetune as finetune_page
from bot.engine.pipeline import Engine
from bot.finetune.active import FileModelChoice
from config.settings import load_settings
from tests.harness.console import TOKEN, ConsoleServer, client, csrf_of, sign_in
from tests.harness.openai_server import FakeOpenAI
from tests.test_finetune_loop import CORRECTED, add_reviews, curated_csv

Served = tuple[ConsoleServer, Engine, aiohttp.ClientSession, FakeOpenAI]
CANDIDATE = "ft:gpt-4o-mini-2024-07-18:advisor:loop:abc123"
POSTS = ("build", "launch", "compare", "use", "rollback")


@pytest.fixture
async def served(setenv: Callable[..., None], kb_dir: Path, stack: Any, retriever: Any) -> AsyncIterator[Served]:
    async with FakeOpenAI() as fake:
        setenv(ADVISOR_ADMIN_TOKEN=TOKEN, ADVISOR_KNOWLEDGE_PATHS=str(kb_dir), OPENAI_BASE_URL=fake.base_url,
               OPENAI_API_KEY="sk-test-key-do-not-log")
        settings = load_settings(None)
        engine = stack.engine(settings, stack.chat_model(fake))
        server = await ConsoleServer.serving(settings, engine, retriever)
        try:
            async with client() as http:
                assert (await sign_in(http, server.url)).status == 303
                yield server, engine, http, fake
        finally:
            await server.stop()


async def get(served: Served, path: str) -> tuple[int, str]:
    server, _, http, _ = served
    async with http.get(server.url + path, allow_redirects=False) as response:
        return response.status, await response.text()


async def post(served: Served, path: str, data: dict[str, str], token: str | None = "") -> tuple[int, str, str]:
    """POST a form with the page's CSRF token ("" = fetch it, None = leave it out): status, Location, body."""
    server, _, http, _ = served
    if token == "":
        token = csrf_of((await get(served, "/admin/finetune"))[1])
    form = data | ({"csrf_token": token} if token is not None else {})
    async with http.post(server.url + path, data=form, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", ""), await response.text()


async def build(served: Served, tmp_path: Path) -> None:
    await add_reviews(served[1].memory)
    data_dir = load_settings(None).data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    curated = curated_csv(data_dir / "curated.csv", extra=8)  # the page reads only the data dir and knowledge paths
    status, location, _ = await post(served, "/admin/finetune/build", {"curated": str(curated), "min_reviews": "1"})
    assert (status, location) == (303, "/admin/finetune#build")


async def test_every_post_needs_the_csrf_token(served: Served, tmp_path: Path) -> None:
    await add_reviews(served[1].memory)
    for action in POSTS:
        status, _, body = await post(served, f"/admin/finetune/{action}", {"model": CANDIDATE, "confirm": "yes",
                                                                         "confirm_model": CANDIDATE}, token=None)
        assert status == 403 and "nothing was" in body, action
        status, _, _ = await post(served, f"/admin/finetune/{action}", {"model": CANDIDATE}, token="0" * 64)
        assert status == 403, action
    assert served[1].model.name == "gpt-4o-mini"
    assert not (load_settings(None).data_dir / "model.json").exists()
    assert not (load_settings(None).data_dir / "finetune").exists()
    assert 'id="build-report"' not in (await get(served, "/admin/finetune"))[1]


async def test_build_without_reviews_is_refused(served: Served) -> None:
    status, _, body = await post(served, "/admin/finetune/build", {"min_reviews": "1"})
    assert status == 400 and "no reviewed answers yet" in body and 'id="build-report"' not in body
    status, _, body = await post(served, "/admin/finetune/build", {"curated": "/etc/passwd"})
    assert status == 400 and "must be an existing .csv" in body


async def test_build_refuses_a_curated_file_outside_the_knowledge_paths_and_data_dir(served: Served, tmp_path: Path) -> None:
    await add_reviews(served[1].memory)
    (tmp_path / "elsewhere").mkdir()
    outside = curated_csv(tmp_path / "elsewhere" / "curated.csv", extra=8)
    status, _, body = await post(served, "/admin/finetune/build", {"curated": str(outside), "min_reviews": "1"})
    assert status == 400 and "inside the knowledge paths or the data directory" in body
    assert not (load_settings(None).data_dir / "finetune").exists()
    status, _, body = await post(served, "/admin/finetune/build", {"min_reviews": "zero"})
    assert status == 400 and "positive whole number" in body


async def test_build_validate_launch_and_follow_the_job(served: Served, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    await build(served, tmp_path)
    status, body = await get(served, "/admin/finetune")
    assert status == 200 and 'id="build-report"' in body
    assert "2 good, 1 corrected" in body and "duplicate_question" in body
    assert 'data-split="train"' in body and "no errors" in body and 'class="cost"' in body and "Estimate for" in body
    report = json.loads(next((load_settings(None).data_dir / "finetune").glob("*/report.json")).read_text())
    train = Path(report["files"]["train"]).read_text() + Path(report["files"]["test"]).read_text()
    assert CORRECTED in train or CORRECTED in Path(report["files"]["validation"]).read_text()

    status, location, _ = await post(served, "/admin/finetune/launch", {"model": "gpt-4o-mini-2024-07-18",
                                                                        "suffix": "loop", "epochs": "2"})
    found = re.search(r"job=(ftjob-[A-Za-z0-9]+)", location)
    assert status == 303 and found, location
    job_id = found.group(1)
    for _ in range(50):
        status, text = await get(served, f"/admin/finetune/jobs/{job_id}")
        job = json.loads(text)
        if job["status"] == "succeeded":
            break
        await asyncio.sleep(0.01)
    assert status == 200 and job["status"] == "succeeded" and job["fine_tuned_model"].startswith("ft:")
    assert [p["step"] for p in job["points"]] == [1, 2, 3] and job["total_steps"] == 3
    assert any("step 3/3" in line for line in job["events"])
    status, body = await get(served, f"/admin/finetune?job={job_id}")
    assert status == 200 and f'data-url="/admin/finetune/jobs/{job_id}"' in body and 'class="chart"' in body
    assert "sk-test-key-do-not-log" not in body and "sk-test-key-do-not-log" not in caplog.text
    assert f"fine-tuning job {job_id} launched" in caplog.text


async def test_launch_refuses_bad_input_and_launches_nothing(served: Served, tmp_path: Path) -> None:
    status, _, body = await post(served, "/admin/finetune/launch", {"model": "gpt-4o-mini-2024-07-18"})
    assert status == 400 and "Build a set first" in body
    await build(served, tmp_path)
    for form, message in (({"model": "gpt 4o; drop"}, "is not a model name"),
                          ({"model": "gpt-4o-mini-2024-07-18", "epochs": "-1"}, "epochs must be"),
                          ({"model": "gpt-4o-mini-2024-07-18", "suffix": "a b"}, "the suffix takes")):
        status, _, body = await post(served, "/admin/finetune/launch", form)
        assert status == 400 and message in body and "Nothing was launched" in body
    assert not [r for r in served[3].requests if r["path"].endswith("/fine_tuning/jobs") and r["method"] == "POST"]


async def test_an_unknown_job_is_a_clear_404(served: Served) -> None:
    for job_id in ("ftjob-doesnotexist", "not-a-job", "ftjob-%3Cscript%3E"):
        status, text = await get(served, f"/admin/finetune/jobs/{job_id}")
        assert status == 404 and "There is no fine-tuning job" in json.loads(text)["error"], job_id
    status, body = await get(served, "/admin/finetune?job=ftjob-doesnotexist")
    assert status == 404 and "There is no fine-tuning job &#x27;ftjob-doesnotexist&#x27;" in body


async def test_a_candidate_refusing_less_is_flagged(served: Served, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(finetune_page, "COMPARE_CONCURRENCY", 1)  # the fake's scripted answers in order
    await build(served, tmp_path)
    fake = served[3]
    judged = json.dumps({n: {"score": 4, "reason": "ok"} for n in ("professional", "personable", "helpful", "safe")})
    fake.default_answer = "I can't help with that."
    fake.script_chat("Routine.", "Routine.", judged, judged, "I can't help with that.", "Sure, here is how to do it.")
    report = json.loads(next((load_settings(None).data_dir / "finetune").glob("*/report.json")).read_text())
    status, _, _ = await post(served, "/admin/finetune/compare", {"base": "gpt-4o-mini", "candidate": CANDIDATE,
                                                                  "test": report["files"]["test"], "limit": "1",
                                                                  "judge": "judge"})
    assert status == 303
    for _ in range(200):
        state = json.loads((await get(served, "/admin/finetune/compare.json"))[1])
        if state["state"] != "running":
            break
        await asyncio.sleep(0.02)
    assert state["state"] == "done" and state["flag"].startswith(f"FLAGGED: {CANDIDATE} refused")
    body = (await get(served, "/admin/finetune"))[1]
    assert 'class="flash error flagged"' in body and "Qi et al., 2023" in body
    assert state["summary"]["candidate"]["refusals"] == state["summary"]["base"]["refusals"] - 1


async def test_the_switch_needs_the_confirm_and_rolls_back(served: Served) -> None:
    _, engine, _, _ = served
    choice = FileModelChoice(load_settings(None).data_dir / "model.json")
    for form, message in (({"model": CANDIDATE, "confirm_model": CANDIDATE}, "tick the confirm box"),
                          ({"model": CANDIDATE, "confirm_model": "ft:other", "confirm": "yes"}, "type the model name twice"),
                          ({"model": "bad name<>", "confirm_model": "bad name<>", "confirm": "yes"}, "is not a model name")):
        status, _, body = await post(served, "/admin/finetune/use", form)
        assert status == 400 and message in body and "not switched" in body
    assert engine.model.name == "gpt-4o-mini" and await choice.load() == {}
    status, _, body = await post(served, "/admin/finetune/rollback", {})
    assert status == 400 and "no previous model" in body

    status, location, _ = await post(served, "/admin/finetune/use", {"model": CANDIDATE, "confirm_model": CANDIDATE,
                                                                     "confirm": "yes"})
    assert (status, location) == (303, "/admin/finetune?done=switched#switch")
    assert engine.model.name == CANDIDATE  # at once
    assert (await choice.load())["previous"] == "gpt-4o-mini"  # and kept for a restart
    body = (await get(served, "/admin/finetune?done=switched"))[1]
    assert f"Switched: the advisor now answers with {CANDIDATE}." in body
    assert f'<code id="model-in-use">{CANDIDATE}</code>' in body and "Roll back to gpt-4o-mini" in body

    status, _, _ = await post(served, "/admin/finetune/rollback", {})
    assert status == 303 and engine.model.name == "gpt-4o-mini"
    assert (await choice.load())["current"] == "gpt-4o-mini"


async def test_the_page_is_in_the_navigation(served: Served) -> None:
    status, body = await get(served, "/admin")
    assert status == 200 and '<a href="/admin/finetune">Fine-tuning</a>' in body
    status, script = await get(served, "/admin/static/finetune.js")
    assert status == 200 and "polyline" in script


async def test_compare_refuses_bad_input_and_starts_nothing(served: Served, tmp_path: Path) -> None:
    assert json.loads((await get(served, "/admin/finetune/compare.json"))[1]) == {"state": "idle"}
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]}))
    for form, message in (({"base": "gpt-4o-mini", "candidate": "gpt-4o-mini", "test": str(test)}, "the same model"),
                          ({"base": "gpt-4o-mini", "candidate": "a b", "test": str(test)}, "is not a model name"),
                          ({"base": "gpt-4o-mini", "candidate": CANDIDATE, "test": "/etc/passwd"}, "is a .jsonl file"),
                          ({"base": "gpt-4o-mini", "candidate": CANDIDATE, "test": str(tmp_path / "no.jsonl")}, "cannot read the file"),
                          ({"base": "gpt-4o-mini", "candidate": CANDIDATE, "test": str(test), "limit": "x"}, "positive")):
        status, _, body = await post(served, "/admin/finetune/compare", form)
        assert status == 400 and message in body and "Nothing was started" in body, message
    assert json.loads((await get(served, "/admin/finetune/compare.json"))[1]) == {"state": "idle"}
    assert not [r for r in served[3].requests if r["path"].endswith("/chat/completions")]
