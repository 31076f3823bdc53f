"""Crisis resources by locale: a built-in list, optionally overridden by a JSON file.

The override file maps a locale to its resources and replaces that locale's whole list:
``{"en-GB": [{"name": "Samaritans", "contact": "call 116 123", "note": "free, 24/7"}]}``.
Numbers were checked against each service's own announcements (see docs/crisis-protocol.md);
an admin can correct or extend them without a release.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

DEFAULT_LOCALE = "default"
ALIASES = {"uk": "gb", "en": "default"}


@dataclass(frozen=True)
class Resource:
    name: str
    contact: str
    note: str = ""

    def line(self) -> str:
        return f"{self.name}: {self.contact}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Resources:
    """Resource lists keyed by normalised locale; `for_locale` always finds one."""

    by_locale: Mapping[str, tuple[Resource, ...]]

    def for_locale(self, locale: str) -> tuple[Resource, ...]:
        """Exact locale ("en-gb"), then its region ("gb"), then the default.

        Never the language alone: "de-AT" must not get Germany's numbers.
        """
        key = normalise_locale(locale)
        for candidate in (key, key.split("-")[-1]):
            candidate = ALIASES.get(candidate, candidate)
            if candidate in self.by_locale:
                return self.by_locale[candidate]
        return self.by_locale[DEFAULT_LOCALE]


def normalise_locale(locale: str) -> str:
    return locale.strip().lower().replace("_", "-") or DEFAULT_LOCALE


def _r(name: str, contact: str, note: str = "") -> Resource:
    return Resource(name, contact, note)


FIND_A_HELPLINE = _r("Find A Helpline", "findahelpline.com", "free support lines in other countries")

BUILTIN: dict[str, tuple[Resource, ...]] = {
    "default": (
        _r(
            "Emergency services",
            "911 in the US and Canada, 999 in the UK, 112 in the EU",
            "if you are in immediate danger",
        ),
        _r("988 Suicide & Crisis Lifeline", "call or text 988", "US, 24/7"),
        _r("Samaritans", "call 116 123", "UK & Ireland, free, 24/7"),
        FIND_A_HELPLINE,
    ),
    "us": (
        _r("Emergency services", "911", "if you are in immediate danger"),
        _r("988 Suicide & Crisis Lifeline", "call or text 988, or chat at 988lifeline.org", "24/7"),
        FIND_A_HELPLINE,
    ),
    "gb": (
        _r("Emergency services", "999", "if you are in immediate danger"),
        _r("Samaritans", "call 116 123", "free, 24/7"),
        _r("Shout", "text SHOUT to 85258", "free, 24/7"),
        FIND_A_HELPLINE,
    ),
    "ie": (
        _r("Emergency services", "112 or 999", "if you are in immediate danger"),
        _r("Samaritans", "call 116 123", "free, 24/7"),
        _r("Pieta", "call 1800 247 247 or text HELP to 51444", "free, 24/7"),
        _r("50808", "text HELLO to 50808", "free, 24/7"),
        FIND_A_HELPLINE,
    ),
    "ca": (
        _r("Emergency services", "911", "if you are in immediate danger"),
        _r("9-8-8 Suicide Crisis Helpline", "call or text 988", "24/7, English and French"),
        FIND_A_HELPLINE,
    ),
    "au": (
        _r("Emergency services", "000", "if you are in immediate danger"),
        _r("Lifeline", "call 13 11 14 or text 0477 13 11 14", "24/7"),
        FIND_A_HELPLINE,
    ),
    "nz": (
        _r("Emergency services", "111", "if you are in immediate danger"),
        _r("Need to talk?", "call or text 1737", "free, 24/7"),
        _r("Lifeline Aotearoa", "call 0800 543 354", "free, 24/7"),
        FIND_A_HELPLINE,
    ),
    "in": (
        _r("Emergency services", "112", "if you are in immediate danger"),
        _r("Tele-MANAS", "call 14416 or 1-800-891-4416", "free, 24/7"),
        FIND_A_HELPLINE,
    ),
    "de": (
        _r("Notruf", "112", "bei akuter Gefahr"),
        _r("TelefonSeelsorge", "0800 111 0 111 oder 0800 111 0 222", "kostenlos, rund um die Uhr"),
        FIND_A_HELPLINE,
    ),
    "fr": (
        _r("Urgences", "112 (ou 15)", "en cas de danger immédiat"),
        _r("3114", "numéro national de prévention du suicide", "gratuit, 24h/24"),
        FIND_A_HELPLINE,
    ),
    "es": (
        _r("Emergencias", "112", "si estás en peligro inmediato"),
        _r("024", "Línea de atención a la conducta suicida", "gratuita, 24 horas"),
        FIND_A_HELPLINE,
    ),
    "nl": (
        _r("Alarmnummer", "112", "bij direct gevaar"),
        _r("113 Zelfmoordpreventie", "bel 113 of 0800-0113, of chat op 113.nl", "gratis, 24/7"),
        FIND_A_HELPLINE,
    ),
}

_FIELDS = {"name", "contact", "note"}


def _invalid(where: str, problem: str) -> NoReturn:
    raise ValueError(f"{where}: {problem}")


def _parse(data: Any, path: Path) -> dict[str, tuple[Resource, ...]]:
    if not isinstance(data, dict):
        _invalid(str(path), "expected a JSON object mapping locales to lists of resources")
    parsed: dict[str, tuple[Resource, ...]] = {}
    for locale, entries in data.items():
        where = f"{path}: locale {locale!r}"
        if not isinstance(entries, list) or not entries:
            _invalid(where, "expected a non-empty list of resources")
        items = []
        for number, entry in enumerate(entries, start=1):
            at = f"{where}, entry {number}"
            if not isinstance(entry, dict):
                _invalid(at, "expected an object with name, contact and note")
            unknown = set(entry) - _FIELDS
            if unknown:
                _invalid(at, f"unknown field(s) {', '.join(sorted(unknown))}")
            for field in ("name", "contact"):
                if not isinstance(entry.get(field), str) or not entry[field].strip():
                    _invalid(at, f"{field!r} must be a non-empty string")
            if not isinstance(entry.get("note", ""), str):
                _invalid(at, "'note' must be a string")
            items.append(Resource(entry["name"].strip(), entry["contact"].strip(), entry.get("note", "").strip()))
        parsed[ALIASES.get(normalise_locale(locale), normalise_locale(locale))] = tuple(items)
    return parsed


def load_resources(path: Path | None) -> Resources:
    """The built-in lists, with each locale in the JSON file at `path` replacing the built-in one."""
    merged = dict(BUILTIN)
    if path is not None:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the crisis resources file ({exc.strerror or exc})") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: the crisis resources file is not valid JSON ({exc})") from exc
        merged.update(_parse(data, Path(path)))
    return Resources(merged)
