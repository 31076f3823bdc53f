"""`advisor finetune validate`: check a chat fine-tuning JSONL file before it is uploaded.

Errors (any one means: do not upload), warnings, token statistics by the cookbook's
counting rule, and an estimate of epochs, billed tokens and price. Line numbers are 1-based.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.finetune.basemodels import BaseModel
from bot.finetune.checks import ERRORS, WARNINGS, Issue, check_example
from bot.finetune.errors import InputError
from bot.finetune.tokens import message_tokens

MIN_EXAMPLES = 10
# OpenAI's default epochs: 3, unless that makes fewer than 100 or more than 25,000 example-passes.
TARGET_EPOCHS = 3
MIN_EXAMPLE_PASSES = 100
MAX_EXAMPLE_PASSES = 25_000
MAX_DEFAULT_EPOCHS = 25
DETAILS_SHOWN = 3


def default_epochs(examples: int) -> int:
    if examples and examples * TARGET_EPOCHS < MIN_EXAMPLE_PASSES:
        return min(MAX_DEFAULT_EPOCHS, math.ceil(MIN_EXAMPLE_PASSES / examples))
    if examples * TARGET_EPOCHS > MAX_EXAMPLE_PASSES:
        return max(1, MAX_EXAMPLE_PASSES // examples)
    return TARGET_EPOCHS


def distribution(values: list[int]) -> dict[str, float | None]:
    """min / max / mean / median / p10 / p90 (linear interpolation, as numpy's quantile)."""
    if not values:
        return dict.fromkeys(("min", "max", "mean", "median", "p10", "p90"))
    deciles = statistics.quantiles(values, n=10, method="inclusive") if len(values) > 1 else [values[0]] * 9
    return {
        "min": min(values),
        "max": max(values),
        "mean": round(statistics.fmean(values), 2),
        "median": statistics.median(values),
        "p10": round(deciles[0], 2),
        "p90": round(deciles[8], 2),
    }


@dataclass
class ValidationReport:
    path: str
    model: BaseModel
    examples: int = 0
    errors: dict[str, list[int]] = field(default_factory=dict)
    warnings: dict[str, list[int]] = field(default_factory=dict)
    details: dict[str, list[str]] = field(default_factory=dict)
    stats: dict[str, dict[str, float | None]] = field(default_factory=dict)
    estimate: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, line: int | None, issue: Issue) -> None:
        table = self.errors if issue.kind in ERRORS else self.warnings
        lines = table.setdefault(issue.kind, [])
        if line is not None and line not in lines:
            lines.append(line)
        shown = self.details.setdefault(issue.kind, [])
        if len(shown) < DETAILS_SHOWN:
            shown.append(f"line {line}: {issue.detail}" if line is not None else issue.detail)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "examples": self.examples,
            "errors": {kind: self.errors[kind] for kind in ERRORS if kind in self.errors},
            "warnings": {kind: self.warnings[kind] for kind in WARNINGS if kind in self.warnings},
            "stats": self.stats,
            "estimate": self.estimate,
        }

    def render(self) -> str:
        model = self.model
        out = [
            (
                f"{self.path}: {self.examples} examples; model {model.name} ({model.encoding}, "
                f"{model.token_limit:,} tokens per example)"
            )
        ]
        if self.errors:
            out.append("ERRORS: do not upload this file until they are fixed")
            out += self._issues(self.errors, ERRORS)
        else:
            out.append("No errors.")
        if self.warnings:
            out.append("Warnings:")
            out += self._issues(self.warnings, WARNINGS)
        out.append(f"\n{'per example':<18}{'min':>8}{'max':>8}{'mean':>10}{'median':>9}{'p10':>9}{'p90':>9}")
        for name, row in self.stats.items():
            cells = "".join(
                f"{_number(row[key]):>{width}}"
                for key, width in zip(("min", "max", "mean", "median", "p10", "p90"), (8, 8, 10, 9, 9, 9), strict=True)
            )
            out.append(f"{name.replace('_', ' '):<18}{cells}")
        estimate = self.estimate
        line = (
            f"\nEstimate: {estimate['epochs']} epochs x {estimate['billed_tokens']:,} billed tokens "
            f"= {estimate['total_billed_tokens']:,} training tokens"
        )
        if estimate["cost_usd"] is not None:
            line += f", about ${estimate['cost_usd']:,.2f} at ${estimate['price_per_mtok']:g} per million"
        else:
            line += " (price unknown: pass --price-per-mtok)"
        out.append(line)
        return "\n".join(out)

    def _issues(self, table: dict[str, list[int]], descriptions: dict[str, str]) -> list[str]:
        out = []
        for kind in (kind for kind in descriptions if kind in table):
            lines = table[kind]
            where = "the whole file" if not lines else f"line{'s' if len(lines) > 1 else ''} {_first(lines)}"
            out.append(f"  {kind}: {descriptions[kind]} ({where})")
            out += [f"      {detail}" for detail in self.details[kind]]
        return out


def _first(lines: list[int], shown: int = 10) -> str:
    text = ", ".join(map(str, lines[:shown]))
    return text + (f", ... ({len(lines) - shown} more)" if len(lines) > shown else "")


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _parse(raw: bytes) -> tuple[list[Issue], Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Issue("invalid_utf8", f"byte {exc.start}: {exc.reason}")], None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return [Issue("invalid_json", f"{exc.msg} (column {exc.colno})")], None
    return check_example(data), data


def read_lines(path: Path) -> list[bytes]:
    """The file's lines (a final newline ends the last line, it does not start an empty one)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", path) from exc
    lines = [line.removesuffix(b"\r") for line in data.split(b"\n")]
    return lines[:-1] if lines and not lines[-1] else lines


def validate_file(path: Path, model: BaseModel, epochs: int | None = None) -> ValidationReport:
    """Check every line, count tokens, and estimate the training; InputError if the file cannot be read."""
    lines = read_lines(path)
    report = ValidationReport(str(path), model, examples=len(lines))
    seen: dict[str, int] = {}
    counts: list[tuple[int, int, int]] = []  # (messages, total tokens, assistant tokens)
    for number, raw in enumerate(lines, 1):
        issues, data = _parse(raw)
        for issue in issues:
            report.add(number, issue)
        messages = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            continue
        key = json.dumps(data, sort_keys=True, ensure_ascii=False)
        if key in seen:
            report.add(number, Issue("duplicate_example", f"same as line {seen[key]}"))
        seen.setdefault(key, number)
        total, assistant = message_tokens(messages, model.encoding)
        if total > model.token_limit:
            report.add(number, Issue("over_token_limit", f"{total:,} tokens > {model.token_limit:,}"))
        counts.append((len(messages), total, assistant))
    if len(lines) < MIN_EXAMPLES:
        report.add(None, Issue("too_few_examples", f"{len(lines)} examples; at least {MIN_EXAMPLES} are needed"))
    report.stats = {
        name: distribution([row[index] for row in counts])
        for index, name in enumerate(("messages", "total_tokens", "assistant_tokens"))
    }
    report.estimate = estimate(model, len(lines), [total for _, total, _ in counts], epochs)
    return report


def estimate(model: BaseModel, examples: int, totals: list[int], epochs: int | None = None) -> dict[str, Any]:
    """Epochs (OpenAI's default rule unless given), billed tokens per epoch (each example capped
    at the limit), their total over the epochs, and the price when it is known."""
    epochs = epochs or default_epochs(examples)
    billed = sum(min(model.token_limit, total) for total in totals)
    price = model.training_price
    return {
        "model": model.name,
        "encoding": model.encoding,
        "token_limit": model.token_limit,
        "epochs": epochs,
        "billed_tokens": billed,
        "total_billed_tokens": epochs * billed,
        "price_per_mtok": price,
        "cost_usd": round(epochs * billed * price / 1_000_000, 4) if price is not None else None,
    }
