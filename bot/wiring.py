"""The composition root: settings -> concrete classes. The only core module that names them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from config.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class RetrievalStack:
    embedder: Any
    sparse: Any
    store: Any
    retriever: Any
    exemplars: Any = None  # opened on first use (open_exemplars)

    async def close(self) -> None:
        if self.exemplars is not None:
            await self.exemplars.close()
        await self.store.close()


async def build_retrieval(settings: Settings) -> RetrievalStack:
    """The embedder, BM25 encoder, store and retriever the settings ask for."""
    from retrieval.embedders import QueryCache, build_embedder
    from retrieval.retriever import HybridRetriever
    from retrieval.sparse import Bm25Encoder
    from retrieval.store import open_store

    embedder = QueryCache(build_embedder(settings))  # the safety detector and retrieval share each message's vector
    if not embedder.dim:  # an OpenAI-compatible model of unknown size: ask it once
        await embedder.embed_query("dimension probe")
    sparse = Bm25Encoder(avg_len=settings.retrieval.bm25_avg_len)
    store = await open_store(settings, embedder.dim)
    return RetrievalStack(embedder, sparse, store, HybridRetriever(store, embedder, sparse, settings.retrieval))


@dataclass
class SharedState:
    """Memory, rate limits, turn-taking, de-duplication and the reindex lock in Redis, shared by
    every process serving one workspace (REDIS_URL set)."""

    client: Any
    memory: Any
    user_limit: Any
    conversation_limit: Any
    locks: Any
    dedupe: Any
    reindex_lock: Any
    settings: Settings

    def bucket(self, kind: str, per_minute: int) -> Any:
        """A shared token bucket at a channel's own rate (its keys apart from the default bucket's)."""
        from bot.state.limits_redis import RedisTokenBucket

        return RedisTokenBucket(self.client, per_minute, name=f"{kind}@{per_minute}")

    def channel_settings(self) -> Any:
        from bot.state.channel_settings_redis import RedisChannelSettings

        return RedisChannelSettings(self.client)

    def journal(self, platform: str) -> Any:
        """Answers in progress on `platform`, so another process can finish them if this one dies."""
        from bot.state.journal_redis import RedisWorkJournal

        return RedisWorkJournal(self.client, self.settings.memory.work_lease_seconds, name=platform)

    async def close(self) -> None:
        from bot.state.redis_client import close

        await close(self.client)


async def build_shared(settings: Settings) -> SharedState | None:
    """The Redis-backed state when REDIS_URL is set (checked with a PING), else None (in-process)."""
    if not settings.memory.redis_url:
        return None
    from bot.state.redis_client import connect, ping
    from bot.state.dedupe_redis import RedisDeduper
    from bot.state.limits_redis import RedisConversationLocks, RedisTokenBucket
    from bot.state.locks_redis import RedisReindexLock
    from bot.state.memory_redis import RedisMemory

    client = connect(settings.memory.redis_url)
    await ping(client)  # a wrong URL or a server that is down fails at start-up, clearly
    limits = settings.limits
    return SharedState(
        client,
        RedisMemory(client),
        RedisTokenBucket(client, limits.user_per_minute, name="user"),
        RedisTokenBucket(client, limits.conversation_per_minute, name="conversation"),
        RedisConversationLocks(client, lease_seconds=settings.memory.work_lease_seconds),  # a dead holder lapses
        RedisDeduper(client),
        RedisReindexLock(client),
        settings,
    )


async def build_engine(settings: Settings, stack: RetrievalStack | None = None, shared: SharedState | None = None) -> Any:
    """The engine with memory (Redis when shared, else SQLite under the data directory) and the
    model, if one is configured."""
    from bot.engine.pipeline import Engine
    from bot.state.memory_sqlite import SqliteMemory
    from bot.llm.openai_model import build_chat_model
    from bot.safety.moderation import build_moderator

    stack = stack or await build_retrieval(settings)
    model = None
    moderation_client = None
    if settings.local.enabled:  # no moderation client: llama-server has no /moderations, the offline rules decide
        model = await start_local_model(settings)
    elif settings.openai.configured:
        import openai

        key = settings.openai.api_key.get_secret_value() if settings.openai.api_key else None
        model = build_chat_model(
            key, settings.openai.base_url, settings.openai.chat_model, settings.openai.timeout_seconds,
            settings.openai.prompt_layout,
        )
        # no client retries: a failed moderation call falls back to the offline rules at once
        moderation_client = openai.AsyncOpenAI(
            api_key=key or "not-needed",
            base_url=settings.openai.base_url,
            timeout=settings.safety.moderation_timeout_seconds,
            max_retries=0,
        )
    choice = build_model_choice(settings, shared)
    if model is not None and not settings.local.enabled:  # a model switched to from the console or the CLI
        from bot.finetune.active import switch
        from bot.finetune.errors import InputError

        try:
            chosen = await choice.current()
        except InputError as exc:  # a damaged model.json: the configured model answers, and the log says why
            log.warning("the chosen model could not be read (%s); answering with %s", exc, settings.openai.chat_model)
            chosen = None
        if chosen and switch(model, chosen):
            log.info("answering with the chosen model %s (advisor finetune rollback goes back)", chosen)
    memory = shared.memory if shared else SqliteMemory(settings.data_dir / "memory.sqlite3")
    channels = build_channel_settings(settings, shared)
    engine = Engine(
        settings,
        stack.retriever,
        memory,
        model,
        moderator=build_moderator(settings, moderation_client),
        exemplars=await open_exemplars(settings, stack) if settings.retrieval.exemplars_k else None,
        shared=shared,
        detector=build_detector(settings, stack) if settings.safety.semantic else None,
        channels=channels,
    )
    engine.model_choice = choice  # the console's fine-tuning page switches and rolls back through it
    return engine


def build_model_choice(settings: Settings, shared: SharedState | None = None) -> Any:
    """The chosen chat model (advisor finetune use/rollback): a Redis hash when shared, else model.json
    in the data directory."""
    from bot.finetune.active import FileModelChoice, RedisModelChoice

    if shared is not None:
        return RedisModelChoice(shared.client)
    return FileModelChoice(settings.data_dir / "model.json")


async def open_model_choice(settings: Settings) -> tuple[Any, Callable[[], Awaitable[None]]]:
    """The model choice for a CLI command, and how to close what it opened."""
    shared = await build_shared(settings)
    return build_model_choice(settings, shared), (shared.close if shared else _nothing)


async def open_memory(settings: Settings) -> tuple[Any, Callable[[], Awaitable[None]]]:
    """The conversation memory the engine uses (Redis when REDIS_URL is set, else SQLite), and its closer."""
    shared = await build_shared(settings)
    if shared is not None:
        return shared.memory, shared.close
    from bot.state.memory_sqlite import SqliteMemory

    memory = SqliteMemory(settings.data_dir / "memory.sqlite3")
    return memory, memory.close


async def _nothing() -> None:
    return None


def build_channel_settings(settings: Settings, shared: SharedState | None = None) -> Any:
    """Per-channel settings: in Redis when shared, else SQLite under the data directory."""
    if shared is not None:
        return shared.channel_settings()
    from bot.state.channel_settings_sqlite import SqliteChannelSettings

    return SqliteChannelSettings(settings.data_dir / "channels.sqlite3")


async def start_local_model(settings: Settings) -> Any:
    """advisor's own llama-server (ADVISOR_LOCAL_MODEL), started and supervised, behind the same OpenAI
    client as any other server. It stops when advisor exits (bot/llm/local_server.py)."""
    from bot.llm.local_model import SERVER_ENV, Capped, resolve
    from bot.llm.local_server import LocalServer
    from bot.llm.openai_model import build_chat_model

    local = resolve(settings.local)
    command = local.command(settings.local.context_tokens, settings.local.threads)
    server = await LocalServer(command, settings.data_dir / "llama-server.log", env=SERVER_ENV).start()
    return Capped(build_chat_model(None, server.base_url, local.alias, settings.openai.timeout_seconds, "strict"))


def build_detector(settings: Settings, stack: RetrievalStack) -> Any:
    """The learned safety detector on the knowledge base's embedder when the head was trained on its
    vectors; on its own local MiniLM otherwise (then a message is embedded twice)."""
    from bot.safety.semantic import COMPATIBLE_EMBEDDERS, SemanticDetector
    from retrieval.embedders import OnnxMiniLMEmbedder, QueryCache

    embedder = stack.embedder if stack.embedder.name in COMPATIBLE_EMBEDDERS else QueryCache(OnnxMiniLMEmbedder())
    return SemanticDetector(embedder)


async def open_exemplars(settings: Settings, stack: RetrievalStack) -> Any:
    """The exemplar collection beside the knowledge base (created empty if it is not there)."""
    from retrieval.exemplars import COLLECTION_SUFFIX, ExemplarIndex
    from retrieval.store import open_store

    if stack.exemplars is None:
        store = await open_store(settings, stack.embedder.dim, suffix=COLLECTION_SUFFIX)
        stack.exemplars = ExemplarIndex(store, stack.embedder, stack.sparse)
    return stack.exemplars


@dataclass
class Services:
    """Everything a platform adapter needs, built once at start-up."""

    stack: RetrievalStack
    engine: Any
    admin: Any
    shared: SharedState | None = None

    @property
    def redis(self) -> Any:
        return self.shared.client if self.shared else None

    def redis_gate(self) -> Any:
        """An async check that Redis answers (raises `StateUnavailable`), or None without Redis."""
        if self.shared is None:
            return None
        from bot.state.redis_client import ping

        client = self.shared.client
        return lambda: ping(client)

    def adapter_state(self, platform: str) -> dict[str, Any]:
        """An adapter's `dedupe` (exactly-once events: shared by every process with Redis, else in
        this one) and `journal` (answers in progress, with Redis only) keyword arguments."""
        from bot.state import local_dedupe

        if self.shared is None:
            return {"dedupe": local_dedupe(), "journal": None}
        return {"dedupe": self.shared.dedupe, "journal": self.shared.journal(platform)}

    async def close(self) -> None:
        await self.engine.memory.close()
        if getattr(self.engine, "channels", None) is not None:
            await self.engine.channels.store.close()
        await self.stack.close()
        if self.shared is not None:
            await self.shared.close()


async def build_services(settings: Settings) -> Services:
    from bot.ops.admin import Admin
    from retrieval.ingest import Ingestor

    shared = await build_shared(settings)
    stack = await build_retrieval(settings)
    engine = await build_engine(settings, stack, shared)
    indexer = Ingestor(
        stack.store, stack.embedder, stack.sparse, settings.retrieval.chunk_tokens, settings.retrieval.chunk_overlap,
        follow_links=settings.retrieval.follow_links,
    )
    lock = shared.reindex_lock if shared else None
    return Services(stack, engine, Admin(engine, indexer, stack.store, settings.core.knowledge_paths, lock), shared)
