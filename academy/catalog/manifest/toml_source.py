"""TOML read with line numbers: typed getters whose errors name the file, the line and the field.

``tomllib`` reports no line numbers for values, so :func:`locate_line` finds the line
of a key inside its table by scanning the TOML text; :class:`TomlTable` uses it so that
every :class:`ManifestError` reads like::

    courses/python-data/course.toml, line 7: field 'hours': must be a non-negative number
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from academy.catalog.manifest.errors import ManifestError

# Course and track ids appear in URLs and JupyterHub paths: lower case, digits, '-', '_'.
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

FieldPath = tuple[str | int, ...]
_REQUIRED: Any = object()  # default of a getter whose key must be present

# --------------------------------------------------------------------------- locating lines

_KEY_TOKEN = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED_KEY = rf"{_KEY_TOKEN}(?:\s*\.\s*{_KEY_TOKEN})*"
_ARRAY_HEADER = re.compile(rf"^\s*\[\[\s*({_DOTTED_KEY})\s*\]\]")
_TABLE_HEADER = re.compile(rf"^\s*\[\s*({_DOTTED_KEY})\s*\]")
_KEY_VALUE = re.compile(rf"^\s*({_DOTTED_KEY})\s*=")
_SYNTAX_POSITION = re.compile(r"\(at line (\d+), column \d+\)")


def _split_key(key: str) -> tuple[str, ...]:
    parts = re.findall(_KEY_TOKEN, key)
    return tuple(part[1:-1] if part[:1] in "\"'" else part for part in parts)


def _toml_lines(text: str) -> Iterator[tuple[int, str, FieldPath]]:
    """Yield ``(line, kind, path)`` for each table header (kind "table") and key (kind "key").

    Paths carry the index of each array-of-tables entry, so the ``ko`` key under the
    second ``[[assignments]]`` entry's ``[assignments.title]`` is
    ``("assignments", 1, "title", "ko")``.  Lines inside multi-line strings are skipped.
    """
    array_counts: dict[FieldPath, int] = {}

    def resolve(parts: tuple[str, ...]) -> FieldPath:
        path: FieldPath = ()
        for name in parts:
            path = (*path, name)
            if path in array_counts:
                path = (*path, array_counts[path] - 1)
        return path

    current: FieldPath = ()
    open_string: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if open_string is not None:
            if line.count(open_string) % 2 == 1:
                open_string = None
            continue
        if match := _ARRAY_HEADER.match(line):
            parts = _split_key(match.group(1))
            base = (*resolve(parts[:-1]), parts[-1])
            index = array_counts.get(base, 0)
            array_counts[base] = index + 1
            current = (*base, index)
            yield number, "table", current
        elif match := _TABLE_HEADER.match(line):
            current = resolve(_split_key(match.group(1)))
            yield number, "table", current
        elif match := _KEY_VALUE.match(line):
            yield number, "key", (*current, *_split_key(match.group(1)))
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    open_string = quote
                    break


def locate_line(text: str, table: FieldPath, key: str | None = None) -> int | None:
    """The 1-based line of ``key`` inside ``table`` in the TOML ``text``.

    When the key is not written there (a missing field), the line of the table's header
    (or of the key that holds it as an inline table) is returned instead, walking up to
    the enclosing tables; ``None`` only for a key missing from the top-level table.
    """
    lines = list(_toml_lines(text))
    wanted: FieldPath = table if key is None else (*table, key)
    while wanted:
        for number, _kind, path in lines:
            if path == wanted:
                return number
        wanted = wanted[:-1]
    return None


def _field_at_line(text: str, line: int) -> str | None:
    """The dotted name of the key or table defined on ``line``, if any."""
    for number, _kind, path in _toml_lines(text):
        if number == line:
            return dotted(path)
    return None


def dotted(path: FieldPath) -> str:
    """A field path as people write it: ``("assignments", 1, "title")`` -> ``assignments[1].title``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# --------------------------------------------------------------------------- tables


class TomlSource:
    """One TOML file: its name as shown to people, its bytes and its text."""

    def __init__(self, display: str, raw: bytes, text: str, data: dict[str, Any]):
        self.display = display
        self.raw = raw
        self.text = text
        self.data = data

    @classmethod
    def load(cls, path: Path, display: str) -> TomlSource:
        """Read and parse ``path``; raises ManifestError when it is missing, not UTF-8 or not TOML."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ManifestError(display, "file is missing") from None
        except OSError as exc:
            raise ManifestError(display, f"cannot be read: {exc.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ManifestError(display, "not valid UTF-8 text", line=line) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            match = _SYNTAX_POSITION.search(message)
            line = int(match.group(1)) if match else max(len(text.splitlines()), 1)
            raise ManifestError(
                display, f"TOML syntax error: {message}", line=line, field=_field_at_line(text, line)
            ) from None
        return cls(display, raw, text, data)

    def root(self, allowed: set[str]) -> TomlTable:
        """The top-level table, which may hold only the keys in ``allowed``."""
        return TomlTable(self, (), self.data, allowed)


class TomlTable:
    """A TOML table being read: typed getters that raise ManifestError naming the line."""

    def __init__(self, source: TomlSource, path: FieldPath, data: dict[str, Any], allowed: set[str]):
        self.source = source
        self.path = path
        self.data = data
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(sorted(allowed))}"
                raise self.error(key, f"unknown key ({hint})")

    def error(self, key: str, problem: str, *, index: int | None = None) -> ManifestError:
        """A ManifestError for ``key`` (element ``index`` of it, for arrays) in this table."""
        line = locate_line(self.source.text, self.path, key)
        field_path: FieldPath = (*self.path, key) if index is None else (*self.path, key, index)
        return ManifestError(self.source.display, problem, line=line or 1, field=dotted(field_path))

    def _get(self, key: str, default: Any) -> Any:
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            raise self.error(key, "required field is missing")
        return default

    def string(self, key: str, *, default: Any = _REQUIRED, max_length: int | None = None) -> str:
        """A stripped string; non-empty unless a default is given."""
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string (found {toml_type(value)})")
        value = value.strip()
        if default is _REQUIRED and not value:
            raise self.error(key, "must not be empty")
        if max_length is not None and len(value) > max_length:
            raise self.error(key, f"must be at most {max_length} characters (found {len(value)})")
        return value

    def slug(self, key: str) -> str:
        """A course or track id (see SLUG_RE)."""
        value = self.string(key)
        if not SLUG_RE.match(value):
            raise self.error(
                key,
                f"'{value}' must be 1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit",
            )
        return value

    def optional_integer(self, key: str) -> int | None:
        """A non-negative whole number, or None when the key is absent."""
        if key not in self.data:
            return None
        return self.integer(key)

    def integer(self, key: str, *, default: Any = _REQUIRED) -> int:
        """A non-negative whole number."""
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(key, f"must be a non-negative whole number (found {show_value(value)})")
        return value

    def number(self, key: str, *, default: Any = _REQUIRED, maximum: float | None = None) -> float:
        """A finite non-negative number, at most ``maximum`` when given."""
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise self.error(key, f"must be a non-negative number (found {show_value(value)})")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum:g} (found {show_value(value)})")
        return float(value)

    def strings(self, key: str) -> list[str]:
        """A list of non-empty stripped strings; empty when the key is absent."""
        value = self._get(key, [])
        if not isinstance(value, list):
            raise self.error(key, f"must be a list of strings (found {toml_type(value)})")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.error(key, f"must hold non-empty strings (found {show_value(item)})", index=index)
        return [item.strip() for item in value]

    def table(self, key: str, allowed: set[str], *, required: bool = True) -> TomlTable:
        """A sub-table that may hold only the keys in ``allowed``."""
        value = self._get(key, _REQUIRED if required else {})
        if not isinstance(value, dict):
            header = dotted((*self.path, key))
            raise self.error(key, f"must be a table, [{header}] (found {toml_type(value)})")
        return TomlTable(self.source, (*self.path, key), value, allowed)

    def tables(self, key: str, allowed: set[str]) -> list[TomlTable]:
        """A non-empty array of tables, each holding only the keys in ``allowed``."""
        value = self._get(key, _REQUIRED)
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self.error(key, f"must be an array of tables, [[{dotted((*self.path, key))}]]")
        if not value:
            raise self.error(key, "must list at least one entry")
        return [TomlTable(self.source, (*self.path, key, i), item, allowed) for i, item in enumerate(value)]


def toml_type(value: Any) -> str:
    """What kind of TOML value ``value`` is, for an error message ("a string", "an array" ...)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def show_value(value: Any) -> str:
    """``value`` as written in TOML, for an error message; its kind when it is not a scalar."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return toml_type(value)
