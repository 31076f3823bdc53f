"""Cleaning scraped advice text: markup, whitespace, run-together sentences, self-promotion,
signatures, and masking of e-mails, URLs and phone numbers.

Every step is a small function; `clean_answer` and `clean_question` chain them and count
which steps changed the text, for the prepare report.
"""

from __future__ import annotations

import html
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning

_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_ENTITY = re.compile(r"&(?:#\d+|#x[0-9A-Fa-f]+|[A-Za-z]+);")
_BLOCKS = ("p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "tr", "pre", "table", "ul", "ol")

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A URL with a scheme or www., or a bare domain with a common (lower-case) top-level domain.
_URL = re.compile(
    r"(?:https?://|www\.)[^\s<>\"]+"
    r"|\b(?:[A-Za-z0-9-]+\.)+(?:com|org|net|edu|gov|io|info|ca|us|uk)\b(?:/[^\s<>\"]*)?"
)
# A capitalised word glued to the end of a URL's path: ".../breathing/Your thoughts", "...clarificationIf this".
_URL_TAIL = re.compile(r"(?<=[a-z0-9/])[A-Z][a-z]+$")
# North American numbers (optionally +1 / 1-), or an international number written with a leading +.
PHONE = re.compile(
    r"(?<![\w+])(?:(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}|\+\d{1,3}(?:[\s.-]?\d{2,4}){2,4})(?![\w-])"
)
# Public crisis lines are advice, not personal data: masking them would teach the model to say "[phone]".
HELPLINES = frozenset({"8002738255"})  # US National Suicide Prevention Lifeline (now also 988)

_SEPARATOR = re.compile(r"(?:^|\s)[-_=*~]{4,}")
# ".Seriously," / "...Robin" / "?I'm": a sentence end glued to the next sentence's capital.
_JOINED = re.compile(r"(?P<word>[\w'’]+)(?P<stop>[.!?]+[\"”’)]*)(?=[A-Z](?:[a-z]|[\s'’]))")
# Abbreviations that end with a period but never end a sentence before a name.
_ABBREVIATIONS = frozenset({"dr", "mr", "mrs", "ms", "mx", "prof", "st", "sr", "jr", "vs", "mt", "cf", "fig", "approx"})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"”’)])\s+")

_PROMOTION = re.compile(
    r"\b(?:contact|reach|e-?mail|text|message|visit) me\b(?! again)|\bcall me (?:at|on|for|if|to|today)\b"
    r"|\bmy (?:new |latest )?(?:web ?site|blog|podcast|newsletter|youtube channel)\b"
    r"|(?<!in )\bmy (?:new |latest )?book\b|\bin my book,? (?-i:[A-Z])"  # not the idiom "in my book, ..."
    r"|\b(?:I am|I'm) (?:a )?licensed (?:\w+ ){0,3}in\b"
    r"|\bproviding services in\b"
    r"|\b(?:schedule|book) (?:an? )?(?:appointment|session|consultation) with me\b",
    re.IGNORECASE,
)
_CREDENTIAL = r"(?:[A-Z]{2,}[A-Za-z-]*|(?:[A-Z][a-z]?\.){2,}[A-Za-z.]*)"
# "... Be well. Robin Landwehr, DBH, LPCC" / "Katrina Whitehead MA LPCC": a name with credentials at the end.
_CREDENTIALED_NAME = re.compile(
    rf"(?<=[.!?,])\s*(?:Dr\.\s*)?[A-Z][a-z]+(?:\s+[A-Z]\.)?\s+[A-Z][A-Za-z'-]+(?:,?\s*{_CREDENTIAL})+\.?\s*$"
)
# "... soon. ~Mark (www.example.com)" or "... your way. -Sarah": a short signature at the end.
_SHORT_SIGNATURE = re.compile(
    r"(?:\s*~|(?<=[.!?])\s*[-–—])\s*[A-Z][\w.'-]*(?:\s+[A-Z][\w.'-]*){0,3}\s*(?:\([^()]{0,160}\))?\s*$"
)
_TITLE_BEFORE_NAME = re.compile(r"(?:\s*(?:\b(?:Dr|Prof)\.?|[~\-–—]))+\s*$")


@dataclass
class Cleaned:
    """Cleaned text and the names of the steps that changed it (with how often, for masks)."""

    text: str
    steps: Counter[str] = field(default_factory=Counter)


def html_to_text(text: str) -> str:
    """Markup to plain text: block elements and <br> become line breaks, entities are decoded."""
    if not _TAG.search(text):
        return html.unescape(text) if _ENTITY.search(text) else text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style"]):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for block in soup.find_all(_BLOCKS):
        block.append("\n\n")
    return soup.get_text()


def normalise_space(text: str) -> str:
    """Unicode NFKC (no-break spaces become spaces), one space between words, none before
    punctuation, paragraphs kept.

    A single line break before a lower-case letter is a wrapped line and is joined.
    """
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[\u200b-\u200d\u2060\ufeff]", "", text)
    text = re.sub(r"[^\S\n]+", " ", text)
    text = re.sub(r" ?\n ?", "\n", text)
    text = re.sub(r" ([,.;:!?])", r"\1", text)
    text = re.sub(r"(?<!\n)\n(?=[a-z])", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def url_spans(text: str) -> list[tuple[int, int]]:
    """Where the URLs are, without trailing punctuation or a capitalised word glued to the path."""
    spans = []
    for match in _URL.finditer(text):
        url = match.group().rstrip(".,;:!?'\"”’")
        if url.endswith(")") and url.count("(") < url.count(")"):
            url = url[:-1]
        if "/" in url.split("://")[-1]:
            tail = _URL_TAIL.search(url)
            if tail:
                url = url[: tail.start()]
        spans.append((match.start(), match.start() + len(url)))
    return spans


def _inside(position: int, spans: list[tuple[int, int]]) -> bool:
    return any(start <= position < end for start, end in spans)


def split_run_together(text: str) -> str:
    """`word.Next` -> `word. Next`, leaving abbreviations, initials, decimals, URLs and e-mails alone."""
    protected = url_spans(text) + [m.span() for m in EMAIL.finditer(text)]

    def fix(match: re.Match[str]) -> str:
        word, stop = match.group("word"), match.group("stop")
        if _inside(match.start("stop"), protected):
            return match.group()
        if stop.startswith(".") and (word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper())):
            return match.group()
        return f"{word}{stop} "

    return _JOINED.sub(fix, text)


def cut_at_separator(text: str) -> str:
    """Drop everything after a rule of dashes or underscores (signature blocks, translations)."""
    match = _SEPARATOR.search(text)
    return text[: match.start()].rstrip() if match and text[: match.start()].strip() else text


def sentences(paragraph: str) -> list[str]:
    return [part for part in _SENTENCE_END.split(paragraph) if part]


def drop_sentences(text: str, unwanted: re.Pattern[str] | None = None, author_tokens: tuple[str, ...] = ()) -> str:
    """Remove the sentences `unwanted` matches, and those linking to the author's own site."""
    paragraphs = []
    for paragraph in text.split("\n"):
        kept = []
        for sentence in sentences(paragraph):
            if unwanted is not None and unwanted.search(sentence):
                continue
            if author_tokens and _links_to_author(sentence, author_tokens):
                continue
            kept.append(sentence)
        paragraphs.append(" ".join(kept))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(paragraphs)).strip()


def _links_to_author(sentence: str, author_tokens: tuple[str, ...]) -> bool:
    links = [sentence[start:end].lower() for start, end in url_spans(sentence)]
    links += [match.group().lower() for match in EMAIL.finditer(sentence)]
    return any(token in link for link in links for token in author_tokens)


def author_name(info: str) -> str:
    """'Robin Landwehr, DBH, LPCC' or 'Katrina Whitehead MA LPCC' or 'Noorayne ChevalierMA, RP' -> first and last name."""
    words = re.sub(r"^(?:Dr|Prof)\.?\s+", "", info.strip()).split(",")[0].split()
    names = [re.split(r"(?<=[a-z])(?=[A-Z])", word)[0] for word in words[:2]]
    return " ".join(names) if len(names) == 2 and all(n[:1].isupper() for n in names) else ""


def strip_signature(text: str, author: str = "") -> str:
    """Remove a sign-off name at the end: the known author's name, a name with credentials, or `~Name`."""
    original = text
    if author and (at := text.lower().rfind(author.lower())) >= len(text) // 2 and len(text) - at - len(author) <= 150:
        text = _TITLE_BEFORE_NAME.sub("", text[:at])
    text = _CREDENTIALED_NAME.sub("", _SHORT_SIGNATURE.sub("", text)).rstrip(" ,")
    return text + "." if text != original and text[-1:].isalnum() else text


def mask(text: str) -> tuple[str, Counter[str]]:
    """E-mails -> [email], URLs -> [url], phone numbers -> [phone] (public helplines kept)."""
    counts: Counter[str] = Counter()

    def count(kind: str, replacement: str) -> str:
        counts[kind] += 1
        return replacement

    text = EMAIL.sub(lambda m: count("email", "[email]"), text)
    spans = url_spans(text)
    for start, end in reversed(spans):
        glued = text[end : end + 1].isalnum()
        text = text[:start] + count("url", "[url] " if glued else "[url]") + text[end:]

    def phone(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        return match.group() if digits[-10:] in HELPLINES else count("phone", "[phone]")

    return PHONE.sub(phone, text), counts


def _tidy(text: str) -> str:
    text = re.sub(r"[^\S\n]+", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _apply(result: Cleaned, step: str, function: Callable[..., str], *args: object) -> None:
    new = function(result.text, *args)
    if new != result.text:
        result.steps[step] += 1
        result.text = new


def clean_question(text: str) -> Cleaned:
    result = Cleaned(text)
    _apply(result, "html", html_to_text)
    result.text = normalise_space(result.text)
    _apply(result, "run_together", split_run_together)
    result.text, masked = mask(result.text)
    result.steps.update(masked)
    result.text = _tidy(result.text)
    return result


def clean_answer(text: str, author_info: str = "") -> Cleaned:
    """The full chain for an answer; `author_info` (e.g. 'Robin Landwehr, DBH, LPCC') finds its signature."""
    author = author_name(author_info) if author_info else ""
    tokens = tuple(part.lower() for part in author.split() if len(part) >= 4)
    result = Cleaned(text)
    _apply(result, "html", html_to_text)
    result.text = normalise_space(result.text)
    _apply(result, "separator", cut_at_separator)
    _apply(result, "run_together", split_run_together)
    _apply(result, "signature", strip_signature, author)
    _apply(result, "promotion", drop_sentences, _PROMOTION)
    _apply(result, "practice_link", drop_sentences, None, tokens)
    result.text, masked = mask(result.text)
    result.steps.update(masked)
    result.text = _tidy(result.text)
    return result
