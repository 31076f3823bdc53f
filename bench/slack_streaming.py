"""Slack native streaming vs chat.update, in one run: Web API calls per answer, time to first visible
text, and how many answers at once one workspace takes before Slack's first 429.

    python bench/slack_streaming.py [--answers 10,20,40,60] [--json]

Everything is the product's own writing path in this process: the real SlackAdapter (bolt over signed
HTTP deliveries, the real slack_sdk client) against the strict fake Slack (tests/harness/slack_api.py:
Slack's documented tiers per method and workspace, 429 with Retry-After past them; chat.update Tier 3,
chat.startStream and chat.stopStream Tier 2, chat.appendStream Tier 4, chat.postMessage about one a
second per channel). The engine is scripted (the writers are what is measured, not the model): each
answer streams 1,200 characters in 60 pieces, 50 ms apart, after 200 ms "thinking", then its final
with two sources. "chat.update" is the baseline: the same adapter with native streaming switched off.

Two loads, each answer in its own channel of one workspace (so only the workspace-wide tiers count):
* "unpaced": advisor's own per-workspace budgets lifted, to find where Slack's tiers answer 429;
* "as shipped": the budgets on (chat.update 45 edits a minute; streams 18 starts, 18 stops and 90
  appends a minute, an answer past the start budget going the chat.update way): 429s, how many answers
  streamed natively, and how long the last final took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from bot.models import Citation, Final, IncomingMessage, TextDelta  # noqa: E402
from tests.harness import slack_payloads as sp  # noqa: E402
from tests.harness.slack_api import FakeSlack  # noqa: E402

SECRET = "bench-signing-secret"
PIECES, PIECE, PAUSE, THINK = 60, "Keep three to six months of expenses in an easy-access account. "[:20], 0.05, 0.2
STREAM_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream")
WRITE_METHODS = ("chat.postMessage", "chat.update", "chat.delete", *STREAM_METHODS)


class ScriptedEngine:
    """What SlackAdapter needs of the engine: `answer` streams a fixed answer at a model's pace."""

    class _Memory:
        async def history(self, conversation: str) -> list[Any]:
            return []

    def __init__(self) -> None:
        self.memory = self._Memory()
        self.turns = 0

    async def answer(self, message: IncomingMessage) -> AsyncIterator[Any]:
        await asyncio.sleep(THINK)
        text = ""
        for _ in range(PIECES):
            text += PIECE
            yield TextDelta(PIECE)
            await asyncio.sleep(PAUSE)
        self.turns += 1
        sources = tuple(Citation(n, f"guide{n}.md", f"Guide {n}", "", 0.9, "") for n in (1, 2))
        yield Final(text, sources, "model", turn_id=self.turns)

    async def record_feedback(self, turn: str, value: int) -> bool:
        return True


def build_adapter(fake: FakeSlack, native: bool, paced: bool) -> Any:
    os.environ.update(SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET=SECRET)
    from adapters.slack.app import SlackAdapter, build_client
    from adapters.slack.native_stream import Streams
    from config.settings import load_settings

    limits: dict[str, Any] = {} if paced else {"edit_limit": math.inf}
    adapter = SlackAdapter(
        ScriptedEngine(), None, load_settings(None), client=build_client("xoxb-test", fake.base_url),  # type: ignore[arg-type]
        bot_user_id="UBOT", **limits,
    )  # fmt: skip
    if not paced:
        adapter.streams = Streams(starts=10**6, stops=10**6, appends=10**6)
    adapter.streams.enabled = native
    return adapter


async def serve(adapter: Any) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(adapter.web_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/slack/events"


def visible_at(fake: FakeSlack, channel: str) -> float | None:
    """When the first answer text reached the channel: a stream opened with text, or an edit of text."""
    for call in fake.calls:
        args = call["args"]
        if args.get("channel") != channel or call.get("limited"):
            continue
        if call["method"] == "chat.startStream" and args.get("markdown_text"):
            return call["at"]
        if call["method"] == "chat.update" and PIECE[:10] in str(args.get("text") or ""):
            return call["at"]
    return None


async def run(n: int, native: bool, paced: bool) -> dict[str, Any]:
    """`n` answers at once, each in its own channel of one workspace."""
    async with FakeSlack(strict=True, streaming=True) as fake:
        adapter = build_adapter(fake, native, paced)
        runner, url = await serve(adapter)
        try:
            bodies = [sp.app_mention(f"question {i}", channel=f"C{i:03d}") for i in range(n)]
            sent = time.monotonic()
            deliveries = await asyncio.gather(*(fake.deliver(url, body, SECRET) for body in bodies))
            assert all(d.acked for d in deliveries)
            deadline = time.monotonic() + 180

            def finished() -> int:
                return sum(
                    any(m.get("blocks") for m in fake.thread(b["event"]["channel"], b["event"]["ts"]) if m.get("bot_id"))
                    for b in bodies
                )

            while (finished() < n or adapter._working) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            done = time.monotonic() - sent
        finally:
            await runner.cleanup()
        writes = Counter(c["method"] for c in fake.calls if c["method"] in WRITE_METHODS and not c.get("limited"))
        first = [at - sent for b in bodies if (at := visible_at(fake, b["event"]["channel"])) is not None]
        streamed = sum(bool(args.get("markdown_text")) for args in (c["args"] for c in fake.calls_to("chat.startStream")))
        return {
            "answers": n,
            "finished": finished(),
            "calls_per_answer": sum(writes.values()) / n,
            "calls": dict(writes),
            "first_visible_p50_ms": statistics.median(first) * 1000 if first else None,
            "first_visible_max_ms": max(first) * 1000 if first else None,
            "last_final_s": done,
            "ratelimited": dict(Counter(e["method"] for e in fake.limited)),
            "streamed_natively": len({c["args"]["channel"] for c in fake.calls_to("chat.startStream")
                                       if not c.get("limited")}) if streamed else 0,
        }  # fmt: skip


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", default="10,20,40,60", help="loads: answers at once, comma-separated")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    os.environ.setdefault("ADVISOR_DATA_DIR", tempfile.mkdtemp(prefix="advisor-bench-"))
    figures: dict[str, Any] = {"one": {}, "unpaced": {}, "paced": {}}
    for name, native in (("chat.update", False), ("native", True)):
        figures["one"][name] = await run(1, native, paced=True)
    for load in (int(x) for x in args.answers.split(",")):
        for name, native in (("chat.update", False), ("native", True)):
            figures["unpaced"].setdefault(name, []).append(await run(load, native, paced=False))
            figures["paced"].setdefault(name, []).append(await run(load, native, paced=True))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    base, nat = figures["one"]["chat.update"], figures["one"]["native"]
    print("One answer (1,200 characters in 60 pieces over 3 s):")
    print(f"{'':14}{'chat.update':>14}{'native':>14}{'ratio':>9}")
    print(f"{'Web API calls':14}{base['calls_per_answer']:>14.0f}{nat['calls_per_answer']:>14.0f}"
          f"{ratio(nat['calls_per_answer'], base['calls_per_answer']):>9}")  # fmt: skip
    print(f"{'  by method':14}{json.dumps(base['calls'])}  |  {json.dumps(nat['calls'])}")
    print(f"{'first text ms':14}{base['first_visible_p50_ms']:>14.0f}{nat['first_visible_p50_ms']:>14.0f}"
          f"{ratio(nat['first_visible_p50_ms'], base['first_visible_p50_ms']):>9}")  # fmt: skip
    for kind, title in (("unpaced", "Slack's tiers alone (advisor's budgets lifted)"), ("paced", "As shipped")):
        print(f"\n{title}: answers at once in one workspace")
        print(f"{'path':12}{'answers':>8}{'429s':>6}  {'by method':28}{'native':>7}{'calls/ans':>10}"
              f"{'first p50':>10}{'first max':>10}{'last final':>11}")  # fmt: skip
        for name in ("chat.update", "native"):
            for row in figures[kind][name]:
                limited = sum(row["ratelimited"].values())
                print(f"{name:12}{row['answers']:>8}{limited:>6}  {json.dumps(row['ratelimited']):28}"
                      f"{row['streamed_natively']:>7}{row['calls_per_answer']:>10.1f}"
                      f"{row['first_visible_p50_ms']:>9.0f}ms{row['first_visible_max_ms']:>8.0f}ms"
                      f"{row['last_final_s']:>10.1f}s")  # fmt: skip
    for name in ("chat.update", "native"):
        rows = figures["unpaced"][name]
        first = next((r["answers"] for r in rows if r["ratelimited"]), None)
        clean = [r["answers"] for r in rows if not r["ratelimited"]]
        print(f"{name}: no 429 up to {max(clean) if clean else 0} answers at once unpaced; first 429 at "
              f"{first if first else 'none of the loads'}")  # fmt: skip


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
