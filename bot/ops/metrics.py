"""Prometheus metrics for the advisor, behind small typed helpers (callers never touch prometheus objects).

Every metric lives in the module-level `REGISTRY` (not prometheus_client's global default), so tests can read
values with `REGISTRY.get_sample_value(...)`, and `render()` gives the body and content type for `GET /metrics`.

Label values are bounded: each label has a fixed set of allowed values and anything else is counted as "other",
so a malformed event or a new error kind cannot create unbounded time series.

Several processes (multiprocess mode)
-------------------------------------
When several worker processes serve the same deployment (e.g. more than one `advisor run slack --http` behind a
load balancer on one host, or a pre-fork server), set `PROMETHEUS_MULTIPROC_DIR` to an empty directory that all of
them share, in the environment of every process *before it starts* (prometheus_client picks its value store at
import). Then:

* each process writes its values to `<dir>/<type>_<pid>.db` memory-mapped files instead of keeping them in memory;
* `render()` in any one of them reads every file with `prometheus_client.multiprocess.MultiProcessCollector`, so a
  scrape of any worker returns the sum over all workers (counters and histograms are summed; the in-flight gauge is
  `livesum`: the sum over processes that are still alive);
* wipe the directory when the deployment starts (before the workers), never while workers run, and do not share it
  between deployments; when a worker exits, its supervisor should call `mark_process_dead(pid)` so its live gauges
  disappear (its counters stay, as they should).

Without the variable, values are kept in memory and `render()` exposes this process only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Final, Self

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_DIR: Final[str | None] = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
REGISTRY: Final = CollectorRegistry()
OTHER: Final = "other"

PLATFORMS: Final = frozenset({"slack", "discord", "console", "cli", "simulate"})
EVENT_KINDS: Final = frozenset(
    {"message", "mention", "dm", "command", "interaction", "action", "shortcut", "feedback", "reaction"}
)
ANSWER_MODES: Final = frozenset({"model", "offline", "limited", "rejected", "error", "crisis"})
TOKEN_KINDS: Final = frozenset({"prompt", "completion"})
RATE_LIMIT_SCOPES: Final = frozenset({"user", "conversation"})
MODEL_ERROR_KINDS: Final = frozenset(
    {
        "rate_limited",
        "quota",
        "context_length",
        "unavailable",
        "interrupted",
        "auth",
        "model_not_found",
        "bad_request",
        "timeout",
    }
)
MODERATION_STAGES: Final = frozenset({"input", "output"})
MODERATION_ACTIONS: Final = frozenset({"normal", "care", "refuse", "alert", "crisis"})

ANSWER_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0)
RETRIEVAL_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

EVENTS = Counter("advisor_events", "Platform events received", ["platform", "kind"], registry=REGISTRY)
ANSWERS = Counter("advisor_answers", "Turns answered, by how", ["platform", "mode"], registry=REGISTRY)
FIRST_TOKEN = Histogram(
    "advisor_first_token_seconds", "Time from the event to the first answer text", ["platform"],
    buckets=ANSWER_BUCKETS, registry=REGISTRY,
)  # fmt: skip
ANSWER_TIME = Histogram(
    "advisor_answer_seconds", "Time from the event to the final answer", ["platform"],
    buckets=ANSWER_BUCKETS, registry=REGISTRY,
)  # fmt: skip
MODEL_TOKENS = Counter("advisor_model_tokens", "Language model tokens used", ["kind"], registry=REGISTRY)
COST = Counter("advisor_cost_usd", "Estimated language model cost in US dollars", registry=REGISTRY)
RETRIEVAL = Histogram(
    "advisor_retrieval_seconds", "Knowledge base search time", buckets=RETRIEVAL_BUCKETS, registry=REGISTRY
)
RATE_LIMITED = Counter("advisor_rate_limited", "Turns refused by our own rate limits", ["scope"], registry=REGISTRY)
PLATFORM_429 = Counter("advisor_platform_429", "HTTP 429s from the chat platform", ["platform"], registry=REGISTRY)
MODEL_ERRORS = Counter("advisor_model_errors", "Failed language model calls", ["kind"], registry=REGISTRY)
DUPLICATES = Counter("advisor_duplicates_dropped", "Redelivered events dropped", ["platform"], registry=REGISTRY)
IN_FLIGHT = Gauge(
    "advisor_answers_in_flight", "Answers being produced right now", registry=REGISTRY, multiprocess_mode="livesum"
)
MODERATION = Counter("advisor_moderation_flags", "Moderation flags", ["stage", "action"], registry=REGISTRY)
CRISIS = Counter("advisor_crisis_protocol", "Turns answered with the crisis protocol", registry=REGISTRY)
FEEDBACK = Counter("advisor_feedback", "Feedback on answers (up or down)", ["value"], registry=REGISTRY)
WRITE_OUTCOMES: Final = frozenset({"new_message", "follow_up", "dm", "lost"})
WRITE_FAILURES = Counter(
    "advisor_write_failures", "Chat platform writes that failed mid-answer, by where the answer went instead",
    ["platform", "outcome"], registry=REGISTRY,
)  # fmt: skip


def bounded(value: object, allowed: Iterable[str]) -> str:
    """`value` as a label if it is one of `allowed` (case-insensitive), otherwise "other"."""
    text = str(value).strip().lower() if value is not None else ""
    return text if text in allowed else OTHER


def _non_negative(value: float | None) -> float:
    try:
        number = float(value or 0)
    except (TypeError, ValueError):
        return 0.0
    return number if number > 0 and number != float("inf") else 0.0


def event_in(platform: str, kind: str) -> None:
    EVENTS.labels(bounded(platform, PLATFORMS), bounded(kind, EVENT_KINDS)).inc()


def answer_out(platform: str, mode: str, first_token_s: float | None = None, total_s: float | None = None) -> None:
    """One answered turn; the timings are observed when given (a rejected turn may have no first token)."""
    label = bounded(platform, PLATFORMS)
    ANSWERS.labels(label, bounded(mode, ANSWER_MODES)).inc()
    if first_token_s is not None and first_token_s >= 0:
        FIRST_TOKEN.labels(label).observe(first_token_s)
    if total_s is not None and total_s >= 0:
        ANSWER_TIME.labels(label).observe(total_s)


def model_usage(prompt_tokens: int, completion_tokens: int, cost_usd: float | None = None) -> None:
    MODEL_TOKENS.labels("prompt").inc(_non_negative(prompt_tokens))
    MODEL_TOKENS.labels("completion").inc(_non_negative(completion_tokens))
    if cost_usd is not None:
        COST.inc(_non_negative(cost_usd))


def retrieval_took(seconds: float) -> None:
    if seconds >= 0:
        RETRIEVAL.observe(seconds)


def rate_limited(scope: str) -> None:
    RATE_LIMITED.labels(bounded(scope, RATE_LIMIT_SCOPES)).inc()


def platform_429(platform: str) -> None:
    PLATFORM_429.labels(bounded(platform, PLATFORMS)).inc()


def model_error(kind: str) -> None:
    MODEL_ERRORS.labels(bounded(kind, MODEL_ERROR_KINDS)).inc()


def duplicate_dropped(platform: str) -> None:
    DUPLICATES.labels(bounded(platform, PLATFORMS)).inc()


def moderation_flag(stage: str, action: str) -> None:
    MODERATION.labels(bounded(stage, MODERATION_STAGES), bounded(action, MODERATION_ACTIONS)).inc()


def crisis() -> None:
    CRISIS.inc()


def feedback(value: int) -> None:
    FEEDBACK.labels(value="up" if value > 0 else "down").inc()


def write_failed(platform: str, outcome: str) -> None:
    """A write that failed mid-answer, and where the answer went: a new message, a follow-up, a DM, or "lost"."""
    WRITE_FAILURES.labels(bounded(platform, PLATFORMS), bounded(outcome, WRITE_OUTCOMES)).inc()


class InFlight:
    """Counts an answer in `advisor_answers_in_flight` while the block runs; `elapsed` is its duration so far."""

    def __init__(self) -> None:
        self.started = 0.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        IN_FLIGHT.inc()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        IN_FLIGHT.dec()

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, tb)


def in_flight() -> InFlight:
    """`with in_flight():` or `async with in_flight():` around producing one answer."""
    return InFlight()


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition (body, content type): all worker processes in multiprocess mode."""
    if MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """For a supervisor, when worker `pid` exits in multiprocess mode: drops its live gauge values."""
    if MULTIPROC_DIR:
        multiprocess.mark_process_dead(pid, MULTIPROC_DIR)


__all__ = [
    "REGISTRY",
    "InFlight",
    "answer_out",
    "bounded",
    "crisis",
    "duplicate_dropped",
    "event_in",
    "in_flight",
    "mark_process_dead",
    "model_error",
    "model_usage",
    "moderation_flag",
    "platform_429",
    "rate_limited",
    "render",
    "retrieval_took",
    "write_failed",
]
