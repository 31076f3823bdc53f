"""Per-channel settings, the interface: what a workspace or channel may override, the rules its
values obey, and how the engine reads them.

A scope is a workspace (`slack:T1`, `discord:G1`) or a channel in one (`slack:T1:C1`). A
channel's settings override its workspace's, which override the global configuration; a field
left unset (None) inherits. `SqliteChannelSettings` (channel_settings_sqlite) and
`RedisChannelSettings` (channel_settings_redis) implement the store with the same results;
tests/test_channel_settings.py holds both to it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

log = logging.getLogger(__name__)

PLATFORMS = ("slack", "discord")
MAX_PERSONA_CHARS = 2000
MAX_PREFIXES = 20
MAX_PREFIX_CHARS = 1024
RATE_BOUNDS = (1, 600)  # messages per minute
_ID = r"[A-Za-z0-9_.\-]{1,64}"
_SCOPE = re.compile(rf"^({'|'.join(PLATFORMS)}):({_ID})(?::({_ID}))?$")
CACHE_SECONDS = 3.0  # no process answers with settings older than this


class ChannelSettingsError(ValueError):
    """A refused scope or value; the message is safe to show an admin."""


@dataclass(frozen=True)
class ChannelSettings:
    """What one scope overrides; None inherits (the workspace's, then the global configuration)."""

    persona: str | None = None
    knowledge_scope: tuple[str, ...] | None = None  # source path prefixes a channel may retrieve from
    user_per_minute: int | None = None
    conversation_per_minute: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "persona": self.persona,
            "knowledge_scope": list(self.knowledge_scope) if self.knowledge_scope is not None else None,
            "user_per_minute": self.user_per_minute,
            "conversation_per_minute": self.conversation_per_minute,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChannelSettings:
        scope = data.get("knowledge_scope")
        return cls(
            data.get("persona"),
            tuple(scope) if scope is not None else None,
            data.get("user_per_minute"),
            data.get("conversation_per_minute"),
        )

    def over(self, base: ChannelSettings) -> ChannelSettings:
        """These settings with `base`'s wherever these are unset."""
        return ChannelSettings(
            self.persona if self.persona is not None else base.persona,
            self.knowledge_scope if self.knowledge_scope is not None else base.knowledge_scope,
            self.user_per_minute if self.user_per_minute is not None else base.user_per_minute,
            self.conversation_per_minute if self.conversation_per_minute is not None else base.conversation_per_minute,
        )


NONE = ChannelSettings()


def check_scope(scope: str) -> str:
    """`scope` if it is `platform:workspace` or `platform:workspace:channel`, else ChannelSettingsError."""
    scope = (scope or "").strip()
    if not _SCOPE.match(scope):
        raise ChannelSettingsError(
            f"'{scope[:80]}' is not a scope: use platform:workspace or platform:workspace:channel "
            f"(platform {' or '.join(PLATFORMS)}; ids of letters, digits, '.', '_' or '-', at most 64 each)."
        )
    return scope


def _rate(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChannelSettingsError(f"{name} must be a whole number, not {value!r}.")
    low, high = RATE_BOUNDS
    if not low <= value <= high:
        raise ChannelSettingsError(f"{name} must be between {low} and {high} per minute, not {value}.")
    return value


def check_settings(settings: ChannelSettings) -> ChannelSettings:
    """`settings` normalised (persona stripped, prefixes as clean absolute paths, no duplicates), or
    ChannelSettingsError naming the first bad value."""
    persona = settings.persona
    if persona is not None:
        if not isinstance(persona, str):
            raise ChannelSettingsError("The persona must be text.")
        persona = persona.strip()
        if not persona:
            raise ChannelSettingsError("The persona is empty: leave it unset to inherit the default.")
        if len(persona) > MAX_PERSONA_CHARS:
            raise ChannelSettingsError(f"The persona is {len(persona):,} characters; at most {MAX_PERSONA_CHARS:,}.")
        if "\x00" in persona:
            raise ChannelSettingsError("The persona contains a NUL character.")
    prefixes = settings.knowledge_scope
    if prefixes is not None:
        prefixes = tuple(dict.fromkeys(_prefix(p) for p in prefixes))
        if not prefixes:
            raise ChannelSettingsError("The knowledge scope is empty: leave it unset to search everything.")
        if len(prefixes) > MAX_PREFIXES:
            raise ChannelSettingsError(f"The knowledge scope has {len(prefixes)} paths; at most {MAX_PREFIXES}.")
    return ChannelSettings(
        persona,
        prefixes,
        _rate("The per-user rate limit", settings.user_per_minute),
        _rate("The per-conversation rate limit", settings.conversation_per_minute),
    )


def _prefix(path: Any) -> str:
    if not isinstance(path, str) or not path.strip():
        raise ChannelSettingsError("A knowledge scope path is empty.")
    path = path.strip()
    if "\x00" in path or len(path) > MAX_PREFIX_CHARS:
        raise ChannelSettingsError(f"A knowledge scope path has a NUL byte or is over {MAX_PREFIX_CHARS} characters.")
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts:
        raise ChannelSettingsError(f"'{path[:80]}' is not an absolute path without '..'.")
    return str(pure)


def scopes_of(platform: str, workspace: str, channel: str) -> tuple[str, str]:
    """The (workspace, channel) scopes a message's settings come from."""
    return f"{platform}:{workspace}", f"{platform}:{workspace}:{channel}"


class ChannelSettingsStore(Protocol):
    """Settings per scope."""

    async def get(self, scope: str) -> ChannelSettings | None: ...

    async def put(self, scope: str, settings: ChannelSettings) -> ChannelSettings:
        """Checks and stores the settings (replacing the scope's), returns them as stored."""
        ...

    async def delete(self, scope: str) -> bool: ...

    async def all(self) -> dict[str, ChannelSettings]:
        """Every scope with settings, sorted by scope."""
        ...

    async def close(self) -> None: ...


class ChannelView:
    """What the engine reads on every message: a message's merged settings, each scope cached for
    at most `CACHE_SECONDS`. A store that fails never blocks an answer: a warning, and the global
    configuration (NONE) for that message."""

    def __init__(self, store: ChannelSettingsStore, ttl: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, ChannelSettings | None]] = {}

    async def _get(self, scope: str) -> ChannelSettings | None:
        now = self.clock()
        cached = self._cache.get(scope)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        value = await self.store.get(scope)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[scope] = (now, value)
        return value

    async def for_message(self, platform: str, workspace: str, channel: str) -> ChannelSettings:
        try:
            workspace_scope, channel_scope = scopes_of(platform, workspace, channel)
            merged = NONE
            for scope in (workspace_scope, channel_scope):
                if not _SCOPE.match(scope):  # the terminal, the simulator: no scope can name them
                    return merged
                found = await self._get(scope)
                if found is not None:
                    merged = found.over(merged)
            return merged
        except Exception as exc:  # noqa: BLE001 - settings are an overlay: never block an answer
            log.warning("channel settings unavailable, using the global configuration: %s", type(exc).__name__)
            return NONE

    def forget(self, scopes: Iterable[str] | None = None) -> None:
        """Drop cached scopes (all by default), e.g. after an edit in this process."""
        if scopes is None:
            self._cache.clear()
        for scope in scopes or ():
            self._cache.pop(scope, None)
