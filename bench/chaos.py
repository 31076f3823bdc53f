"""Chaos benchmark: many conversations at once in one Slack workspace and one Discord guild, against
the strict fakes, with write failures, 429s and duplicate deliveries injected at a fixed seed.

    python bench/chaos.py [--conversations 200] [--channels 20] [--seed 15] [--json]

Each platform runs twice in the same run: a baseline with nothing injected, then the same load
with faults, so their cost reads as a ratio. Everything is the product's own path, in this process:
the real engine (`build_services`: moderation through the fake model, the crisis detector, SQLite
memory, the sample knowledge base), the real adapters, bolt over signed HTTP deliveries with the
real slack_sdk client, the real discord.py client on the fake gateway; only the fake model streams
from a process of its own, as a model server does. It streams each conversation its own answer
(tagged with the conversation's case), so the fakes' final message state says, per conversation,
whether its whole answer is on screen, and how many times.

Faults (a seeded share of the calls, beyond what the strict limits produce):
  Slack: chat.update and chat.postMessage answer 429 (Retry-After 1 s) or 500; chat.update finds
         its message deleted (message_not_found, the message really gone); some events are
         delivered again as Slack retries (X-Slack-Retry-Num) while their answer streams.
  Discord: message sends and edits answer 429 (retry_after 0.5 s), 500 or 403 Missing
         Permissions; edits find their message deleted (404 Unknown Message); the gateway drops
         mid-burst (discord.py resumes, the fake replays what it missed) and some messages are
         dispatched again as a replay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp

from adapters.slack.app import EDIT_LIMIT
from bot.ops.metrics import REGISTRY, WRITE_OUTCOMES
from retrieval.evaluate import percentile
from tests.harness import discord_payloads as dp
from tests.harness import slack_payloads as sp
from tests.harness.discord_api import FakeDiscord
from tests.harness.openai_server import _INCOMING, FakeOpenAI
from tests.harness.processes import env_without_settings
from tests.harness.slack_api import FakeSlack
from tests.harness.stack import Stack

Json = dict[str, Any]
SEED = 15
SLACK_SCALE = 0.1  # a minute of Slack's limits lasts 6 s: still well above the event loop's stalls on a busy machine
SECRET = "chaos-signing-secret"
ANSWER = (
    "An emergency fund should cover three to six months of essential expenses [1]. Keep it in an "
    "easy-access savings account, apart from everyday spending, and top it up first after you use it. "
    "Start small: one month of costs is a good first goal, then build towards the full amount [1]."
)
STREAM = {"chunk_chars": 12, "chunk_delay": 0.04}  # 25 chunks over about a second: answers overlap
QUESTIONS = (
    "How big should my emergency fund be?",
    "Should I pay off my credit card or save first?",
    "How do I start an emergency fund on a small income?",
    "Where should I keep my emergency savings?",
)
CASE = re.compile(r"\(case (\w+)\)")
TAG = re.compile(r"Ref (\w+)\.")
ALERTS_SLACK, ALERTS_DISCORD = "CALERTS", "6999"
SETTLE_QUIET = 2.0  # seconds with nothing in flight and nothing newly complete: the run is over
RUN_TIMEOUT = 300.0
# Slack deliveries open at once: each is a new connection, and 200 connects in one instant overflow the
# listen backlog (128), so the kernel's SYN retries (1 s, 3 s) would be measured as late acks
DELIVERIES_AT_ONCE = 50


def expected(case: str) -> str:
    """The whole answer the user of `case` should see."""
    return f"Ref {case}. {ANSWER}"


def squash(text: str) -> str:
    return " ".join(text.split())


# ----- faults ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """Shares of write calls that fail, by kind, and of events delivered twice."""

    rate_limited: float = 0.0
    server_error: float = 0.0
    gone: float = 0.0  # Slack: message_not_found on chat.update; Discord: 404 Unknown Message on edits
    forbidden: float = 0.0  # Discord: 403 Missing Permissions on sends and edits
    duplicates: float = 0.0

    @property
    def active(self) -> bool:
        return any(asdict(self).values())


SLACK_FAULTS = Faults(rate_limited=0.04, server_error=0.04, gone=0.03, duplicates=0.05)
DISCORD_FAULTS = Faults(rate_limited=0.04, server_error=0.03, gone=0.03, forbidden=0.03, duplicates=0.05)


class Injector:
    """Seeded draws of which call fails and how, and of which events come twice; counts what it injected.

    The events' draws have a generator of their own: they are made in order, so the same events come
    twice in every run of a seed, while which call gets which fault draw depends on the order calls come in.
    """

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self.rng = random.Random(seed)
        self.events = random.Random(f"{seed}-events")
        self.injected: Counter[str] = Counter()

    def draw(self, where: str, kinds: Iterable[str]) -> str | None:
        """One of `kinds` at its share (drawn in one go, so shares add up), or None; counted under `where`."""
        roll = self.rng.random()
        for kind in kinds:
            share = getattr(self.faults, kind)
            if roll < share:
                self.injected[f"{where}: {kind}"] += 1
                return kind
            roll -= share
        return None

    def twice(self) -> float | None:
        """Whether the next event comes twice: the delay of the second delivery (up to 2 s), or None."""
        if self.events.random() < self.faults.duplicates:
            return self.events.uniform(0.0, 2.0)
        return None

    def total(self, kind: str | None = None) -> int:
        return sum(n for key, n in self.injected.items() if kind is None or key.endswith(f": {kind}"))


# ----- what the users see ----------------------------------------------------------------------------


@dataclass
class Conversation:
    case: str
    sent: float  # time.monotonic() when its event went out
    complete_at: float | None = None  # first moment the whole answer was on screen


class Ledger:
    """Every conversation of a run, marked complete the first time a write shows its whole answer."""

    def __init__(self) -> None:
        self.conversations: dict[str, Conversation] = {}
        self.last_progress = time.monotonic()

    def start(self, case: str) -> None:
        self.conversations[case] = Conversation(case, time.monotonic())

    def seen(self, text: str) -> None:
        """A message now reads `text`: the conversation it answers is complete if all of it is there."""
        found = TAG.search(text)
        conversation = self.conversations.get(found.group(1)) if found else None
        if conversation is None or conversation.complete_at is not None:
            return
        if squash(expected(conversation.case)) in squash(text):
            conversation.complete_at = time.monotonic()
            self.last_progress = conversation.complete_at

    def all_complete(self) -> bool:
        return all(c.complete_at is not None for c in self.conversations.values())

    def latencies(self) -> list[float]:
        return [c.complete_at - c.sent for c in self.conversations.values() if c.complete_at is not None]


class ScriptedOpenAI(FakeOpenAI):
    """The fake model, answering each conversation with its own tagged answer."""

    async def _chat(self, request: Any) -> Any:
        body = _INCOMING.get().body
        messages = body.get("messages", []) if isinstance(body, dict) else []
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        found = CASE.search(str(users[-1].get("content", ""))) if users else None
        if found:  # taken by the handler before its first await: this request's answer
            self._answers.append(expected(found.group(1)))
        return await super()._chat(request)


def slack_visible(message: Json) -> str:
    """What a Slack message shows: its blocks' text, else its text."""
    blocks = message.get("blocks") or []
    sections = [b["text"]["text"] for b in blocks if b.get("type") == "section" and b.get("text")]
    return "\n".join(sections) if sections else str(message.get("text") or "")


class ChaosSlack(FakeSlack):
    """The strict fake Slack, failing a seeded share of chat.update / chat.postMessage calls."""

    def __init__(self, injector: Injector, ledger: Ledger, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.injector, self.ledger = injector, ledger

    def _take_fault(self, method: str, channel: Any = None) -> Any:
        fault = super()._take_fault(method, channel)
        if fault is not None or method not in ("chat.update", "chat.postMessage"):
            return fault
        kind = self.injector.draw(method, ("rate_limited", "server_error"))
        if kind == "rate_limited":
            self.fail_next(method, "rate_limited", retry_after=1)
        elif kind == "server_error":
            self.fail_next(method, "server_error")
        return super()._take_fault(method, channel)

    def _update(self, args: Json, token: str) -> Json:
        if self.injector.draw("chat.update", ("gone",)):  # someone deleted the message being edited
            self._channels.get(str(args.get("channel")), {}).pop(str(args.get("ts")), None)
        result = super()._update(args, token)
        self.ledger.seen(slack_visible(result["message"]))
        return result

    def _post_message(self, args: Json, token: str) -> Json:
        result = super()._post_message(args, token)
        self.ledger.seen(slack_visible(result["message"]))
        return result

    def bot_messages(self, channel: str, thread_ts: str | None) -> list[Json]:
        """The bot's messages in a thread, or (thread_ts None) in the whole channel."""
        stored = self._channels.get(channel, {}).values()
        return [m for m in stored if m.get("bot_id") and (thread_ts is None or m.get("thread_ts") == thread_ts)]


_MESSAGE_PATH = re.compile(r"^/channels/(\d+)/messages(?:/(\d+))?$")


class ChaosDiscord(FakeDiscord):
    """The strict fake Discord, failing a seeded share of message sends and edits."""

    def __init__(self, injector: Injector, ledger: Ledger, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.injector, self.ledger = injector, ledger

    def _take_fault(self, method: str, path: str) -> Any:
        fault = super()._take_fault(method, path)
        found = _MESSAGE_PATH.match(path)
        edit = method == "PATCH"
        if fault is not None or not found or method not in ("POST", "PATCH") or edit != bool(found.group(2)):
            return fault
        kinds = ("rate_limited", "server_error", "forbidden", *(("gone",) if edit else ()))
        kind = self.injector.draw("edit" if edit else "send", kinds)
        if kind == "gone":  # someone deleted the message being edited: the fake answers 404 Unknown Message
            self._messages.get(found.group(1), {}).pop(found.group(2), None)
        elif kind == "rate_limited":
            self.fail_next(method, path, "rate_limited", retry_after=0.5)
        elif kind is not None:
            self.fail_next(method, path, kind)
        return super()._take_fault(method, path)

    async def _echo(self, event: str, data: Json) -> None:
        self.ledger.seen(str(data.get("content") or ""))
        await super()._echo(event, data)

    def bot_messages(self) -> list[Json]:
        """The bot's messages in every channel, DMs included."""
        stored = [m for messages in self._messages.values() for m in messages.values()]
        return [m for m in stored if m["author"]["id"] == self.bot_user["id"]]


# ----- figures ---------------------------------------------------------------------------------------


@dataclass
class Figures:
    """One run of one platform, as its users saw it at the end."""

    conversations: int = 0
    complete: int = 0
    lost: int = 0
    duplicates: int = 0  # conversations with more than one whole answer on screen
    leftovers: int = 0  # other bot messages left beside an answer: stale placeholders, half answers
    alerts: int = 0  # undelivered-answer alerts posted to the admins' channel
    limits_429: int = 0  # 429s the strict limits answered
    limits_429_by: dict[str, int] = field(default_factory=dict)  # by method (Slack), by scope and route (Discord)
    injected_429: int = 0
    injected_failures: int = 0  # every injected write failure, 429s included
    injected: dict[str, int] = field(default_factory=dict)
    redelivered: int = 0  # events delivered a second time
    resumes: int = 0  # Discord: gateway sessions resumed
    late_acks: int = 0  # Slack: deliveries the fake retried because the ack took over 3 s
    fallbacks: dict[str, int] = field(default_factory=dict)  # advisor_write_failures_total, by outcome
    duplicates_dropped: int = 0
    p50_s: float = 0.0
    p95_s: float = 0.0
    max_s: float = 0.0
    seconds: float = 0.0
    load_average: float = 0.0  # the machine's, over the last minute, at the end: other work skews the times
    log_errors: list[str] = field(default_factory=list)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def metric_snapshot(platform: str) -> dict[str, float]:
    out = {o: sample("advisor_write_failures_total", platform=platform, outcome=o) for o in sorted(WRITE_OUTCOMES)}
    out["duplicates_dropped"] = sample("advisor_duplicates_dropped_total", platform=platform)
    return out


def tally(figures: Figures, answers: dict[str, list[str]], ledger: Ledger) -> None:
    """Lost, duplicated and left-over messages from each conversation's bot messages at the end."""
    figures.conversations = len(ledger.conversations)
    for case in ledger.conversations:
        whole = squash(expected(case))
        shown = answers.get(case, [])
        full = sum(1 for text in shown if whole in squash(text))
        figures.complete += full > 0
        figures.lost += full == 0
        figures.duplicates += full > 1
        figures.leftovers += len(shown) - full
    latencies = ledger.latencies()
    figures.p50_s, figures.p95_s = (round(percentile(latencies, p), 2) for p in (50, 95))
    figures.max_s = round(max(latencies, default=0.0), 2)


def finish(
    figures: Figures, injector: Injector, before: dict[str, float], after: dict[str, float], errors: list[str]
) -> None:
    """What was injected, and the adapter's own counts of what it did about it (metric deltas)."""
    figures.injected = dict(sorted(injector.injected.items()))
    figures.injected_429 = injector.total("rate_limited")
    figures.injected_failures = injector.total()
    delta = {name: int(after[name] - before[name]) for name in after}
    figures.duplicates_dropped = delta.pop("duplicates_dropped")
    figures.fallbacks = {outcome: count for outcome, count in delta.items() if count}
    figures.log_errors = errors
    figures.load_average = round(os.getloadavg()[0], 1)


class LogCounter(logging.Handler):
    """Keeps the ERROR records (logger: message) of a run; nothing is printed as it goes."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append(f"{record.name}: {record.getMessage()[:200]}")


async def settle(ledger: Ledger, busy: Callable[[], bool], timeout: float = RUN_TIMEOUT) -> None:
    """Until nothing is in flight and every answer is whole on screen (its stale placeholder removed),
    or nothing is in flight and no answer came for a while: one that will not come."""
    started = time.monotonic()
    idle_since: float | None = None
    while time.monotonic() - started < timeout:
        now = time.monotonic()
        idle_since = None if busy() else idle_since or now
        quiet = idle_since is not None and now - max(idle_since, ledger.last_progress, started) >= SETTLE_QUIET
        if quiet or (idle_since is not None and ledger.all_complete()):
            return
        await asyncio.sleep(0.05)


async def later(delay: float, work: Callable[[], Awaitable[Any]]) -> Any:
    await asyncio.sleep(delay)
    return await work()


# ----- Slack -----------------------------------------------------------------------------------------


def question(n: int, case: str) -> str:
    return f"{QUESTIONS[n % len(QUESTIONS)]} (case {case})"


@dataclass(frozen=True)
class SlackAsk:
    """One Slack conversation: a mention in a channel (answered in its thread), or a DM in its own channel."""

    case: str
    body: Json

    @property
    def channel(self) -> str:
        return str(self.body["event"]["channel"])

    @property
    def thread(self) -> str | None:
        """The thread its answer goes in (None: a DM, answered in the channel itself)."""
        event = self.body["event"]
        return None if event.get("channel_type") == "im" else str(event["ts"])


def slack_asks(tag: str, count: int, channels: int) -> list[SlackAsk]:
    """Every fourth conversation a DM, the others mentions spread over `channels` channels."""
    asks = []
    for n in range(count):
        case = f"{tag}{n:04d}"
        user = f"U{case.upper()}"
        if n % 4 == 3:
            body = sp.dm_message(question(n, case), user=user, channel=f"D{case.upper()}")
        else:
            body = sp.app_mention(question(n, case), user=user, channel=f"C{tag.upper()}{n % channels:02d}")
        asks.append(SlackAsk(case, body))
    return asks


async def redeliver(session: aiohttp.ClientSession, url: str, body: Json) -> None:
    """The same event again, signed anew, as Slack retries a delivery it thinks failed."""
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **sp.sign(raw, SECRET), "X-Slack-Retry-Num": "1",
               "X-Slack-Retry-Reason": "http_timeout"}  # fmt: skip
    async with session.post(url, data=raw, headers=headers) as response:
        await response.read()


async def slack_deliver(
    fake: ChaosSlack, url: str, ledger: Ledger, injector: Injector, asks: list[SlackAsk]
) -> int:
    """Deliver every ask (DELIVERIES_AT_ONCE at a time, as Slack does, acks within 3 s); a share of
    them again a moment later, as Slack retries. The number delivered twice."""
    gate = asyncio.Semaphore(DELIVERIES_AT_ONCE)

    async def deliver(ask: SlackAsk) -> None:
        async with gate:
            await fake.deliver(url, ask.body, SECRET)

    async with aiohttp.ClientSession() as session:
        work = []
        for ask in asks:
            ledger.start(ask.case)  # asked now: the time to an answer counts from here
            work.append(deliver(ask))
            if (delay := injector.twice()) is not None:
                work.append(later(delay, functools.partial(redeliver, session, url, ask.body)))
        await asyncio.gather(*work)
    return len(work) - len(asks)


async def slack_run(bench: Bench, tag: str, faults: Faults) -> Figures:
    """`conversations` asks at once in one workspace; then what the fake's messages show."""
    injector, ledger, args = Injector(faults, bench.args.seed), Ledger(), bench.args
    before, errors = metric_snapshot("slack"), len(bench.log.errors)
    scale = args.slack_scale
    asks = slack_asks(tag, args.conversations, args.channels)
    stack = Stack(bench.workdir / tag, bench.services.stack.retriever)
    async with ChaosSlack(injector, ledger, strict=True, time_scale=scale) as fake:
        try:
            paced = {"update_interval": scale, "edit_window": 60.0 * scale}  # Slack's limits, scaled
            engine, settings = bench.services.engine, bench.settings["slack"]
            door = await stack.slack_door(engine, settings, fake, SECRET, bot_user_id="UBOT", **paced)
            started = time.monotonic()
            redelivered = await slack_deliver(fake, door.url, ledger, injector, asks)
            await settle(ledger, lambda: door.adapter.inflight.count > 0)
        finally:
            await stack.aclose()
        figures = Figures(seconds=round(time.monotonic() - started, 1), redelivered=redelivered)
        shown = {a.case: [slack_visible(m) for m in fake.bot_messages(a.channel, a.thread)] for a in asks}
        tally(figures, shown, ledger)
        figures.alerts = len(fake.bot_messages(ALERTS_SLACK, None))
        figures.limits_429 = len(fake.limited)
        figures.limits_429_by = dict(Counter(e["method"] for e in fake.limited))
        figures.late_acks = sum(d.retries for d in fake.deliveries)
    finish(figures, injector, before, metric_snapshot("slack"), bench.log.errors[errors:])
    return figures


# ----- Discord ---------------------------------------------------------------------------------------


def discord_rooms(channels: int) -> list[Json]:
    """The guild's text channels: `channels` rooms, and one for the admins' alerts."""
    rooms = [dp.text_channel(str(7000 + k), f"room-{k}", position=k) for k in range(channels)]
    return [*rooms, dp.text_channel(ALERTS_DISCORD, "alerts", position=channels)]


def discord_answers(fake: ChaosDiscord, questions: dict[str, str]) -> dict[str, list[str]]:
    """Each conversation's bot messages, wherever they went (its channel or a DM): by the answer's tag,
    or for a message without text of the answer yet, by the question it replies to."""
    answers: dict[str, list[str]] = {}
    for message in fake.bot_messages():
        content = str(message.get("content") or "")
        found = TAG.search(content)
        replied_to = str((message.get("message_reference") or {}).get("message_id"))
        case = found.group(1) if found else questions.get(replied_to)
        if case is not None:
            answers.setdefault(case, []).append(content)
    return answers


async def discord_dispatch(
    fake: ChaosDiscord, ledger: Ledger, injector: Injector, rooms: list[Json], tag: str, count: int
) -> tuple[dict[str, str], list[Awaitable[Any]]]:
    """Dispatch every question (question id -> case); with faults, drop the gateway half way and
    schedule replays of a share of them (the returned awaitables)."""
    questions: dict[str, str] = {}
    replays: list[Awaitable[Any]] = []
    channels = len(rooms) - 1
    for n in range(count):
        case = f"{tag}{n:04d}"
        payload = dp.message_create(f"<@{dp.BOT_ID}> {question(n, case)}", author_id=str(8_000_000 + n),
                                    channel_id=rooms[n % channels]["id"], username=f"user{n}")  # fmt: skip
        questions[payload["id"]] = case
        ledger.start(case)
        await fake.dispatch("MESSAGE_CREATE", payload)
        if injector.faults.active and n == count // 2:
            await fake.drop_connection()  # the rest wait for discord.py's RESUME, which replays them
        if (delay := injector.twice()) is not None:
            replays.append(later(delay, functools.partial(fake.dispatch, "MESSAGE_CREATE", payload)))
    return questions, replays


async def discord_run(bench: Bench, tag: str, faults: Faults) -> Figures:
    """`conversations` mentions dispatched at once in one guild; the gateway drops half way when faulty."""
    injector, ledger, args = Injector(faults, bench.args.seed), Ledger(), bench.args
    before, errors = metric_snapshot("discord"), len(bench.log.errors)
    rooms = discord_rooms(args.channels)
    stack = Stack(bench.workdir / tag, bench.services.stack.retriever)
    async with ChaosDiscord(injector, ledger, guilds=[dp.guild(channels=rooms)]) as fake:
        with fake.patched():
            try:
                adapter = await stack.discord_gateway(bench.services.engine, bench.settings["discord"], fake, 30)
                started = time.monotonic()
                questions, replays = await discord_dispatch(fake, ledger, injector, rooms, tag, args.conversations)
                await asyncio.gather(*replays)
                await settle(ledger, lambda: adapter.inflight.count > 0)
            finally:
                await stack.aclose()
        figures = Figures(seconds=round(time.monotonic() - started, 1), redelivered=len(replays), resumes=fake.resumes)
        tally(figures, discord_answers(fake, questions), ledger)
        figures.alerts = len([m for m in fake.messages_in(ALERTS_DISCORD) if m["author"]["id"] == dp.BOT_ID])
        figures.limits_429 = len(fake.rate_limited)
        routes = (f"{e['scope']} {e['method']} {re.sub(r'[0-9]+', '#', e['path'])}" for e in fake.rate_limited)
        figures.limits_429_by = dict(Counter(routes))
    finish(figures, injector, before, metric_snapshot("discord"), bench.log.errors[errors:])
    return figures


# ----- the bench -------------------------------------------------------------------------------------


@dataclass
class Bench:
    """What every run shares: the arguments, one engine (the product's wiring), each platform's settings."""

    args: argparse.Namespace
    workdir: Path
    services: Any
    settings: dict[str, Any]
    log: LogCounter


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """os.environ with no advisor setting but `values` (a developer's own settings stay out), restored after."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env_without_settings(**values))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def platform_settings(alerts: str) -> Any:
    """The settings as the environment has them, with the admins' alerts going to `alerts`."""
    from config.settings import load_settings

    os.environ["ADVISOR_SAFETY_ALERT_CHANNEL"] = alerts
    return load_settings(None)


async def build(args: argparse.Namespace, workdir: Path, log: LogCounter) -> Bench:
    """The engine as `advisor run` builds it, over a fresh index of the knowledge base."""
    from bot.wiring import build_services

    settings = {
        "slack": platform_settings(f"slack:{ALERTS_SLACK}"),
        "discord": platform_settings(f"discord:{ALERTS_DISCORD}"),
    }
    services = await build_services(settings["slack"])
    await services.admin.reindex(None)
    await warm_up(services.engine)
    return Bench(args, workdir, services, settings, log)


async def warm_up(engine: Any) -> None:
    """One answer before the runs, so the first run does not pay for what loads on first use."""
    from bot.models import IncomingMessage

    message = IncomingMessage("bench", "warm", "up", "up", "warm-up", question(0, "xx0000"), time.time(), "0")
    async for _ in engine.answer(message):
        pass


RUNS: dict[str, tuple[Callable[[Bench, str, Faults], Awaitable[Figures]], Faults]] = {
    "slack": (slack_run, SLACK_FAULTS),
    "discord": (discord_run, DISCORD_FAULTS),
}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both platforms, each a baseline and a run with faults: the figures."""
    started = time.monotonic()
    log = LogCounter()
    root = logging.getLogger()
    root.addHandler(log)  # also keeps logging's last-resort handler from printing every warning
    root.setLevel(logging.WARNING)
    figures: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="advisor-chaos-") as tmp, model_process() as model_url:
            with environment(**bench_env(Path(tmp), model_url, args.knowledge)):
                bench = await build(args, Path(tmp), log)
                try:
                    for platform, (one_run, faults) in RUNS.items():
                        if platform in args.platforms:
                            figures[platform] = {
                                "baseline": asdict(await one_run(bench, f"{platform[0]}b", Faults())),
                                "faults": asdict(await one_run(bench, f"{platform[0]}f", faults)),
                            }
                finally:
                    await bench.services.close()
    finally:
        root.removeHandler(log)
    return {"setup": setup(args), **figures, "runtime_s": round(time.monotonic() - started, 1)}


@contextlib.contextmanager
def model_process() -> Iterator[str]:
    """The scripted fake model in a process of its own, as a model server is (its streaming would
    otherwise share the adapters' event loop): its base URL. It stops when its stdin closes."""
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-model"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env_without_settings())
    assert process.stdin is not None and process.stdout is not None
    try:
        yield process.stdout.readline().decode().strip()
    finally:
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


async def serve_model() -> None:
    """--serve-model: serve the scripted fake model, print its base URL, and stop when stdin closes."""
    async with ScriptedOpenAI() as model:
        model.chunk_chars, model.chunk_delay = STREAM["chunk_chars"], STREAM["chunk_delay"]
        print(model.base_url, flush=True)
        closed = asyncio.Event()
        stdin = sys.stdin.fileno()
        asyncio.get_running_loop().add_reader(stdin, lambda: closed.set() if not os.read(stdin, 4096) else None)
        await closed.wait()


def bench_env(workdir: Path, model_url: str, knowledge: Path) -> dict[str, str]:
    return {
        "ADVISOR_DATA_DIR": str(workdir / "data"), "ADVISOR_KNOWLEDGE_PATHS": str(knowledge),
        "SLACK_BOT_TOKEN": "xoxb-chaos", "SLACK_SIGNING_SECRET": SECRET, "DISCORD_TOKEN": dp.BOT_TOKEN,
        "OPENAI_BASE_URL": model_url, "OPENAI_API_KEY": "sk-chaos",
        "ADVISOR_LIMITS_USER_PER_MINUTE": "1000000", "ADVISOR_LIMITS_CONVERSATION_PER_MINUTE": "1000000",
    }  # fmt: skip


def setup(args: argparse.Namespace) -> dict[str, Any]:
    chunks, delay = -(-len(expected("xx0000")) // STREAM["chunk_chars"]), STREAM["chunk_delay"] * 1000
    return {
        "conversations": args.conversations, "channels": args.channels, "seed": args.seed,
        "cpu_count": os.cpu_count(), "slack_time_scale": args.slack_scale,
        "model_stream": f"{chunks} chunks of {STREAM['chunk_chars']} characters, {delay:.0f} ms apart",
        "slack_faults": asdict(SLACK_FAULTS), "discord_faults": asdict(DISCORD_FAULTS),
    }  # fmt: skip


# ----- report ----------------------------------------------------------------------------------------

COUNTS = (
    ("conversations", "conversations"),
    ("answers complete on screen", "complete"),
    ("answers lost (target 0)", "lost"),
    ("duplicate posts (target 0)", "duplicates"),
    ("stale messages left beside an answer", "leftovers"),
    ("429s answered by the strict limits", "limits_429"),
    ("429s injected", "injected_429"),
    ("write failures injected (429s included)", "injected_failures"),
    ("events delivered twice (injected)", "redelivered"),
    ("duplicate deliveries dropped by the adapter", "duplicates_dropped"),
)
TIMES = (("time to a complete answer p50 s", "p50_s"), ("time to a complete answer p95 s", "p95_s"),
         ("time to a complete answer max s", "max_s"), ("run wall time s", "seconds"))  # fmt: skip
PLATFORM_ROWS = {"slack": ("late_acks", "Slack retries of late acks"), "discord": ("resumes", "gateway resumes")}
WHERE = {
    "slack": "one workspace: @mentions over {channels} channels and (every 4th) DMs, real bolt over signed HTTP "
    "deliveries, the real slack_sdk client, FakeSlack(strict=True)",
    "discord": "one guild: @mentions over {channels} channels, the real discord.py client on the fake gateway, "
    "FakeDiscord (strict limits)",
}
SCALED = {
    "slack": "scaled: every Slack limit window and retry delay x{scale} (chat.update, Tier 3, 50 a minute per "
    "workspace: 50 per {minute:g} s; chat.postMessage, 1 a second per channel: 1 per {scale:g} s); the adapter "
    "paced to match ({limit} edits per {minute:g} s per workspace, {scale:g} s between one answer's edits). Not "
    "scaled: the 3-s ack deadline, and Retry-After, which stays in whole seconds (slack_sdk int()s it), so a 429 "
    "costs at least 1 s",
    "discord": "nothing scaled: Discord's own limits (sends and edits 5 per 5 s per channel, 50 requests a second "
    "per bot) and discord.py's own waits (a 429's retry_after; 1 s, then 3 s... after a 5xx)",
}


def report(figures: dict[str, Any]) -> None:
    s = figures["setup"]
    print(f"== advisor chaos bench: {s['conversations']} conversations at once per run, seed {s['seed']}, "
          f"{s['cpu_count']} cores; the fake model streams {s['model_stream']}")  # fmt: skip
    for platform in ("slack", "discord"):
        if platform in figures:
            platform_report(platform, figures[platform], s)
    print(f"\n(total {figures['runtime_s']:.0f} s)")


def row(label: str, base: Any, hit: Any, ratio: str = "") -> None:
    numbers = f"{base:>10.2f}{hit:>10.2f}" if isinstance(base, float) else f"{base:>10}{hit:>10}"
    print(f"{label:<44}{numbers}{ratio:>8}".rstrip())


def platform_report(platform: str, runs: dict[str, Json], setup_: Json) -> None:
    base, hit = runs["baseline"], runs["faults"]
    scale = setup_["slack_time_scale"]
    print(f"\n== {platform.capitalize()}: " + WHERE[platform].format(channels=setup_["channels"]))
    print(SCALED[platform].format(scale=scale, minute=60 * scale, limit=EDIT_LIMIT))
    shares = setup_[f"{platform}_faults"]
    print("injected: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items() if v and k != "duplicates")
          + f" of write calls; {shares['duplicates']:.0%} of events delivered twice")  # fmt: skip
    print(f"{'':<44}{'baseline':>10}{'faults':>10}{'ratio':>8}")
    for label, key in COUNTS:
        row(label, base[key], hit[key])
    for outcome in sorted(set(base["fallbacks"]) | set(hit["fallbacks"]) or {"new_message"}):
        row(f"fallbacks taken: {outcome}", base["fallbacks"].get(outcome, 0), hit["fallbacks"].get(outcome, 0))
    row("admin alerts of undelivered answers", base["alerts"], hit["alerts"])
    key, label = PLATFORM_ROWS[platform]
    row(label, base[key], hit[key])
    row("machine load average (1 min) at the end", base["load_average"], hit["load_average"])
    for label, key in TIMES:
        row(label, base[key], hit[key], f"{hit[key] / base[key]:.2f}x" if base[key] else "")
    for name, figures in runs.items():
        if by := figures["limits_429_by"]:
            print(f"{name}: 429s from the limits: " + ", ".join(f"{k} {n}" for k, n in by.items()))
    print("faults: " + ", ".join(f"{k} {v}" for k, v in hit["injected"].items()))
    for name, figures in runs.items():
        for line in dict.fromkeys(figures["log_errors"]):
            print(f"{name}: ERROR log: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=200, help="conversations at once per run (200)")
    parser.add_argument("--channels", type=int, default=20, help="channels they are spread over (20)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"the faults' seed ({SEED})")
    parser.add_argument("--slack-scale", type=float, default=SLACK_SCALE, help=f"Slack's time scale ({SLACK_SCALE})")
    parser.add_argument("--knowledge", type=Path, default=ROOT / "retrieval" / "sample_kb", help="the knowledge base")
    parser.add_argument("--platforms", nargs="+", default=["slack", "discord"], choices=["slack", "discord"])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--serve-model", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_model:
        asyncio.run(serve_model())
        return
    figures = asyncio.run(run(args))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        report(figures)


if __name__ == "__main__":
    main()
