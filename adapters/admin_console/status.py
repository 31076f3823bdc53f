"""What the status page reads besides `Admin.status()`: error counts from the metrics registry."""

from __future__ import annotations

from bot.ops.metrics import REGISTRY

# counter (without _total) -> the label shown
ERROR_COUNTERS = {
    "advisor_model_errors": "model call failures",
    "advisor_platform_429": "platform HTTP 429s",
    "advisor_write_failures": "platform write failures",
    "advisor_rate_limited": "turns refused by our rate limits",
    "advisor_moderation_flags": "moderation flags",
    "advisor_crisis_protocol": "crisis protocol answers",
}


def error_counts() -> dict[str, float]:
    """Each error counter's total since the process started (summed over its labels), with a breakdown
    by its first label where there is one (e.g. `model call failures (timeout)`)."""
    totals: dict[str, float] = {label: 0.0 for label in ERROR_COUNTERS.values()}
    for family in REGISTRY.collect():
        label = ERROR_COUNTERS.get(family.name)
        if label is None:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            totals[label] += sample.value
            if sample.labels:
                key = f"{label} ({', '.join(str(v) for v in sample.labels.values())})"
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals
