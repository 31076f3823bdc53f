"""Helpers for bench/capacity.py: process probes, and the fakes process (the redis-server, the
environment and stopping processes come from tests/harness, as in the tests).

`python bench/capacity_helpers.py` is the fakes process: FakeSlack, FakeOpenAI and FakeDiscord
(tests/harness), each subclassed only to note *when* things happen, plus a small control API on
loopback that runs the load (signed Slack events POSTed to the advisor's port, Discord
MESSAGE_CREATE dispatches on the fake gateway) and answers with per-message timings. The
fakes, the load and the clock that times them share this one process, so the advisor processes
under test (and the bench process, which hosts the Discord bot) have the rest of the machine.
It prints one JSON line with its URLs, then serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ANSWER_MARK = "three to six months of essential expenses"  # in every scripted answer: a final is the model's


# ----- process probes (used by the bench process) --------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


def _listening_inodes(port: int) -> set[str]:
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                found.add(fields[9])
    return found


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` holds a listening socket on `port` (with SO_REUSEPORT each has its own)."""
    inodes = _listening_inodes(port)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


# ----- the fakes process ------------------------------------------------------------------------------


@dataclass
class Record:
    """One message's life, in time.monotonic() seconds (None: did not happen)."""

    key: str
    post: float | None = None  # Slack: the POST was sent; Discord: the MESSAGE_CREATE was dispatched
    ack: float | None = None  # Slack: the POST was answered
    ack_status: int | None = None
    first_post: float | None = None  # Slack: the placeholder; Discord: the first message (the reply)
    model: float | None = None  # the chat completion request reached the fake model
    first_text: float | None = None  # Slack: the first chat.update carrying answer text (streamed or final)
    streamed: float | None = None  # Slack: the first streamed (preview) chat.update
    final: float | None = None  # the message with blocks (Slack) / components (Discord)
    posts: int = 0  # placeholders (Slack) / first replies (Discord): 1 expected
    finals: int = 0  # final answers: 1 expected
    sorry: int = 0  # "something went wrong" messages
    final_ok: bool = False  # the final carries the model's answer (not a cooldown, refusal or offline reply)
    process: str = ""  # Slack: which advisor process answered (its bot token)
    redelivered: bool = False


class Tracker:
    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self.done: dict[str, asyncio.Event] = {}
        self.unmatched = 0
        self.api_errors: Counter[str] = Counter()

    def new(self, key: str) -> Record:
        record = self.records[key] = Record(key)
        self.done[key] = asyncio.Event()
        return record

    def get(self, key: str) -> Record | None:
        record = self.records.get(key)
        if record is None:
            self.unmatched += 1
        return record

    def finish(self, record: Record) -> None:
        event = self.done.get(record.key)
        if event is not None:
            event.set()


TRACK = Tracker()
CASE = re.compile(r"\bcase (\w+)\b")


def _fakes() -> tuple[type, type, type]:
    from aiohttp import web

    from adapters.slack.app import PLACEHOLDER, SORRY
    from tests.harness.discord_api import FakeDiscord
    from tests.harness.openai_server import _INCOMING, FakeOpenAI
    from tests.harness.slack_api import FakeSlack

    class TimedSlack(FakeSlack):
        async def _record(self, request: web.Request, method: str, **extra: Any) -> dict[str, Any]:
            call = await super()._record(request, method, **extra)
            self.calls.pop()  # appended just now, with no await since: keep memory flat
            request["bench_call"] = call
            return call

        async def _api(self, request: web.Request) -> web.Response:
            response = await super()._api(request)
            call = request.get("bench_call")
            if call is None:
                return response
            now = time.monotonic()
            try:
                body = json.loads(response.body)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                body = {}
            method, args = call["method"], call["args"]
            if not body.get("ok"):
                TRACK.api_errors[f"slack {method}: {body.get('error', response.status)}"] += 1
                return response
            channel = str(args.get("channel", ""))
            if method not in ("chat.postMessage", "chat.update") or not channel.startswith("CB"):
                return response
            record = TRACK.get(channel)
            if record is None:
                return response
            text = str(args.get("text") or "")
            if method == "chat.postMessage":
                record.posts += 1
                record.first_post = record.first_post or now
                return response
            if text == SORRY:
                record.sorry += 1
                TRACK.finish(record)
            elif args.get("blocks"):
                record.finals += 1
                record.final = record.final or now
                record.first_text = record.first_text or now
                record.final_ok = ANSWER_MARK in text
                record.process = call["headers"].get("authorization", "").removeprefix("Bearer xoxb-bench-")
                TRACK.finish(record)
            elif text and text != PLACEHOLDER:
                record.streamed = record.streamed or now
                record.first_text = record.first_text or now
            return response

    class TimedOpenAI(FakeOpenAI):
        async def _chat(self, request: web.Request) -> web.StreamResponse:
            if len(self.requests) > 500:
                self.requests.clear()
            body = _INCOMING.get().body
            found = CASE.search(json.dumps(body.get("messages", []) if isinstance(body, dict) else []))
            if found and (record := TRACK.records.get(found.group(1))) is not None:
                record.model = record.model or time.monotonic()
            return await super()._chat(request)

    class TimedDiscord(FakeDiscord):
        async def _answer(self, request: web.Request, call: dict[str, Any]) -> web.Response:
            response = await super()._answer(request, call)
            if len(self.calls) > 2000:
                self.calls.clear()
            if len(self.gateway_sent) > 2000:
                self.gateway_sent.clear()
                self.gateway_received.clear()
            now = time.monotonic()
            path, status = call.get("path", ""), response.status
            if status >= 400:
                TRACK.api_errors[f"discord {call.get('method')} {re.sub(r'[0-9]+', '#', path)}: {status}"] += 1
                return response
            found = re.fullmatch(r"/channels/(\d+)/messages(/\d+)?", path)
            if not found or call.get("method") not in ("POST", "PATCH"):
                return response
            record = TRACK.records.get(f"d{found.group(1)}")
            if record is None:
                return response
            body = call.get("json") or {}
            if call["method"] == "POST":
                record.posts += 1
                record.first_post = record.first_post or now
            content = str(body.get("content") or "")
            if content.startswith("Sorry, something went wrong"):
                record.sorry += 1
                TRACK.finish(record)
            elif body.get("components"):
                record.finals += 1
                record.final = record.final or now
                record.final_ok = ANSWER_MARK in content
                TRACK.finish(record)
            return response

    return TimedSlack, TimedOpenAI, TimedDiscord


QUESTIONS = (
    "How big should my emergency fund be?",
    "Should I pay off my credit card or save first?",
    "How do I ask for a raise?",
    "What is a good way to start a budget?",
)


def question(n: int, case: str) -> str:
    return f"{QUESTIONS[n % len(QUESTIONS)]} (case {case})"


async def serve_fakes() -> None:
    import aiohttp
    from aiohttp import web

    from tests.harness import discord_payloads as dp
    from tests.harness.loopback import serve
    from tests.harness.slack_payloads import app_mention, sign

    slack_cls, openai_cls, discord_cls = _fakes()
    slack, model, discord = slack_cls(), openai_cls(), discord_cls(heartbeat_interval_ms=5000)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0))

    async def post_event(url: str, secret: str, n: int, tag: str, redeliver: bool) -> Record:
        case = f"{tag}x{n:05d}"
        channel = f"CB{tag}x{n:05d}"
        record = TRACK.new(channel)
        TRACK.records[case] = record  # the model request names the case
        body = json.dumps(app_mention(question(n, case), user=f"UB{tag}{n:05d}", channel=channel)).encode()
        record.post = time.monotonic()
        headers = {"Content-Type": "application/json", **sign(body, secret)}
        try:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                record.ack_status = response.status
        except aiohttp.ClientError as exc:
            TRACK.api_errors[f"POST /slack/events: {type(exc).__name__}"] += 1
            record.ack_status = -1
        record.ack = time.monotonic()
        if redeliver:  # Slack's retry of the same event (as after a slow ack): may land on another process
            record.redelivered = True
            retry = {**headers, **sign(body, secret), "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
            try:
                async with session.post(url, data=body, headers=retry) as response:
                    await response.read()
                    if response.status != 200:
                        TRACK.api_errors[f"POST /slack/events (retry): HTTP {response.status}"] += 1
            except aiohttp.ClientError as exc:
                TRACK.api_errors[f"POST /slack/events (retry): {type(exc).__name__}"] += 1
        return record

    async def closed_loop(count: int, concurrency: int, start: Any, timeout: float) -> tuple[list[Record], float, float]:
        """`concurrency` workers: start a message, wait for its final answer, start the next."""
        queue = list(range(count))
        records: list[Record] = []
        began = time.monotonic()

        async def worker() -> None:
            while queue:
                n = queue.pop(0)
                record = await start(n)
                records.append(record)
                try:
                    await asyncio.wait_for(TRACK.done[record.key].wait(), timeout)
                except TimeoutError:
                    pass
                await asyncio.sleep(0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return records, began, time.monotonic()

    def answer(records: list[Record], began: float, ended: float) -> web.Response:
        return web.json_response({"records": [asdict(r) for r in records], "began": began, "ended": ended,
                                  "api_errors": dict(TRACK.api_errors), "unmatched": TRACK.unmatched})

    async def configure(request: web.Request) -> web.Response:
        args = await request.json()
        model.default_answer = args.get("answer", model.default_answer)
        model.chunk_chars = int(args.get("chunk_chars", model.chunk_chars))
        model.chunk_delay = float(args.get("chunk_delay", model.chunk_delay))
        return web.json_response({"ok": True})

    async def slack_run(request: web.Request) -> web.Response:
        a = await request.json()
        every = int(a.get("redeliver_every", 0))

        async def start(n: int) -> Record:
            return await post_event(a["url"], a["secret"], n, a["tag"], bool(every) and n % every == every - 1)

        records, began, ended = await closed_loop(a["count"], a["concurrency"], start, a.get("timeout", 60))
        return answer(records, began, ended)

    burst: dict[str, list[Record]] = {}

    async def slack_burst(request: web.Request) -> web.Response:
        """Post `count` events at once (acks are immediate), return when every one is at the model."""
        a = await request.json()
        gate = asyncio.Semaphore(32)

        async def one(n: int) -> Record:
            async with gate:
                return await post_event(a["url"], a["secret"], n, a["tag"], False)

        began = time.monotonic()
        records = burst[a["tag"]] = list(await asyncio.gather(*(one(n) for n in range(a["count"]))))
        deadline = time.monotonic() + a.get("timeout", 60)
        while time.monotonic() < deadline and not all(r.model for r in records):
            await asyncio.sleep(0.05)
        at_model = sum(1 for r in records if r.model)
        finished = sum(1 for r in records if r.final or r.sorry)
        return web.json_response({"at_model": at_model, "finished": finished, "began": began, "now": time.monotonic()})

    async def slack_burst_wait(request: web.Request) -> web.Response:
        a = await request.json()
        records = burst.pop(a["tag"])
        deadline = time.monotonic() + a.get("timeout", 120)
        for record in records:
            left = deadline - time.monotonic()
            if left > 0:
                try:
                    await asyncio.wait_for(TRACK.done[record.key].wait(), left)
                except TimeoutError:
                    pass
        return answer(records, min(r.post or 0 for r in records), time.monotonic())

    async def in_flight(request: web.Request) -> web.Response:
        tag = request.query["tag"]
        records = burst.get(tag, [])
        return web.json_response({
            "at_model": sum(1 for r in records if r.model),
            "finished": sum(1 for r in records if r.final or r.sorry),
        })

    async def discord_wait_ready(request: web.Request) -> web.Response:
        await discord.wait_ready(timeout=30)
        return web.json_response({"ok": True})

    async def discord_run(request: web.Request) -> web.Response:
        a = await request.json()
        base = int(a["base"])

        async def start(n: int) -> Record:
            channel_id, author_id = str(base + n), str(base + 500_000 + n)
            case = f"{a['tag']}x{n:05d}"
            record = TRACK.new(f"d{channel_id}")
            TRACK.records[case] = record
            payload = dp.message_create(question(n, case), author_id=author_id, channel_id=channel_id, guild_id=None,
                                        username=f"user{n}")
            record.post = time.monotonic()
            await discord.dispatch("MESSAGE_CREATE", payload)
            return record

        records, began, ended = await closed_loop(a["count"], a["concurrency"], start, a.get("timeout", 60))
        return answer(records, began, ended)

    control = web.Application(client_max_size=64 * 1024 * 1024)
    control.router.add_post("/config", configure)
    control.router.add_post("/slack/run", slack_run)
    control.router.add_post("/slack/burst", slack_burst)
    control.router.add_post("/slack/burst/wait", slack_burst_wait)
    control.router.add_get("/slack/in_flight", in_flight)
    control.router.add_post("/discord/wait_ready", discord_wait_ready)
    control.router.add_post("/discord/run", discord_run)
    async with slack, model, discord:
        runner, port = await serve(control, access_log=None)
        print(json.dumps({
            "control": f"http://127.0.0.1:{port}",
            "slack": slack.base_url,
            "openai": model.base_url,
            "discord_api": discord.api_base,
            "discord_gateway": discord.gateway_url,
        }), flush=True)
        loop = asyncio.get_running_loop()
        closed = asyncio.Event()
        loop.add_reader(sys.stdin.fileno(), lambda: closed.set() if not os.read(sys.stdin.fileno(), 4096) else None)
        await closed.wait()
        await runner.cleanup()
        await session.close()


if __name__ == "__main__":
    asyncio.run(serve_fakes())
