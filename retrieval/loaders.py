"""Read a file into sections of text under their heading trails, with character offsets.

Supported: Markdown, plain text, HTML, PDF, and CSV / JSONL with a field mapping.
A file that cannot be read raises `LoaderError` with a reason a person can act on.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILE_BYTES = 50 * 1024 * 1024
MARKDOWN = {".md", ".markdown", ".mdx"}
TEXT = {".txt", ".text", ".rst"}
HTML = {".html", ".htm"}
PDF = {".pdf"}
TABLES = {".csv", ".tsv", ".jsonl", ".ndjson"}
SUPPORTED = MARKDOWN | TEXT | HTML | PDF | TABLES
DEFAULT_TEXT_FIELDS = ("text", "content", "body", "answer", "passage")
DEFAULT_TITLE_FIELDS = ("title", "question", "name", "subject")


class LoaderError(Exception):
    """This file cannot be indexed; the message is the reason."""


@dataclass(frozen=True)
class Section:
    """A run of text under one heading trail; `start` is its offset in the source text."""

    headings: tuple[str, ...]
    text: str
    start: int
    extra: dict[str, object] = field(default_factory=dict, compare=False)
    title: str | None = None  # overrides the document's title (a CSV row's own title)


@dataclass(frozen=True)
class Document:
    source: str
    title: str
    sections: list[Section]


@dataclass(frozen=True)
class FieldMapping:
    """Which fields of a CSV row or JSONL object hold the text and the title."""

    text_fields: tuple[str, ...] = ()
    title_field: str | None = None
    id_field: str | None = None

    def signature(self) -> str:
        return f"{','.join(self.text_fields)}|{self.title_field}|{self.id_field}"


def _title_from_name(path: Path) -> str:
    return re.sub(r"[-_]+", " ", path.stem).strip().capitalize() or path.name


def _decode(path: Path, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise LoaderError("looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoaderError(f"not valid UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from exc


def load(path: Path, mapping: FieldMapping | None = None) -> Document:
    """Read one file. Raises `LoaderError` for unsupported, empty, broken or oversized files."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise LoaderError(f"unsupported file type '{suffix or path.name}' (supported: {', '.join(sorted(SUPPORTED))})")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LoaderError(f"file is {size / 1e6:.0f} MB, over the {MAX_FILE_BYTES // 1_000_000} MB limit")
        data = path.read_bytes()
    except OSError as exc:
        raise LoaderError(f"cannot read: {exc.strerror or exc}") from exc
    if suffix in PDF:
        document = _load_pdf(path, data)
    else:
        text = _decode(path, data)
        if suffix in MARKDOWN:
            document = _load_markdown(path, text)
        elif suffix in HTML:
            document = _load_html(path, text)
        elif suffix in TABLES:
            document = _load_table(path, text, mapping or FieldMapping())
        else:
            document = Document(str(path), _title_from_name(path), [Section((), text, 0)])
    if not any(section.text.strip() for section in document.sections):
        raise LoaderError("no text found in the file")
    return document


_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _load_markdown(path: Path, text: str) -> Document:
    """Split at ATX headings outside fenced code; each section keeps its heading trail."""
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []
    title = ""
    fence: str | None = None
    body_start = 0
    offset = 0

    def close(end: int) -> None:
        body = text[body_start:end]
        if body.strip():
            sections.append(Section(tuple(h for _, h in trail), body, body_start))

    for line in text.splitlines(keepends=True):
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            fence = None if fence == marker else (fence or marker)
        heading = None if fence else _ATX.match(line.rstrip("\n"))
        if heading:
            close(offset)
            level, name = len(heading.group(1)), heading.group(2).strip()
            if level == 1 and not title:
                title = name
            trail = [(lvl, h) for lvl, h in trail if lvl < level] + [(level, name)]
            body_start = offset + len(line)
        offset += len(line)
    close(len(text))
    return Document(str(path), title or _title_from_name(path), sections)


_HTML_BLOCKS = ("p", "li", "pre", "blockquote", "td", "th", "dd", "dt", "figcaption")
_HTML_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_HTML_SKIPPED = ("script", "style", "noscript", "template", "nav", "footer", "head", "title", "meta", "link", "svg", "iframe")
_HTML_INLINE = frozenset(
    "a abbr b bdi bdo big br cite code data del dfn em font i img input ins kbd label mark q s samp small span strike"
    " strong sub sup time tt u var wbr".split()
)
"""Tags whose text runs on with the text around them; any other tag (div, section, ...)
ends the run of loose text before it and starts a new one after it."""
_HIDDEN_STYLE = re.compile(
    r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse)|font-size\s*:\s*0(?:\.0+)?(?:px|pt|em|rem|%)?"
    r"|opacity\s*:\s*0(?:\.0+)?)\s*(?:!\s*important\s*)?(?:;|$)",
    re.IGNORECASE,
)


def _hidden(tag: object) -> bool:
    """Markup a reader never sees: `hidden`, `aria-hidden="true"`, or an inline style that hides
    it (display:none, visibility:hidden, font-size:0, opacity:0). Stylesheets are not evaluated."""
    attrs = getattr(tag, "attrs", None) or {}
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).strip().lower() == "true":
        return True
    return bool(_HIDDEN_STYLE.search(str(attrs.get("style", ""))))


def _visible(node: object) -> Iterator[tuple[str, object]]:
    """("open", tag) / ("close", tag) / ("text", string) for everything visible under `node`, in
    document order: no comments, no hidden or skipped elements. Iterative, so deep nesting is fine."""
    from bs4 import NavigableString, Tag

    stack = [iter(getattr(node, "children", ()))]
    parents: list[object] = []
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            if parents:
                yield "close", parents.pop()
            continue
        if isinstance(child, Tag):
            if child.name not in _HTML_SKIPPED and not _hidden(child):
                yield "open", child
                parents.append(child)
                stack.append(iter(child.children))
        elif type(child) is NavigableString:  # not a Comment, CData, Doctype ...
            yield "text", str(child)


def _inline_text(pieces: list[str]) -> str:
    """Inline tags are joined with spaces, which must not land before punctuation."""
    return re.sub(r"\s+([.,;:!?)])", r"\1", " ".join(" ".join(pieces).split()))


def _html_blocks(root: object) -> Iterator[tuple[str, str]]:
    """(tag name, text) for each heading, block and run of loose text (text sitting directly
    in a div, span, section, body ...) in document order, hidden markup left out. A block's
    text is all the visible text inside it; inline tags continue a run of loose text, any
    other tag ends it."""
    pieces: list[str] = []
    block: object = None  # the heading or block being read
    for kind, item in _visible(root):
        name = getattr(item, "name", "")
        if block is not None:
            if kind == "text":
                pieces.append(str(item))
            elif kind == "close" and item is block:
                text = "".join(pieces) if name == "pre" else _inline_text(pieces)
                pieces.clear()
                block = None
                yield name, text
        elif kind == "text":
            pieces.append(str(item))
        elif name in _HTML_HEADINGS or name in _HTML_BLOCKS or name not in _HTML_INLINE:
            text = _inline_text(pieces)  # the loose text so far
            pieces.clear()
            if text:
                yield "div", text
            if kind == "open" and (name in _HTML_HEADINGS or name in _HTML_BLOCKS):
                block = item
    text = _inline_text(pieces)
    if text:
        yield "div", text


def _load_html(path: Path, text: str) -> Document:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "nav", "footer"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []
    parts: list[str] = []
    offset = 0  # offsets count characters of the extracted text
    body_start = 0

    def close() -> None:
        if parts:
            body = "\n\n".join(parts)
            sections.append(Section(tuple(h for _, h in trail), body, body_start))
            parts.clear()

    for name, content in _html_blocks(soup.body or soup):
        if not content.strip():
            continue
        if name in _HTML_HEADINGS:
            close()
            level = int(name[1])
            title = title or (content if level == 1 else "")
            trail = [(lvl, h) for lvl, h in trail if lvl < level] + [(level, content)]
            offset += len(content) + 2
            body_start = offset
        else:
            parts.append(content)
            offset += len(content) + 2
    close()
    return Document(str(path), title or _title_from_name(path), sections)


def _load_pdf(path: Path, data: bytes) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise LoaderError("the PDF is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except LoaderError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise LoaderError(f"not a readable PDF: {exc}") from exc
    sections = [
        Section((), text, 0, {"page": number})
        for number, text in enumerate(pages, start=1)
        if text.strip()
    ]
    if not sections:
        raise LoaderError("the PDF has no extractable text (scanned images need OCR first)")
    return Document(str(path), str(meta_title).strip() or _title_from_name(path), sections)


def _rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, object]]]:
    """(1-based row or line number, record) pairs."""
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LoaderError(f"line {number} is not valid JSON: {exc.msg}") from exc
            if not isinstance(record, dict):
                raise LoaderError(f"line {number} is not a JSON object")
            yield number, record
        return
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        for number, row in enumerate(reader, start=1):
            yield number, dict(row)
    except csv.Error as exc:
        raise LoaderError(f"malformed CSV: {exc}") from exc


def _pick(names: tuple[str, ...], available: set[str]) -> str | None:
    lowered = {name.lower(): name for name in available}
    return next((lowered[n] for n in names if n in lowered), None)


def _load_table(path: Path, text: str, mapping: FieldMapping) -> Document:
    sections: list[Section] = []
    for number, record in _rows(path, text):
        keys = set(record)
        text_fields = mapping.text_fields or tuple(f for f in [_pick(DEFAULT_TEXT_FIELDS, keys)] if f)
        missing = [name for name in text_fields if name not in keys]
        if not text_fields or missing:
            wanted = ", ".join(missing or mapping.text_fields or DEFAULT_TEXT_FIELDS)
            raise LoaderError(
                f"row {number} has no text field '{wanted}' (fields: {', '.join(sorted(map(str, keys)))}); "
                "name them with --text-field"
            )
        title_field = mapping.title_field or _pick(DEFAULT_TITLE_FIELDS, keys)
        if mapping.title_field and mapping.title_field not in keys:
            raise LoaderError(f"row {number} has no title field '{mapping.title_field}'")
        body = "\n\n".join(str(record[name]).strip() for name in text_fields if record.get(name) not in (None, ""))
        if not body.strip():
            continue
        row_title = str(record.get(title_field) or "").strip() if title_field else ""
        extra: dict[str, object] = {"row": number}
        if mapping.id_field and record.get(mapping.id_field) not in (None, ""):
            extra["id"] = str(record[mapping.id_field])
        sections.append(Section((), body, 0, extra, title=row_title or None))
    return Document(str(path), _title_from_name(path), sections)
