"""Reading and checking the course manifests under ``courses/`` (no database).

``courses/tracks.toml`` lists the tracks; each ``courses/<course-id>/`` holds a
``course.toml`` beside an unmodified nbgrader ``source/<assignment>/*.ipynb`` tree
(the format is described in ``docs/courses.md``).  Everything here is pure: it reads
files and returns frozen dataclasses, or raises :class:`ManifestError` with a message
that names the file, the line and the field, for example::

    courses/python-data/course.toml, line 7: field 'hours': must be a non-negative number

``tomllib`` reports no line numbers for values, so :func:`locate_line` finds the line
of a key inside its table by scanning the TOML text.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from academy.errors import ValidationFailed

__all__ = [
    "LAB_PROFILES",
    "AssignmentManifest",
    "Catalog",
    "CourseManifest",
    "ManifestError",
    "TrackManifest",
    "locate_line",
    "read_catalog",
    "read_course",
    "read_tracks",
]

TRACKS_FILE = "tracks.toml"
COURSE_FILE = "course.toml"
SOURCE_DIR = "source"

#: Lab profiles a course may ask for; ``academy.labs`` maps each to spawner settings.
LAB_PROFILES = ("cpu", "gpu", "gpu-shared")

# Course and track ids appear in URLs and JupyterHub paths: lower case, digits, '-', '_'.
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Assignment ids are nbgrader assignment names (directories under source/).
ASSIGNMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
TITLE_MAX = 200  # the catalog models' String(200)
EMAIL_MAX = 254

FieldPath = tuple[str | int, ...]
_REQUIRED: Any = object()  # default of a getter whose key must be present


class ManifestError(ValidationFailed):
    """A manifest or notebook under ``courses/`` is malformed.

    ``path`` is the file as shown to people (``courses/<id>/course.toml``), ``line`` the
    1-based line (``None`` when the file itself is missing) and ``field`` the dotted
    field name (``assignments[1].title.ko``) when one is to blame.
    """

    def __init__(self, path: str, problem: str, *, line: int | None = None, field: str | None = None):
        where = path if line is None else f"{path}, line {line}"
        what = problem if field is None else f"field '{field}': {problem}"
        super().__init__(f"{where}: {what}", field=field)
        self.path = path
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class TrackManifest:
    """One ``[[tracks]]`` entry of ``tracks.toml``."""

    slug: str
    title_ko: str
    title_en: str
    description_ko: str
    description_en: str
    position: int


@dataclass(frozen=True)
class AssignmentManifest:
    """One ``[[assignments]]`` entry, with what its notebooks say about grading."""

    slug: str
    title_ko: str
    title_en: str
    position: int
    due_days: int | None
    max_score: float  # sum of nbgrader points over graded and task cells
    notebooks: tuple[str, ...]  # file names in source/<slug>/, sorted
    grading: dict[str, Any] = field(default_factory=dict)  # the [assignments.grading] policy, defaults filled


@dataclass(frozen=True)
class CourseManifest:
    """A course directory: its ``course.toml`` and the assignments found under ``source/``."""

    slug: str
    track: str
    title_ko: str
    title_en: str
    description_ko: str
    description_en: str
    position: int
    hours: float
    lab_profile: str
    gpu_hour_quota: float
    instructors: tuple[str, ...]
    passing_rule: dict[str, Any]  # {"min_score_percent": float, "required_assignments": [ids]}
    assignments: tuple[AssignmentManifest, ...]
    directory: Path  # absolute path of the nbgrader course directory
    manifest_hash: str  # sha256 of course.toml and the assignments' notebooks


@dataclass(frozen=True)
class Catalog:
    """Everything under ``courses/``: the tracks and the courses."""

    courses_dir: Path
    tracks: tuple[TrackManifest, ...]
    courses: tuple[CourseManifest, ...]


# --------------------------------------------------------------------------- public


def read_tracks(path: Path) -> list[TrackManifest]:
    """Read ``tracks.toml`` at ``path``.

    Raises :class:`ManifestError` when the file is missing or malformed, when a track
    id is repeated, or when no track is listed.
    """
    path = Path(path)
    source = _Source.load(path, f"{path.parent.name}/{path.name}")
    root = source.root({"tracks"})
    tracks: list[TrackManifest] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(root.tables("tracks", {"id", "position", "title", "description"})):
        slug = entry.slug("id")
        if slug in seen:
            raise entry.error("id", f"duplicate track id '{slug}' (also tracks[{seen[slug]}])")
        seen[slug] = index
        title_ko, title_en = _titles(entry)
        description_ko, description_en = _descriptions(entry)
        tracks.append(
            TrackManifest(
                slug=slug,
                title_ko=title_ko,
                title_en=title_en,
                description_ko=description_ko,
                description_en=description_en,
                position=entry.integer("position", default=0),
            )
        )
    return tracks


def read_course(course_dir: Path, known_tracks: set[str]) -> CourseManifest:
    """Read ``course_dir/course.toml`` and the notebooks of the assignments it lists.

    ``known_tracks`` holds the track ids from ``tracks.toml``.  Raises
    :class:`ManifestError` for a missing or malformed manifest (required fields, types,
    unknown keys, ``id`` other than the directory name, unknown track or lab profile,
    negative numbers, malformed instructor emails, duplicate or missing assignments,
    unknown required assignments) and for a notebook that is not nbformat 4 JSON.
    Assignment directories under ``source/`` that the manifest does not list are not
    published and are not read.
    """
    course_dir = Path(course_dir).absolute()  # keep a symlinked course under its link name
    display_dir = f"{course_dir.parent.name}/{course_dir.name}"
    source = _Source.load(course_dir / COURSE_FILE, f"{display_dir}/{COURSE_FILE}")
    root = source.root(
        {
            "id",
            "track",
            "position",
            "hours",
            "lab_profile",
            "gpu_hour_quota",
            "instructors",
            "title",
            "description",
            "passing",
            "assignments",
        }
    )

    slug = root.slug("id")
    if slug != course_dir.name:
        raise root.error("id", f"must equal the directory name '{course_dir.name}' (found '{slug}')")
    track = root.string("track")
    if track not in known_tracks:
        listed = ", ".join(sorted(known_tracks)) or "none"
        raise root.error("track", f"unknown track '{track}' (tracks.toml lists: {listed})")
    title_ko, title_en = _titles(root)
    description_ko, description_en = _descriptions(root)
    position = root.integer("position", default=0)
    hours = root.number("hours")

    lab_profile = root.string("lab_profile", default="cpu")
    if lab_profile not in LAB_PROFILES:
        raise root.error("lab_profile", f"must be one of {', '.join(LAB_PROFILES)} (found '{lab_profile}')")
    gpu_hour_quota = root.number("gpu_hour_quota", default=0.0)
    if lab_profile == "cpu" and gpu_hour_quota > 0:
        raise root.error("gpu_hour_quota", "must be 0 for the 'cpu' lab profile")
    if lab_profile != "cpu" and gpu_hour_quota <= 0:
        raise root.error("gpu_hour_quota", f"must be greater than 0 for the '{lab_profile}' lab profile")

    instructors = _instructors(root)
    assignments = _assignments(root, course_dir)
    passing_rule = _passing_rule(root, {a.slug for a in assignments})

    return CourseManifest(
        slug=slug,
        track=track,
        title_ko=title_ko,
        title_en=title_en,
        description_ko=description_ko,
        description_en=description_en,
        position=position,
        hours=hours,
        lab_profile=lab_profile,
        gpu_hour_quota=gpu_hour_quota,
        instructors=instructors,
        passing_rule=passing_rule,
        assignments=assignments,
        directory=course_dir,
        manifest_hash=_manifest_hash(source.raw, course_dir, assignments),
    )


def read_catalog(courses_dir: Path) -> Catalog:
    """Read ``courses_dir/tracks.toml`` and every course directory beside it.

    Every directory under ``courses_dir`` is a course, except those whose name starts
    with ``.`` or ``_`` (drafts, checkpoints).  Raises :class:`ManifestError` at the
    first problem found, so a catalog is either wholly valid or not read at all.
    """
    courses_dir = Path(courses_dir).resolve()
    if not courses_dir.is_dir():
        raise ManifestError(str(courses_dir), "the courses directory does not exist")
    tracks = read_tracks(courses_dir / TRACKS_FILE)
    known = {track.slug for track in tracks}
    courses = [
        read_course(child, known)
        for child in sorted(courses_dir.iterdir())
        if child.is_dir() and not child.name.startswith((".", "_"))
    ]
    return Catalog(courses_dir=courses_dir, tracks=tuple(tracks), courses=tuple(courses))


# --------------------------------------------------------------------------- locating lines

_KEY_TOKEN = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED_KEY = rf"{_KEY_TOKEN}(?:\s*\.\s*{_KEY_TOKEN})*"
_ARRAY_HEADER = re.compile(rf"^\s*\[\[\s*({_DOTTED_KEY})\s*\]\]")
_TABLE_HEADER = re.compile(rf"^\s*\[\s*({_DOTTED_KEY})\s*\]")
_KEY_VALUE = re.compile(rf"^\s*({_DOTTED_KEY})\s*=")
_SYNTAX_POSITION = re.compile(r"\(at line (\d+), column \d+\)")


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(_KEY_TOKEN, dotted)
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
            return _dotted(path)
    return None


def _dotted(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# --------------------------------------------------------------------------- TOML tables


class _Source:
    """One TOML file: its name as shown to people, its bytes and its text."""

    def __init__(self, display: str, raw: bytes, text: str, data: dict[str, Any]):
        self.display = display
        self.raw = raw
        self.text = text
        self.data = data

    @classmethod
    def load(cls, path: Path, display: str) -> _Source:
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

    def root(self, allowed: set[str]) -> _Table:
        return _Table(self, (), self.data, allowed)


class _Table:
    """A TOML table being read: typed getters that raise ManifestError naming the line."""

    def __init__(self, source: _Source, path: FieldPath, data: dict[str, Any], allowed: set[str]):
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
        return ManifestError(self.source.display, problem, line=line or 1, field=_dotted(field_path))

    def _get(self, key: str, default: Any) -> Any:
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            raise self.error(key, "required field is missing")
        return default

    def string(self, key: str, *, default: Any = _REQUIRED, max_length: int | None = None) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string (found {_toml_type(value)})")
        value = value.strip()
        if default is _REQUIRED and not value:
            raise self.error(key, "must not be empty")
        if max_length is not None and len(value) > max_length:
            raise self.error(key, f"must be at most {max_length} characters (found {len(value)})")
        return value

    def slug(self, key: str) -> str:
        value = self.string(key)
        if not SLUG_RE.match(value):
            raise self.error(
                key,
                f"'{value}' must be 1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit",
            )
        return value

    def optional_integer(self, key: str) -> int | None:
        if key not in self.data:
            return None
        return self.integer(key)

    def integer(self, key: str, *, default: Any = _REQUIRED) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(key, f"must be a non-negative whole number (found {_show(value)})")
        return value

    def number(self, key: str, *, default: Any = _REQUIRED, maximum: float | None = None) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise self.error(key, f"must be a non-negative number (found {_show(value)})")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum:g} (found {_show(value)})")
        return float(value)

    def strings(self, key: str) -> list[str]:
        value = self._get(key, [])
        if not isinstance(value, list):
            raise self.error(key, f"must be a list of strings (found {_toml_type(value)})")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.error(key, f"must hold non-empty strings (found {_show(item)})", index=index)
        return [item.strip() for item in value]

    def table(self, key: str, allowed: set[str], *, required: bool = True) -> _Table:
        value = self._get(key, _REQUIRED if required else {})
        if not isinstance(value, dict):
            header = _dotted((*self.path, key))
            raise self.error(key, f"must be a table, [{header}] (found {_toml_type(value)})")
        return _Table(self.source, (*self.path, key), value, allowed)

    def tables(self, key: str, allowed: set[str]) -> list[_Table]:
        value = self._get(key, _REQUIRED)
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self.error(key, f"must be an array of tables, [[{_dotted((*self.path, key))}]]")
        if not value:
            raise self.error(key, "must list at least one entry")
        return [_Table(self.source, (*self.path, key, i), item, allowed) for i, item in enumerate(value)]


def _toml_type(value: Any) -> str:
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


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return _toml_type(value)


# --------------------------------------------------------------------------- parts


def _titles(table: _Table) -> tuple[str, str]:
    title = table.table("title", {"ko", "en"})
    return title.string("ko", max_length=TITLE_MAX), title.string("en", max_length=TITLE_MAX)


def _descriptions(table: _Table) -> tuple[str, str]:
    description = table.table("description", {"ko", "en"}, required=False)
    return description.string("ko", default=""), description.string("en", default="")


def _instructors(root: _Table) -> tuple[str, ...]:
    emails: list[str] = []
    for index, email in enumerate(root.strings("instructors")):
        email = email.lower()
        if len(email) > EMAIL_MAX or not EMAIL_RE.match(email):
            raise root.error("instructors", f"'{email}' is not an email address", index=index)
        if email in emails:
            raise root.error("instructors", f"'{email}' is listed twice", index=index)
        emails.append(email)
    return tuple(emails)


def _passing_rule(root: _Table, assignment_ids: set[str]) -> dict[str, Any]:
    passing = root.table("passing", {"min_score_percent", "required_assignments"})
    min_score = passing.number("min_score_percent", maximum=100)
    required = passing.strings("required_assignments")
    for index, name in enumerate(required):
        if name not in assignment_ids:
            raise passing.error(
                "required_assignments", f"'{name}' is not one of this course's assignments", index=index
            )
    return {"min_score_percent": min_score, "required_assignments": list(dict.fromkeys(required))}


def _assignments(root: _Table, course_dir: Path) -> tuple[AssignmentManifest, ...]:
    display_dir = root.source.display.rsplit("/", 1)[0]
    result: list[AssignmentManifest] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(root.tables("assignments", {"id", "position", "due_days", "title", "grading"})):
        slug = entry.string("id")
        if not ASSIGNMENT_RE.match(slug):
            raise entry.error(
                "id", f"'{slug}' must be 1-64 letters, digits, '.', '-' or '_', starting with a letter or digit"
            )
        if slug in seen:
            raise entry.error("id", f"duplicate assignment id '{slug}' (also assignments[{seen[slug]}])")
        seen[slug] = index
        title_ko, title_en = _titles(entry)
        position = entry.integer("position", default=0)
        due_days = entry.optional_integer("due_days")
        grading = _grading_policy(entry)

        directory = course_dir / SOURCE_DIR / slug
        if not directory.is_dir():
            raise entry.error("id", f"no assignment directory {SOURCE_DIR}/{slug}/ in {display_dir}/")
        notebooks = sorted(p.name for p in directory.glob("*.ipynb") if p.is_file())
        if not notebooks:
            raise entry.error("id", f"{display_dir}/{SOURCE_DIR}/{slug}/ holds no .ipynb notebook")
        max_score = sum(
            source_notebook_points(directory / name, f"{display_dir}/{SOURCE_DIR}/{slug}/{name}") for name in notebooks
        )
        result.append(
            AssignmentManifest(
                slug=slug,
                title_ko=title_ko,
                title_en=title_en,
                position=position,
                due_days=due_days,
                max_score=max_score,
                notebooks=tuple(notebooks),
                grading=grading,
            )
        )
    return tuple(result)


GRADING_DEFAULTS: dict[str, Any] = {
    "max_attempts": None,  # no limit
    "score_policy": "best",  # best | last attempt counts
    "late_policy": "penalty",  # penalty | refuse
    "late_penalty_per_day": 10.0,  # percent of the score per started day late
    "late_penalty_cap": 50.0,  # percent, at most
    "hidden_tests": "after_deadline",  # after_deadline | immediately: when learners see hidden-test results
}
GRADING_CHOICES = {
    "score_policy": ("best", "last"),
    "late_policy": ("penalty", "refuse"),
    "hidden_tests": ("after_deadline", "immediately"),
}


def _grading_policy(entry: _Table) -> dict[str, Any]:
    """The optional ``[assignments.grading]`` table with defaults filled in."""
    policy = dict(GRADING_DEFAULTS)
    if "grading" not in entry.data:
        return policy
    table = entry.table("grading", set(GRADING_DEFAULTS), required=False)
    if "max_attempts" in table.data:
        attempts = table.integer("max_attempts")
        if attempts < 1:
            raise table.error("max_attempts", "must be at least 1 (leave it out for no limit)")
        policy["max_attempts"] = attempts
    for key in ("late_penalty_per_day", "late_penalty_cap"):
        if key in table.data:
            policy[key] = table.number(key, maximum=100)
    for key, choices in GRADING_CHOICES.items():
        if key in table.data:
            value = table.string(key)
            if value not in choices:
                raise table.error(key, f"must be one of {', '.join(choices)} (found '{value}')")
            policy[key] = value
    return policy


# --------------------------------------------------------------------------- notebooks


def source_notebook_points(path: Path, display: str) -> float:
    """Total nbgrader points of a source notebook (graded cells and task cells).

    Checks what the loader relies on and what nbgrader would otherwise reject only at
    release time: JSON, nbformat 4, a ``points`` value on every graded cell, and unique
    ``grade_id`` values.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
        notebook = json.loads(text)
    except UnicodeDecodeError as exc:
        raise ManifestError(display, "not valid UTF-8 text", line=raw[: exc.start].count(b"\n") + 1) from None
    except json.JSONDecodeError as exc:
        raise ManifestError(display, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    if not isinstance(notebook, dict):
        raise ManifestError(display, "not a Jupyter notebook (the JSON is not an object)", line=1)
    if notebook.get("nbformat") != 4:
        raise ManifestError(
            display,
            f"must be 4 (found {_show(notebook.get('nbformat'))}); "
            "upgrade it with 'jupyter nbconvert --to notebook --inplace'",
            line=_json_line(text, '"nbformat"'),
            field="nbformat",
        )
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        raise ManifestError(display, "must be a list of cells", line=_json_line(text, '"cells"'), field="cells")

    total = 0.0
    grade_ids: set[str] = set()
    for index, cell in enumerate(cells):
        metadata = cell.get("metadata") if isinstance(cell, dict) else None
        nbgrader = metadata.get("nbgrader") if isinstance(metadata, dict) else None
        if not isinstance(nbgrader, dict):
            continue
        grade_id = nbgrader.get("grade_id")
        field = f"cells[{index}].metadata.nbgrader"
        if nbgrader.get("grade") or nbgrader.get("solution") or nbgrader.get("locked"):
            if not isinstance(grade_id, str) or not grade_id:
                raise ManifestError(display, "grade_id is missing", line=_cell_line(text, index), field=field)
            if grade_id in grade_ids:
                raise ManifestError(
                    display,
                    f"grade_id '{grade_id}' is used by two cells",
                    line=_json_line(text, f'"grade_id": "{grade_id}"', last=True),
                    field=f"{field}.grade_id",
                )
            grade_ids.add(grade_id)
        if nbgrader.get("grade") or nbgrader.get("task"):
            points = nbgrader.get("points", None if nbgrader.get("grade") else 0)
            try:
                value = float(points)  # nbgrader itself accepts numeric strings
            except (TypeError, ValueError):
                value = -1.0
            if isinstance(points, bool) or not value >= 0:
                raise ManifestError(
                    display,
                    f"graded cell '{grade_id}' needs non-negative points (found {_show(points)})",
                    line=_json_line(text, f'"grade_id": "{grade_id}"'),
                    field=f"{field}.points",
                )
            total += value
    return total


def _json_line(text: str, needle: str, *, last: bool = False) -> int:
    """The line of the first (or last) occurrence of ``needle``, else 1."""
    position = text.rfind(needle) if last else text.find(needle)
    return 1 if position < 0 else text.count("\n", 0, position) + 1


def _cell_line(text: str, index: int) -> int:
    """Roughly the line where cell ``index`` starts (its ``cell_type`` key)."""
    position = -1
    for _ in range(index + 1):
        position = text.find('"cell_type"', position + 1)
        if position < 0:
            return 1
    return text.count("\n", 0, position) + 1


def _manifest_hash(manifest: bytes, course_dir: Path, assignments: Iterable[AssignmentManifest]) -> str:
    """sha256 over course.toml and each listed notebook (name and bytes, length-prefixed)."""
    digest = hashlib.sha256()

    def add(name: str, data: bytes) -> None:
        encoded = name.encode("utf-8")
        digest.update(len(encoded).to_bytes(4, "big") + encoded)
        digest.update(len(data).to_bytes(8, "big") + data)

    add(COURSE_FILE, manifest)
    for assignment in assignments:
        for name in assignment.notebooks:
            relative = f"{SOURCE_DIR}/{assignment.slug}/{name}"
            add(relative, (course_dir / relative).read_bytes())
    return digest.hexdigest()
