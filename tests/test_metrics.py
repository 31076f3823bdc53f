"""bot.ops.metrics: the helpers move the right series, labels stay bounded, the exposition parses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.ops import metrics
from bot.ops.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_event_in_counts_and_unknown_labels_become_other() -> None:
    before = value("advisor_events_total", platform="slack", kind="message")
    other_kind = value("advisor_events_total", platform="slack", kind="other")
    other_both = value("advisor_events_total", platform="other", kind="other")
    metrics.event_in("slack", "message")
    metrics.event_in("Slack", "MESSAGE")
    metrics.event_in("slack", "x" * 500)
    metrics.event_in("irc", "weird\nkind")
    assert value("advisor_events_total", platform="slack", kind="message") == before + 2
    assert value("advisor_events_total", platform="slack", kind="other") == other_kind + 1
    assert value("advisor_events_total", platform="other", kind="other") == other_both + 1
    assert REGISTRY.get_sample_value("advisor_events_total", {"platform": "slack", "kind": "x" * 500}) is None


def test_answer_out_counts_mode_and_observes_timings() -> None:
    count = value("advisor_answers_total", platform="discord", mode="model")
    first = value("advisor_first_token_seconds_count", platform="discord")
    total = value("advisor_answer_seconds_count", platform="discord")
    slow = value("advisor_answer_seconds_bucket", platform="discord", le="60.0")
    metrics.answer_out("discord", "model", 0.3, 2.5)
    metrics.answer_out("discord", "rejected", None, 0.01)
    metrics.answer_out("discord", "bogus", None, None)
    assert value("advisor_answers_total", platform="discord", mode="model") == count + 1
    assert value("advisor_answers_total", platform="discord", mode="other") >= 1
    assert value("advisor_first_token_seconds_count", platform="discord") == first + 1
    assert value("advisor_answer_seconds_count", platform="discord") == total + 2
    assert value("advisor_answer_seconds_bucket", platform="discord", le="60.0") == slow + 2
    assert {0.05, 60.0} <= set(metrics.ANSWER_BUCKETS)


def test_usage_errors_limits_and_safety_counters() -> None:
    names = [
        ("advisor_model_tokens_total", {"kind": "prompt"}),
        ("advisor_model_tokens_total", {"kind": "completion"}),
        ("advisor_cost_usd_total", {}),
        ("advisor_retrieval_seconds_count", {}),
        ("advisor_rate_limited_total", {"scope": "user"}),
        ("advisor_rate_limited_total", {"scope": "other"}),
        ("advisor_platform_429_total", {"platform": "slack"}),
        ("advisor_model_errors_total", {"kind": "quota"}),
        ("advisor_model_errors_total", {"kind": "other"}),
        ("advisor_duplicates_dropped_total", {"platform": "discord"}),
        ("advisor_moderation_flags_total", {"stage": "output", "action": "refuse"}),
        ("advisor_crisis_protocol_total", {}),
    ]
    before = [value(name, **labels) for name, labels in names]
    metrics.model_usage(120, 30, 0.0015)
    metrics.model_usage(-5, 0, None)  # a bad count is ignored, never an exception
    metrics.retrieval_took(0.02)
    metrics.rate_limited("user")
    metrics.rate_limited("planet")
    metrics.platform_429("slack")
    metrics.model_error("quota")
    metrics.model_error("something new")
    metrics.duplicate_dropped("discord")
    metrics.moderation_flag("output", "refuse")
    metrics.crisis()
    after = [value(name, **labels) for name, labels in names]
    deltas = [round(b - a, 6) for a, b in zip(before, after, strict=True)]
    assert deltas == [120, 30, 0.0015, 1, 1, 1, 1, 1, 1, 1, 1, 1]


async def test_in_flight_sync_and_async_and_on_errors() -> None:
    base = value("advisor_answers_in_flight")
    with metrics.in_flight():
        assert value("advisor_answers_in_flight") == base + 1
        async with metrics.in_flight() as inner:
            assert value("advisor_answers_in_flight") == base + 2
            assert inner.elapsed >= 0
    with pytest.raises(RuntimeError), metrics.in_flight():
        raise RuntimeError("boom")
    assert value("advisor_answers_in_flight") == base


def test_render_parses_and_contains_the_counters() -> None:
    metrics.event_in("discord", "interaction")
    metrics.answer_out("discord", "crisis", 0.1, 0.2)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    assert {"advisor_events", "advisor_answers", "advisor_answer_seconds", "advisor_answers_in_flight"} <= set(families)
    assert families["advisor_events"].type == "counter"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in families["advisor_events"].samples}
    assert samples[("advisor_events_total", (("kind", "interaction"), ("platform", "discord")))] >= 1
    assert families["advisor_answer_seconds"].type == "histogram"


WORKER = """
import sys
from bot.ops import metrics
metrics.event_in("slack", "message")
metrics.answer_out("slack", "model", 0.1, float(sys.argv[1]))
with metrics.in_flight():
    pass
"""
READER = """
from bot.ops import metrics
body, _ = metrics.render()
print(body.decode())
"""


def test_multiprocess_mode_sums_every_worker(tmp_path: Path) -> None:
    """Two processes write to PROMETHEUS_MULTIPROC_DIR; a third process's render() reports both."""
    directory = tmp_path / "prom"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    for seconds in ("1.0", "2.0"):
        subprocess.run([sys.executable, "-c", WORKER, seconds], env=env, check=True, cwd=ROOT, timeout=60)
    assert list(directory.glob("*.db"))
    out = subprocess.run(
        [sys.executable, "-c", READER], env=env, check=True, cwd=ROOT, timeout=60, capture_output=True, text=True
    ).stdout
    families = {family.name: family for family in text_string_to_metric_families(out)}
    events = {s.name: s.value for s in families["advisor_events"].samples if s.labels.get("kind") == "message"}
    assert events["advisor_events_total"] == 2
    answer_sum = [s.value for s in families["advisor_answer_seconds"].samples if s.name.endswith("_sum")]
    assert answer_sum == [3.0]
