"""`advisor finetune launch / follow / status / cancel / list` against the fake OpenAI server."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import openai
import pytest

from bot.cli import main
from bot.finetune.envfile import set_env_value
from config.settings import load_settings
from tests.harness.openai_server import FakeOpenAI

DATA = Path(__file__).parent / "data" / "finetune"
GOOD = DATA / "good.jsonl"


@pytest.fixture
def fake(openai_in_thread: FakeOpenAI) -> FakeOpenAI:
    """The fake OpenAI server in a thread (conftest), so the command can run its own loop."""
    return openai_in_thread


def start_job(fake: FakeOpenAI) -> str:
    """A job created behind the command's back, as another machine would."""
    client = openai.OpenAI(base_url=fake.base_url, api_key="sk-test-key", max_retries=0)
    uploaded = client.files.create(file=GOOD, purpose="fine-tune")
    return client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=uploaded.id).id


def posts(fake: FakeOpenAI, suffix: str) -> list[dict]:
    return [r for r in fake.requests if r["method"] == "POST" and r["path"].endswith(suffix)]


def test_launch_uploads_follows_and_uses_the_model(
    fake: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / "advisor.env"
    env_file.write_text("# my settings\nADVISOR_LOG_LEVEL=INFO\nADVISOR_OPENAI_CHAT_MODEL=gpt-4o-mini\nADVISOR_TOP=1\n")
    args = ["--env-file", str(env_file), "finetune", "launch", "--train", str(GOOD), "--validation", str(GOOD)]
    args += ["--model", "gpt-4o-mini-2024-07-18", "--suffix", "advisor-test", "--epochs", "2"]
    assert main([*args, "--interval", "0.01", "--use"]) == 0
    out = capsys.readouterr().out

    assert "No errors." in out and "Estimate: 2 epochs" in out  # validated first
    assert [f["purpose"] for f in fake._files.values()] == ["fine-tune", "fine-tune", "fine-tune-results"]
    body = posts(fake, "/fine_tuning/jobs")[0]["json"]
    assert body["model"] == "gpt-4o-mini-2024-07-18" and body["suffix"] == "advisor-test"
    assert body["training_file"] != body["validation_file"]
    assert body["method"] == {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
    for line in ("status: queued", "status: running", "Fine-tuning job started", "status: succeeded"):
        assert line in out
    assert "step 3/3: train_loss=0.6667, train_mean_token_accuracy=0.8000" in out
    model = out.split("Fine-tuned model: ")[1].split()[0]
    assert model.startswith("ft:gpt-4o-mini-2024-07-18:advisor-test:")

    assert env_file.read_text() == (
        f"# my settings\nADVISOR_LOG_LEVEL=INFO\nADVISOR_OPENAI_CHAT_MODEL={model}\nADVISOR_TOP=1\n"
    )
    assert load_settings(env_file).openai.chat_model == model  # the engine now answers with it


def test_launch_stops_on_validation_errors_and_uploads_nothing(
    fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["finetune", "launch", "--train", str(DATA / "broken.jsonl"), "--model", "gpt-4o-mini"]) == 1
    captured = capsys.readouterr()
    assert "invalid_json" in captured.out and "nothing was uploaded" in captured.err
    assert not posts(fake, "/files") and not posts(fake, "/fine_tuning/jobs")


def test_launch_without_api_settings_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["finetune", "launch", "--train", str(GOOD), "--model", "gpt-4o-mini"]) == 2
    assert "this needs the OpenAI API: set OPENAI_API_KEY (or OPENAI_BASE_URL" in capsys.readouterr().err
    assert main(["finetune", "list"]) == 2


def test_a_failed_job_prints_its_error_and_exits_1(fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    fake.set_job_outcome("failed")
    assert main(["finetune", "launch", "--train", str(GOOD), "--model", "gpt-4o-mini", "--interval", "0.01"]) == 1
    captured = capsys.readouterr()
    assert "[error] The job failed due to an invalid training file." in captured.out
    assert "failed: The job failed due to an invalid training file: file-" in captured.err
    assert "(invalid_training_file)" in captured.err and "Fine-tuned model" not in captured.out


def test_a_rate_limited_upload_is_retried(fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    fake.fail_next("/files", "rate_limit", retry_after=0.01)
    assert main(["finetune", "launch", "--train", str(GOOD), "--model", "gpt-4o-mini", "--interval", "0.01"]) == 0
    assert len(posts(fake, "/files")) == 2 and len(posts(fake, "/fine_tuning/jobs")) == 1


def test_a_server_that_keeps_failing_stops_the_launch(fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    fake.fail_next("/files", "server_error", times=3)
    assert main(["finetune", "launch", "--train", str(GOOD), "--model", "gpt-4o-mini"]) == 1
    assert "error: the API answered 500: The server had an error" in capsys.readouterr().err
    assert len(posts(fake, "/files")) == 3 and not posts(fake, "/fine_tuning/jobs")


def test_ctrl_c_stops_following_at_once_but_leaves_the_job_running(
    fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    """A terminal's Ctrl-C goes to the whole process and may land on any thread, or just before the loop
    blocks in select(): either way the main thread is not woken. It must still stop the command at once,
    not at the next poll (an hour away here)."""
    job_id = start_job(fake)
    returned = threading.Event()
    unheard: list[str] = []

    def interrupt_once_polling() -> None:
        deadline = time.monotonic() + 30
        while not any(r["path"].endswith(f"/{job_id}/events") for r in fake.requests):
            if time.monotonic() > deadline:
                unheard.append("the command never polled the job's events")
                break
            time.sleep(0.01)
        else:
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # Ctrl-C, delivered on this thread
            if returned.wait(10):  # a generous ceiling: it takes milliseconds
                return
            unheard.append("Ctrl-C was not acted on until the next poll")
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)  # end the test, not hang it

    threading.Thread(target=interrupt_once_polling, daemon=True).start()
    code = main(["finetune", "follow", job_id, "--interval", "3600", "--use"])
    returned.set()
    assert not unheard and code == 130
    captured = capsys.readouterr()
    assert f"the job keeps running. Resume with: advisor finetune follow {job_id} --use" in captured.err
    assert not posts(fake, "/cancel") and fake._jobs[job_id].data["status"] == "queued"

    assert main(["finetune", "follow", job_id, "--interval", "0.01"]) == 0  # resuming shows the whole story
    out = capsys.readouterr().out
    assert out.index("Files validated") < out.index("step 1/3") < out.index("Fine-tuned model: ft:")


def test_status_shows_events_and_checkpoints(fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = start_job(fake)
    assert main(["finetune", "follow", job_id, "--interval", "0.01"]) == 0
    capsys.readouterr()
    assert main(["finetune", "status", job_id]) == 0
    out = capsys.readouterr().out
    assert "status:           succeeded" in out and "The job has successfully completed" in out
    assert "checkpoints:" in out and "step 3: ft:gpt-4o-mini-2024-07-18:advisor:" in out and "train loss 0.6667" in out
    assert main(["finetune", "status", job_id, "--json"]) == 0
    assert f'"id": "{job_id}"' in capsys.readouterr().out
    assert main(["finetune", "status", "ftjob-missing"]) == 2
    assert "404: Could not find fine-tuning job: ftjob-missing" in capsys.readouterr().err


def test_cancel_then_follow_reports_the_cancellation(fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = start_job(fake)
    assert main(["finetune", "cancel", job_id]) == 0
    assert f"Cancelled {job_id} (status: cancelled)." in capsys.readouterr().out
    assert main(["finetune", "follow", job_id, "--interval", "0.01"]) == 1
    assert "ended as cancelled" in capsys.readouterr().err
    assert main(["finetune", "cancel", job_id]) == 1
    assert "has already cancelled and cannot be cancelled" in capsys.readouterr().err


def test_list_shows_recent_jobs(fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["finetune", "list"]) == 0
    assert "No fine-tuning jobs." in capsys.readouterr().out
    first, second = start_job(fake), start_job(fake)
    assert main(["finetune", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["job", "status", "base", "model", "fine-tuned", "model", "created"]
    assert [line.split()[0] for line in lines[1:]] == [second, first]
    assert main(["finetune", "list", "--limit", "1", "--json"]) == 0
    assert second in capsys.readouterr().out


def test_set_env_value_keeps_other_lines(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    set_env_value(path, "ADVISOR_OPENAI_CHAT_MODEL", "ft:one")
    assert path.read_text() == "ADVISOR_OPENAI_CHAT_MODEL=ft:one\n"
    path.write_text("A=1\nexport ADVISOR_OPENAI_CHAT_MODEL = old\n\n# note\nB=2")
    set_env_value(path, "ADVISOR_OPENAI_CHAT_MODEL", "ft:two")
    assert path.read_text() == "A=1\nADVISOR_OPENAI_CHAT_MODEL=ft:two\n\n# note\nB=2\n"
    set_env_value(path, "OTHER", "x")
    assert path.read_text().endswith("B=2\nOTHER=x\n")
