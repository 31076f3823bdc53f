"""Faults and bad input through the public doors: the Slack events endpoint, the Discord gateway,
the engine. Real components throughout (bolt served over HTTP, the real slack_sdk and discord.py
clients against the fake platforms, the real OpenAI client against the fake OpenAI server, a real
redis-server, embedded Qdrant); the only doubles are fault-injecting wrappers around a port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.slack.app import PLACEHOLDER
from bot.engine.pipeline import MEMORY_DOWN, MODEL_TROUBLE, Engine
from bot.ops.metrics import REGISTRY
from bot.models import Final, IncomingMessage, Notice, ReplyEvent
from bot.state.redis_client import ping
from bot.safety.crisis import protocol_message
from bot.wiring import SharedState, build_shared
from config.settings import Settings, load_settings
from retrieval.retriever import HybridRetriever
from retrieval.store_errors import StoreError
from tests.harness import discord_payloads as dp
from tests.harness import slack_payloads as sp
from tests.harness.discord_api import FakeDiscord
from tests.harness.openai_server import FakeOpenAI
from tests.harness.redis_server import ClientFactory, RedisServer
from tests.harness.slack_api import FakeSlack
from tests.harness.stack import SlackDoor, Stack
from tests.harness.stack import until as harness_until

pytest_plugins = ["conftest_redis"]  # the redis_server and redis_clients fixtures

SECRET = "fault-signing-secret"
TIMEOUT = 20.0
KB_DOWN = "My knowledge base can't be searched right now."
QUESTIONS = (
    "How big should my emergency fund be?",
    "Which debt should I pay off first?",
    "What matters most for my credit score?",
)
HIGH_LIMITS = {"ADVISOR_LIMITS_USER_PER_MINUTE": "100000", "ADVISOR_LIMITS_CONVERSATION_PER_MINUTE": "100000"}


# -- helpers -------------------------------------------------------------------------------------


def until(check: Callable[[], Any], timeout: float = TIMEOUT) -> Awaitable[Any]:
    return harness_until(check, timeout)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def collect(engine: Engine, message: IncomingMessage) -> list[ReplyEvent]:
    return [event async for event in engine.answer(message)]


def incoming(text: str, thread: str = "t1", author: str = "U1") -> IncomingMessage:
    return IncomingMessage("slack", "T1", "C1", thread, author, text, time.time(), f"m-{time.monotonic_ns()}")


class FaultyStore:
    """The `VectorStore` port around the real store; `search` can be made to fail ("down") or hang ("slow").

    It counts searches started, completed and abandoned (cancelled), so a test can see what
    happened to a hanging search at the moment the answer arrived."""

    HANG_SECONDS = 60.0  # far longer than any retrieval timeout a test sets

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fault: str | None = None
        self.started = 0
        self.completed = 0
        self.cancelled = 0

    def __getattr__(self, name: str) -> Any:  # every other method of the port: the real store
        return getattr(self.inner, name)

    async def search(self, *args: Any, **kwargs: Any) -> Any:
        self.started += 1
        if self.fault == "down":
            raise StoreError("Qdrant at 127.0.0.1:6333 refused the connection")
        if self.fault == "slow":
            try:
                await asyncio.sleep(self.HANG_SECONDS)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        hits = await self.inner.search(*args, **kwargs)
        self.completed += 1
        return hits


@pytest.fixture
def env(setenv: Callable[..., None], kb_dir: Path) -> Callable[..., Settings]:
    """Set environment variables (Slack and Discord credentials, the knowledge base, any extra) and load settings."""

    def apply(**values: str) -> Settings:
        base = {
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": SECRET,
            "DISCORD_TOKEN": dp.BOT_TOKEN,
            "ADVISOR_KNOWLEDGE_PATHS": str(kb_dir),
        }
        setenv(**{**base, **values})
        return load_settings(None)

    return apply


@pytest.fixture
def serve(stack: Stack, slack: FakeSlack) -> Callable[..., Awaitable[SlackDoor]]:
    """Serve a SlackAdapter over `engine` on a free port, against the fake Slack."""

    async def start(engine: Engine, settings: Settings, **adapter_kwargs: Any) -> SlackDoor:
        adapter_kwargs.setdefault("update_interval", 0.01)
        return await stack.slack_door(engine, settings, slack, SECRET, bot_user_id=slack.bot_user_id, **adapter_kwargs)

    return start


@pytest.fixture
async def shared_state(redis_clients: ClientFactory) -> AsyncIterator[Callable[[Settings], Awaitable[SharedState]]]:
    """The real composition root's Redis state (one per "process"), on an empty redis-server."""
    made: list[SharedState] = []

    async def build(settings: Settings) -> SharedState:
        assert settings.memory.redis_url, "set REDIS_URL first"
        state = await build_shared(settings)
        assert state is not None
        made.append(state)
        return state

    yield build
    for state in made:
        with contextlib.suppress(Exception):
            await state.close()


# -- 1. a Slack flood with retries and duplicates across two processes ------------------------------


async def test_slack_flood_with_retries_across_two_processes_answers_each_message_once(
    env: Any, redis_server: RedisServer, redis_clients: ClientFactory, shared_state: Any, stack: Stack, serve: Any, slack: FakeSlack
) -> None:
    settings = env(REDIS_URL=redis_server.url, **HIGH_LIMITS)
    doors: list[SlackDoor] = []
    for _ in range(2):  # two processes: each its own Redis client, engine and adapter, one Redis server
        state = await shared_state(settings)
        engine = stack.engine(settings, memory=state.memory, shared=state)
        doors.append(await serve(engine, settings, dedupe=state.dedupe, gate=lambda c=state.client: ping(c)))

    rng = random.Random(20240611)
    events = [
        sp.app_mention(QUESTIONS[n % 3], user=f"U{n:03d}", channel=f"C{n % 4 + 1}", event_id=f"EvFLOOD{n:04d}")
        for n in range(60)
    ]
    early: list[tuple[SlackDoor, dict[str, Any], dict[str, str]]] = []
    late: list[tuple[SlackDoor, dict[str, Any], dict[str, str]]] = []
    for event in events:
        first = rng.randrange(2)
        early.append((doors[first], event, {}))  # the original delivery
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        early.append((doors[rng.randrange(2)], event, retry))  # a retry racing the original, on either process
        if rng.random() < 0.5:  # a second retry after the answer went out, on the other process
            late.append((doors[1 - first], event, {"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_error"}))
    rng.shuffle(early)
    rng.shuffle(late)
    duplicates_before = counter("advisor_duplicates_dropped_total", platform="slack")

    async with aiohttp.ClientSession() as session:
        statuses = await asyncio.gather(*(door.post(body, headers=h, session=session) for door, body, h in early))
        assert [status for status, _ in statuses] == [200] * len(early)
        await until(lambda: len(doors[0].finals()) >= len(events), timeout=60)
        statuses = await asyncio.gather(*(door.post(body, headers=h, session=session) for door, body, h in late))
        assert [status for status, _ in statuses] == [200] * len(late)
    duplicates = len(early) + len(late) - len(events)
    await until(lambda: counter("advisor_duplicates_dropped_total", platform="slack") - duplicates_before >= duplicates)
    await asyncio.sleep(0.3)  # anything (wrongly) still on its way lands now

    posts, updates = doors[0].posts(), doors[0].posts("chat.update")
    assert len(posts) == len(events), "one chat.postMessage per message, nothing more"
    for body in events:
        event = body["event"]
        placeholders = [p for p in posts if p["channel"] == event["channel"] and p.get("thread_ts") == event["ts"]]
        assert [p["text"] for p in placeholders] == [PLACEHOLDER], event["ts"]
        (reply,) = [m for m in slack.thread(event["channel"], event["ts"]) if m.get("bot_id")]
        finals = [u for u in updates if u["channel"] == event["channel"] and u["ts"] == reply["ts"] and u.get("blocks")]
        assert len(finals) == 1, (event["ts"], finals)
        assert "knowledge base" in finals[0]["text"]
    assert counter("advisor_duplicates_dropped_total", platform="slack") - duplicates_before == duplicates
    for door in doors:  # each process turned some duplicates away (and none was answered twice, above)
        assert any(reason.startswith("duplicate delivery") for reason in door.adapter.ignored)
    memory = doors[1].adapter.engine.memory
    for body in events[::7]:  # each conversation holds one question and one answer
        turns = await memory.history(f"slack:T1:{body['event']['channel']}:{body['event']['ts']}")
        assert [t.role for t in turns] == ["user", "assistant"]


# -- 2. Discord messages across reconnects ------------------------------------------------------------


async def test_discord_messages_across_two_resumes_are_answered_exactly_once(
    env: Any, discord_fake: FakeDiscord, stack: Stack
) -> None:
    fake = discord_fake
    settings = env(**HIGH_LIMITS)
    adapter = await stack.discord_gateway(stack.engine(settings), settings, fake, edit_interval=0.05, timeout=TIMEOUT)

    def reply_to(message: dict[str, Any]) -> list[dict[str, Any]]:
        channel = message["channel_id"]
        return [
            m for m in fake.messages_in(channel)
            if m["author"]["id"] == dp.BOT_ID and (m.get("message_reference") or {}).get("message_id") == message["id"]
        ]

    def answered(message: dict[str, Any]) -> bool:
        return any(m.get("components") for m in reply_to(message))

    def new_message(n: int) -> dict[str, Any]:
        question = QUESTIONS[n % 3]
        if n % 2:
            return dp.message_create(question, channel_id=dp.DM_CHANNEL_ID, guild_id=None)
        return dp.message_create(f"<@{dp.BOT_ID}> {question}")

    messages = [new_message(n) for n in range(20)]
    duplicates_before = counter("advisor_duplicates_dropped_total", platform="discord")
    for message in messages[:6]:
        await fake.dispatch("MESSAGE_CREATE", message)
    await fake.drop_connection()  # answers are still streaming over REST while the gateway is gone
    for message in messages[6:10]:  # sent while the bot is away: replayed on RESUME
        await fake.dispatch("MESSAGE_CREATE", message)
    await fake.wait_until(lambda: fake.resumes == 1 and fake.connected, TIMEOUT)
    for message in messages[10:14]:
        await fake.dispatch("MESSAGE_CREATE", message)
    await fake.drop_connection()
    for message in messages[14:20]:
        await fake.dispatch("MESSAGE_CREATE", message)
    await fake.wait_until(lambda: fake.resumes == 2 and fake.connected, TIMEOUT)
    await until(lambda: all(answered(m) for m in messages[:10]))
    again = [messages[0], messages[3], messages[7], messages[9]]  # already answered: replays of old deliveries
    for message in again:
        await fake.dispatch("MESSAGE_CREATE", message)
    await until(lambda: all(answered(m) for m in messages))
    await until(lambda: counter("advisor_duplicates_dropped_total", platform="discord") - duplicates_before >= len(again))
    await asyncio.sleep(0.3)

    assert fake.identifies == 1 and fake.resumes == 2 and fake.replayed >= 10
    for message in messages:
        replies = reply_to(message)
        assert len(replies) == 1, (message["id"], len(replies))
        assert replies[0]["components"] and "knowledge base" in replies[0]["content"]
    sends = fake.calls_to("POST", f"/channels/{dp.CHANNEL_ID}/messages") + fake.calls_to(
        "POST", f"/channels/{dp.DM_CHANNEL_ID}/messages"
    )
    assert len([s for s in sends if s["status"] < 300]) == len(messages)  # a send the strict fake 429'd is retried
    assert sum(reason.startswith("duplicate delivery") for reason in adapter.ignored) >= len(again)


# -- 3. model faults mid-stream, through the Slack adapter --------------------------------------------

LEAD_UNAVAILABLE = "I couldn't reach my language model just now."
MODEL_FAULTS = {
    # id: (fault kind, fault options, model timeout, what the final message must say, retried before giving up)
    "429-persisting": ("rate_limit", {"times": 20, "retry_after": 0.3}, 5.0, MODEL_TROUBLE["rate_limited"], True),
    "500": ("server_error", {"times": 20}, 5.0, LEAD_UNAVAILABLE, True),
    "timeout": ("slow", {"times": 20, "seconds": 5.0}, 0.3, LEAD_UNAVAILABLE, True),
    "insufficient-quota": ("insufficient_quota", {}, 5.0, MODEL_TROUBLE["quota"], False),
    "midstream-drop": ("midstream_error", {"after_chunks": 3}, 5.0, "My answer was cut off", False),
}


@pytest.mark.parametrize("case", list(MODEL_FAULTS), ids=list(MODEL_FAULTS))
async def test_model_faults_give_one_placeholder_and_one_clear_final(
    case: str, env: Any, openai_fake: FakeOpenAI, stack: Stack, serve: Any
) -> None:
    kind, options, timeout, expected, retried = MODEL_FAULTS[case]
    settings = env()
    openai_fake.default_answer = "Keep three to six months of expenses in an easy-access account [1]. " * 3
    openai_fake.chunk_chars = 10
    options = dict(options)
    times = options.pop("times", 1)
    openai_fake.fail_next("/chat/completions", kind, times=times, **options)
    model = stack.chat_model(openai_fake, timeout=timeout, retry_budget=1.0, base_delay=0.01)
    engine = stack.engine(settings, model)
    door = await serve(engine, settings)
    errors_before = counter("advisor_answers_total", platform="slack", mode="error")
    body = sp.app_mention(QUESTIONS[0])
    status, _ = await door.post(body)
    assert status == 200
    (final,) = await until(door.finals)
    await asyncio.sleep(0.2)

    (placeholder,) = door.posts()  # exactly one post: the placeholder, nothing posted twice
    assert placeholder["text"] == PLACEHOLDER and placeholder["thread_ts"] == body["event"]["ts"]
    (reply,) = [m for m in door.slack.thread("C1", body["event"]["ts"]) if m.get("bot_id")]
    assert door.finals() == [final] and final["ts"] == reply["ts"]
    assert door.posts("chat.update")[-1] == final  # the final update is the last word
    assert expected in final["text"], final["text"]
    assert not any(b["type"] == "actions" for b in final["blocks"])  # no feedback buttons on a failure
    assert counter("advisor_answers_total", platform="slack", mode="error") - errors_before == 1
    chats = [r for r in openai_fake.requests if r["path"].endswith("/chat/completions")]
    assert (len(chats) > 1) == retried, len(chats)  # retryable faults were retried within the budget, others not
    turns = await engine.memory.history(f"slack:T1:C1:{body['event']['ts']}")
    assert [(t.role, t.content) for t in turns] == [("user", QUESTIONS[0])]  # no failed assistant text stored


# -- 4. the knowledge base down or slow -----------------------------------------------------------------


@pytest.fixture
def faulty(retriever: HybridRetriever) -> tuple[FaultyStore, HybridRetriever]:
    """The conftest retriever's real store behind a fault-injecting wrapper, in a real HybridRetriever."""
    store = FaultyStore(retriever.store)
    return store, HybridRetriever(store, retriever.embedder, retriever.sparse, retriever.settings)


@pytest.mark.parametrize("fault", ["down", "slow"])
async def test_knowledge_base_down_or_slow_the_answer_goes_on_and_says_so(
    fault: str, env: Any, faulty: Any, openai_fake: FakeOpenAI, stack: Stack, serve: Any
) -> None:
    store, hybrid = faulty
    settings = env(ADVISOR_RETRIEVAL_TIMEOUT_SECONDS="0.3")
    openai_fake.default_answer = "Aim for three to six months of essential expenses [1]."
    model = stack.chat_model(openai_fake, timeout=5, retry_budget=1.0, base_delay=0.01)
    engine = stack.engine(settings, model, retriever=hybrid)
    door = await serve(engine, settings)
    store.fault = fault
    body = sp.app_mention(QUESTIONS[0])
    assert (await door.post(body))[0] == 200
    (final,) = await until(door.finals)
    assert store.started == 1 and store.completed == 0  # the answer is out; the search never returned
    assert store.cancelled == (1 if fault == "slow" else 0)  # a hanging search was abandoned, not awaited
    assert KB_DOWN in final["text"] and "Aim for three to six months" in final["text"], final["text"]
    assert len(door.posts()) == 1

    store.fault = None  # the store is back: the next question is answered from it, with sources
    again = sp.app_mention(QUESTIONS[0], user="U2")
    assert (await door.post(again))[0] == 200
    finals = await until(lambda: len(door.finals()) == 2 and door.finals())
    assert KB_DOWN not in finals[1]["text"] and any(b["type"] == "context" for b in finals[1]["blocks"])
    turns = await engine.memory.history(f"slack:T1:C1:{body['event']['ts']}")
    assert [t.role for t in turns] == ["user", "assistant"]  # an answer without the knowledge base is still an answer


async def test_a_hanging_search_is_abandoned_before_the_final_arrives(env: Any, faulty: Any, stack: Stack) -> None:
    store, hybrid = faulty
    settings = env(ADVISOR_RETRIEVAL_TIMEOUT_SECONDS="0.3")
    engine = stack.engine(settings, retriever=hybrid)
    store.fault = "slow"
    seen_at_final: tuple[int, int, int] | None = None
    events: list[ReplyEvent] = []
    async for event in engine.answer(incoming(QUESTIONS[0])):
        events.append(event)
        if isinstance(event, Final):
            seen_at_final = (store.started, store.completed, store.cancelled)
    assert seen_at_final == (1, 0, 1)  # started, never completed, abandoned: the Final did not wait for it
    notices = [e for e in events if isinstance(e, Notice)]
    final = events[-1]
    assert isinstance(final, Final) and final.mode == "offline"
    assert [n.kind for n in notices] == ["search_unavailable"] and notices[0].text == KB_DOWN
    assert events.index(notices[0]) < len(events) - 1 and notices[0] in final.notices
    assert final.citations == ()


# -- 5. Redis down under the engine, and at the Slack door ---------------------------------------------


async def test_redis_down_memory_message_crisis_still_answered_and_turns_intact_after(
    env: Any, redis_server: RedisServer, redis_clients: ClientFactory, shared_state: Any, stack: Stack
) -> None:
    settings = env(REDIS_URL=redis_server.url, **HIGH_LIMITS)
    state = await shared_state(settings)
    engine = stack.engine(settings, memory=state.memory, shared=state)
    first = await collect(engine, incoming(QUESTIONS[0], thread="t1"))
    assert isinstance(first[-1], Final) and first[-1].mode == "offline"
    before = await state.memory.history("slack:T1:C1:t1")
    assert [t.role for t in before] == ["user", "assistant"]

    redis_server.stop()
    try:
        down = await collect(engine, incoming("And where should I keep it?", thread="t1"))
        final = down[-1]
        assert isinstance(final, Final) and final.mode == "error" and final.text == MEMORY_DOWN
        crisis = await collect(engine, incoming("I want to end my life tonight", thread="t2", author="U2"))
        final = crisis[-1]
        assert isinstance(final, Final) and final.mode == "crisis"
        assert final.text == protocol_message(settings.safety.crisis_locale, engine.crisis_resources)
        assert any(n.kind == "alert" for n in final.notices)  # the admins still hear about it
    finally:
        redis_server.start()

    again = await collect(engine, incoming("And where should I keep it?", thread="t1"))
    assert isinstance(again[-1], Final) and again[-1].mode == "offline"
    after = await state.memory.history("slack:T1:C1:t1")
    assert after[:2] == before  # earlier turns intact; the message refused while down was not stored
    assert [t.role for t in after] == ["user", "assistant", "user", "assistant"]
    assert after[2].content == "And where should I keep it?"


async def test_slack_door_refuses_deliveries_while_redis_is_down_and_takes_them_after(
    env: Any, redis_server: RedisServer, redis_clients: ClientFactory, shared_state: Any, stack: Stack, serve: Any
) -> None:
    settings = env(REDIS_URL=redis_server.url, **HIGH_LIMITS)
    state = await shared_state(settings)
    engine = stack.engine(settings, memory=state.memory, shared=state)
    door = await serve(engine, settings, dedupe=state.dedupe, gate=lambda: ping(state.client))
    body = sp.app_mention(QUESTIONS[1])
    redis_server.stop()
    try:
        status, text = await door.post(body)
        assert status == 503 and "temporarily unavailable" in text
        status, _ = await door.post(body, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"})
        assert status == 503
    finally:
        redis_server.start()
    await asyncio.sleep(0.1)
    assert door.slack.calls == []  # refused, so nothing was done (and nothing was claimed)
    status, _ = await door.post(body, headers={"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_error"})
    assert status == 200
    (final,) = await until(door.finals)
    assert "knowledge base" in final["text"] and len(door.posts()) == 1


# -- 6. bad input at the Slack door ----------------------------------------------------------------------

FORM = sp.FORM_CONTENT_TYPE
BAD_INPUTS: dict[str, tuple[bytes, str, set[int]]] = {
    # id: (body, content type, acceptable statuses); all signed with the right secret
    "malformed-json": (b'{"type": "event_callback", "event": {', "application/json", {400}),
    "json-array": (b"[1, 2, 3]", "application/json", {400}),
    "json-string": (b'"event_callback"', "application/json", {400}),
    "json-null": (b"null", "application/json", {400}),
    "not-utf8": (b'{"type": "event_callback", "x": "\xff\xfe"}', "application/json", {400}),
    "unknown-event-type": (
        json.dumps(sp.event_callback({"type": "something_new", "ts": sp.new_ts()})).encode(), "application/json", {200}
    ),
    "unknown-event-bare": (
        json.dumps({"type": "event_callback", "event": {"type": "something_new"}}).encode(), "application/json", {200}
    ),
    "unknown-top-level-type": (json.dumps({"type": "brand_new_envelope", "team_id": "T1"}).encode(), "application/json", {200}),
    "empty-json": (b"", "application/json", {200, 400}),
    "mention-without-channel-or-ts": (
        json.dumps({"type": "event_callback", "team_id": "T1", "event": {"type": "app_mention", "user": "U1", "text": "hi"}}).encode(),
        "application/json",
        {200},
    ),
    "form-garbage": (b"%%%&&&==\x00garbage=%zz", FORM, {200, 400}),
    "form-empty": (b"", FORM, {200, 400}),
    "slash-command-garbage": (b"command=%2Fadvisor&text=%FF%FE%00&user_id=&channel_id=&team_id=", FORM, {200, 400}),
    "form-payload-not-json": (b"payload=%7Bnot+json", FORM, {400}),
    "form-payload-json-array": (b"payload=%5B1%2C2%5D", FORM, {400}),
    "json-10000-deep": (b"[" * 10_000 + b"]" * 10_000, "application/json", {400}),
}


async def good_event_is_answered(door: SlackDoor) -> None:
    body = sp.app_mention(QUESTIONS[0], user="UGOOD")
    status, _ = await door.post(body)
    assert status == 200
    (final,) = await until(door.finals)
    assert "three to six months" in final["text"]
    assert [p["thread_ts"] for p in door.posts()] == [body["event"]["ts"]]


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
async def test_bad_input_is_refused_or_ignored_never_a_500(case: str, env: Any, stack: Stack, serve: Any) -> None:
    raw, content_type, acceptable = BAD_INPUTS[case]
    settings = env()
    door = await serve(stack.engine(settings), settings)
    status, text = await door.post(raw, content_type=content_type)
    assert status in acceptable, (status, text)
    await asyncio.sleep(0.2)
    if case == "slash-command-garbage":  # answered with the help text in the HTTP response, nothing else
        assert door.slack.calls == [] and "commands" in text
    assert door.slack.calls == [], door.slack.calls  # no Web API calls for any of them
    await good_event_is_answered(door)


async def test_door_limits_size_type_and_method(env: Any, stack: Stack, serve: Any) -> None:
    settings = env()
    door = await serve(stack.engine(settings), settings)
    big = json.dumps({"type": "event_callback", "padding": "x" * (1024 * 1024 + 1)}).encode()
    assert (await door.post(big, content_type="application/json"))[0] == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
        for _ in range(300):
            yield b" " * 4096

    async with aiohttp.ClientSession() as session:
        headers = {"Content-Type": "application/json", **sp.sign(b"", SECRET)}
        async with session.post(door.url, data=chunks(), headers=headers) as response:
            assert response.status == 413
        async with session.get(door.url) as response:
            assert response.status == 405
    status, _ = await door.post(json.dumps(sp.app_mention("hi")).encode(), content_type="text/plain")
    assert status == 415
    status, _ = await door.post(sp.app_mention("hi"), sign=False)  # unsigned
    assert status == 401
    status, _ = await door.post(b'{"not json', content_type="application/json", sign=False,
                                headers={"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64})
    assert status == 401  # garbage with a forged signature: the signature is what is wrong
    deep = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    status, _ = await door.post(deep, content_type="application/json", sign=False,
                                headers={"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64})
    assert status == 401  # never parsed: the signature is checked first
    status, _ = await door.post(sp.app_mention("hi"), sign=False,
                                headers={"X-Slack-Request-Timestamp": "9" * 400, "X-Slack-Signature": "v0=" + "0" * 64})
    assert status == 401  # a 400-digit timestamp is a malformed header, not a 500
    await asyncio.sleep(0.2)
    assert door.slack.calls == []
    await good_event_is_answered(door)


async def test_a_signed_event_callback_whose_event_is_not_an_object_is_not_a_500(env: Any, stack: Stack, serve: Any) -> None:
    settings = env()
    door = await serve(stack.engine(settings), settings)
    status, _ = await door.post({"type": "event_callback", "team_id": "T1", "event": "app_mention"})
    assert status < 500
    await asyncio.sleep(0.2)
    assert door.slack.calls == []
