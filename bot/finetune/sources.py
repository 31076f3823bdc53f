"""Reading a Q&A data set (CSV or JSONL) and naming which fields hold what."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, fields, replace
from pathlib import Path

from bot.finetune.errors import InputError


@dataclass(frozen=True)
class Mapping:
    """Which field holds what. Only `question` and `answer` are required."""

    name: str
    question: str
    answer: str
    title: str | None = None
    split: str | None = None
    rank: str | None = None  # higher is better: the best answer per question is kept
    id: str | None = None  # groups the answers of one question (default: the question text)
    author: str | None = None  # the answerer, to find and strip their signature

    def columns(self) -> list[str]:
        return [value for f in fields(self) if f.name != "name" and (value := getattr(self, f.name))]


COUNSEL_CHAT = Mapping(
    name="counsel-chat",
    question="questionText",
    answer="answerText",
    title="questionTitle",
    split="split",
    rank="upvotes",
    id="questionID",
    author="therapistInfo",
)


@dataclass(frozen=True)
class Row:
    line: int  # 1-based line where the record starts
    values: dict[str, str]


@dataclass(frozen=True)
class Table:
    path: Path
    columns: list[str]
    rows: list[Row]


def read_table(path: Path) -> Table:
    """A .csv/.tsv (header row) or .jsonl (one object a line) file as rows of strings."""
    if not path.is_file():
        raise InputError("no such file", path)
    try:
        if path.suffix.lower() in {".jsonl", ".ndjson"}:
            return _read_jsonl(path)
        if path.suffix.lower() in {".csv", ".tsv"}:
            return _read_csv(path, "\t" if path.suffix.lower() == ".tsv" else ",")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from exc
    raise InputError("expected a .csv, .tsv or .jsonl file", path)


def _read_csv(path: Path, delimiter: str) -> Table:
    rows: list[Row] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        start = 2
        try:
            columns = list(reader.fieldnames or [])
            for record in reader:
                rows.append(Row(start, {key: value or "" for key, value in record.items() if isinstance(key, str)}))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise InputError(f"bad CSV: {exc}", path, reader.line_num) from exc
    if not columns:
        raise InputError("empty file: expected a header row", path)
    return Table(path, columns, rows)


def _read_jsonl(path: Path) -> Table:
    rows: list[Row] = []
    columns: list[str] = []
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc.msg}", path, number) from exc
            if not isinstance(record, dict):
                raise InputError("expected a JSON object", path, number)
            columns += [key for key in record if key not in columns]
            rows.append(Row(number, {key: _text(value) for key, value in record.items()}))
    return Table(path, columns, rows)


def _text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def choose_mapping(table: Table, given: dict[str, str | None]) -> Mapping:
    """The built-in counsel-chat mapping when its columns are there and no question field is named,
    else the named fields; either way a named field overrides, and every field must exist."""
    named = {key: value for key, value in given.items() if value}
    if "question" not in named and set(COUNSEL_CHAT.columns()) <= set(table.columns):
        mapping = replace(COUNSEL_CHAT, **named)
    elif "question" in named and "answer" in named:
        mapping = Mapping(name="fields", **named)  # type: ignore[arg-type]
    else:
        raise InputError(
            "not the counsel-chat layout: name the fields with --question-field and --answer-field "
            f"(columns: {', '.join(table.columns) or 'none'})",
            table.path,
        )
    missing = [column for column in mapping.columns() if column not in table.columns]
    if missing:
        raise InputError(f"no field {', '.join(map(repr, missing))} (columns: {', '.join(table.columns)})", table.path)
    return mapping
