"""bench/chaos.py at a small size, so the bench cannot rot unseen: with faults injected and without, on
Slack and on Discord, every answer ends up whole on screen, once. And the two bugs the bench found:
one 5xx on the post of a final (after its placeholder failed too) lost the whole answer; and 200
answers at once took 100+ 429s from chat.update's workspace limit, because the pacer counted an
edit from when its slot was taken, while Slack counts it when it arrives."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from adapters.pacer import Pacer
from config.settings import load_settings
from tests.harness import slack_payloads as sp
from tests.harness.processes import env_without_settings
from tests.harness.slack_api import FakeSlack
from tests.harness.stack import Stack, until

ROOT = Path(__file__).resolve().parents[1]
SECRET = "chaos-test-signing-secret"


def test_the_chaos_bench_loses_and_doubles_no_answer(kb_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "bench" / "chaos.py"), "--conversations", "20", "--channels", "10",
               "--knowledge", str(kb_dir), "--json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=env_without_settings())  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    for platform in ("slack", "discord"):
        for run, seen in figures[platform].items():
            assert (seen["lost"], seen["duplicates"]) == (0, 0), (platform, run, seen)
            assert seen["complete"] == seen["conversations"] == 20, (platform, run, seen)
        faults = figures[platform]["faults"]
        assert faults["injected_failures"] > 0 and faults["redelivered"] > 0, faults  # the chaos did happen


async def test_a_5xx_on_the_post_of_a_final_is_tried_once_more(
    stack: Stack, setenv: Callable[..., None], kb_dir: Path
) -> None:
    setenv(SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET=SECRET, ADVISOR_KNOWLEDGE_PATHS=str(kb_dir))
    settings = load_settings(None)
    async with FakeSlack(strict=True, time_scale=0.05) as fake:
        fake.fail_next("chat.postMessage", "server_error", times=2, channel="C1")  # the placeholder, the final's post
        engine = stack.engine(settings)
        door = await stack.slack_door(engine, settings, fake, SECRET, bot_user_id="UBOT", update_interval=0.05)
        body = sp.app_mention("How big should my emergency fund be?")
        assert (await fake.deliver(door.url, body, SECRET)).acked
        (reply,) = await until(lambda: [m for m in fake.thread("C1", body["event"]["ts"]) if m.get("blocks")], 20)
        assert "three to six months" in reply["text"]
        assert len(fake.calls_to("chat.postMessage")) == 3  # 500, 500, and the final's post once more


async def test_an_edit_slot_counts_from_when_the_edit_was_answered() -> None:
    now = [0.0]
    pacer = Pacer(limit=3, window=10.0, clock=lambda: now[0])
    answers = [pacer.answer("T1") for _ in range(3)]
    for paced in answers:
        await paced.final()
    now[0] = 2.0  # a burst: the platform got (and counted) the last of them only now
    for paced in answers:
        paced.sent()
    now[0] = 11.0
    assert pacer.used("T1") == 3  # counted from the takes, the window would have freed a second early
    now[0] = 12.5
    assert pacer.used("T1") == 0
