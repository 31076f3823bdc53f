"""Logging set-up: JSON lines (or text) on stderr, per-turn context, and redaction of secrets.

`configure_logging(level, fmt, secrets)` replaces the root handler. Every record that reaches it first gets the
current turn's context (`turn_context(...)`: turn_id, conversation, platform; a contextvar, so it follows awaits in
the same task and is inherited by tasks it creates), then is redacted: the configured secret values and anything
shaped like a known token are replaced by "[redacted]" in the message, the `extra=` fields, the exception text and
the stack. `RedactingFilter` and `ContextFilter` can be attached to any other handler the same way.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets as _secrets
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8
CONTEXT_FIELDS = ("turn_id", "conversation", "platform")
CHATTY = ("httpx", "httpx2", "httpcore", "httpcore2")  # a line per request is noise, and URLs can carry ids

TOKEN_PATTERNS = (
    re.compile(r"sk-[A-Za-z0-9_-]{10,}"),  # OpenAI-style keys (sk-..., sk-proj-...)
    re.compile(r"xox[abposr]-[A-Za-z0-9-]+"),  # Slack bot/user/app-level tokens
    re.compile(r"xapp-[A-Za-z0-9-]+"),  # Slack app-level tokens
    re.compile(r"[A-Za-z0-9_-]{23,}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}"),  # Discord bot tokens (and JWTs)
)
BEARER = re.compile(r"(?i)\b(bearer)\s+\S+")
URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:@/\s]*):([^@/\s]+)@")  # redis://:pw@, rediss://u:pw@, ...

_secret_values: tuple[str, ...] = ()
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "advisor_log_context", default=MappingProxyType({})
)
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
_OUR_HANDLER = "_advisor_handler"


def set_secrets(values: Iterable[str | None]) -> None:
    """The exact values to redact everywhere (values shorter than 8 characters are ignored: too many false hits)."""
    global _secret_values
    kept = {value for value in values if value and len(value) >= MIN_SECRET_LENGTH}
    _secret_values = tuple(sorted(kept, key=len, reverse=True))


def redact(text: str, extra_secrets: Iterable[str | None] = ()) -> str:
    """`text` with configured (and `extra_secrets`) values and token-shaped strings replaced by "[redacted]"."""
    extra = sorted((s for s in extra_secrets if s and len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)
    for value in (*extra, *_secret_values):
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern in TOKEN_PATTERNS:
        text = pattern.sub(REDACTED, text)
    text = BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)


def redact_value(value: Any) -> Any:
    """Strings redacted, containers redacted item by item, numbers/bools/None kept; anything else as redacted str."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {redact(str(key)): redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item) for item in value]
    return redact(str(value))


# -- per-turn context ---------------------------------------------------------


def new_turn_id() -> str:
    """A short random id for one turn (12 hex characters)."""
    return _secrets.token_hex(6)


@contextmanager
def turn_context(
    turn_id: str | None = None, conversation: str | None = None, platform: str | None = None
) -> Iterator[Mapping[str, str]]:
    """Log records inside the block carry these fields; fields left None keep any outer value."""
    given = {"turn_id": turn_id, "conversation": conversation, "platform": platform}
    merged = {**_context.get(), **{key: str(value) for key, value in given.items() if value is not None}}
    token = _context.set(merged)
    try:
        yield merged
    finally:
        _context.reset(token)


def current_context() -> Mapping[str, str]:
    return _context.get()


class ContextFilter(logging.Filter):
    """Adds the current turn's fields to a record (an explicit `extra=` value wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


class RedactingFilter(logging.Filter):
    """Rewrites a record in place so no handler after it sees a secret: message, extras, exception and stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key in extra_fields(record):
            setattr(record, key, redact_value(getattr(record, key)))
        return True


def extra_fields(record: logging.LogRecord) -> list[str]:
    """The names of the attributes a log call added with `extra=`."""
    return [key for key in record.__dict__ if key not in _STANDARD_ATTRS and not key.startswith("_")]


# -- formatters ---------------------------------------------------------------


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    text = record.exc_text or ""
    if record.stack_info:
        text = f"{text}\n{formatter.formatStack(record.stack_info)}".strip()
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, the turn context, the extras, and exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key in extra_fields(record):  # the context fields are extras too, set by ContextFilter
            value = redact_value(getattr(record, key))
            if value is not None:
                entry[key if key not in entry else f"extra_{key}"] = value
        exc = _exception_text(self, record)
        if exc:
            entry["exc"] = redact(exc)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Like the CLI's format, with the turn context in brackets: `... INFO bot.engine.pipeline [turn=ab12 ...]: message`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(_advisor_context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = [f"{key}={getattr(record, key)}" for key in CONTEXT_FIELDS if getattr(record, key, None) is not None]
        record._advisor_context = f" [{' '.join(fields)}]" if fields else ""
        try:
            return redact(super().format(record))
        finally:
            del record._advisor_context


def configure_logging(
    level: str, fmt: Literal["auto", "json", "text"] = "auto", secrets: Iterable[str | None] = ()
) -> logging.Handler:
    """Replace the root handler: JSON lines ("auto": unless stderr is a terminal) or text on stderr, with context
    and redaction; `secrets` are exact values to redact. Calling it again replaces the previous set-up."""
    set_secrets(secrets)
    if fmt == "auto":
        fmt = "text" if _is_tty(sys.stderr) else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    setattr(handler, _OUR_HANDLER, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _OUR_HANDLER, False) or _is_std_stream(old):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for chatty in CHATTY:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    return handler


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _is_std_stream(handler: logging.Handler) -> bool:
    """A plain stderr/stdout handler (e.g. from basicConfig) that ours replaces; file and test handlers stay."""
    stream = getattr(handler, "stream", None)
    return type(handler) is logging.StreamHandler and stream in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)


__all__ = [
    "ContextFilter",
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "configure_logging",
    "current_context",
    "new_turn_id",
    "redact",
    "redact_value",
    "set_secrets",
    "turn_context",
]
