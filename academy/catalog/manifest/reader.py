"""Reading ``courses/``: ``tracks.toml`` and each course's ``course.toml`` with its notebooks.

``courses/tracks.toml`` lists the tracks; each ``courses/<course-id>/`` holds a
``course.toml`` beside an unmodified nbgrader ``source/<assignment>/*.ipynb`` tree
(the format is described in ``docs/courses.md``).  Everything here is pure: it reads
files and returns frozen dataclasses, or raises :class:`ManifestError` naming the
file, the line and the field.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from academy.catalog.manifest.errors import ManifestError
from academy.catalog.manifest.grading_policy import read_grading_policy
from academy.catalog.manifest.model import (
    AssignmentManifest,
    Catalog,
    CourseManifest,
    RefusedCourse,
    TrackManifest,
)
from academy.catalog.manifest.notebooks import read_source_notebook
from academy.catalog.manifest.toml_source import TomlSource, TomlTable

TRACKS_FILE = "tracks.toml"
COURSE_FILE = "course.toml"
SOURCE_DIR = "source"

#: Lab profiles a course may ask for; ``academy.labs`` maps each to spawner settings.
LAB_PROFILES = ("cpu", "gpu", "gpu-shared")
#: Where a course's submissions are graded: on the CPU, or with a GPU seat (``academy.grading.gpu``).
GRADING_PROFILES = ("cpu", "gpu")

# Assignment ids are nbgrader assignment names (directories under source/).
ASSIGNMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
TITLE_MAX = 200  # the catalog models' String(200)
COMPETENCIES_MAX = 8  # what one certificate page prints
EMAIL_MAX = 254


def read_tracks(path: Path) -> list[TrackManifest]:
    """Read ``tracks.toml`` at ``path``.

    Raises :class:`ManifestError` when the file is missing or malformed, when a track
    id is repeated, or when no track is listed.
    """
    path = Path(path)
    source = TomlSource.load(path, f"{path.parent.name}/{path.name}")
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
    unknown keys, ``id`` other than the directory name, unknown track, lab or grading profile,
    negative numbers, malformed instructor emails, duplicate or missing assignments,
    unknown required assignments) and for a notebook that is not nbformat 4 JSON.
    Assignment directories under ``source/`` that the manifest does not list are not
    published and are not read.
    """
    course_dir = Path(course_dir).absolute()  # keep a symlinked course under its link name
    display_dir = f"{course_dir.parent.name}/{course_dir.name}"
    source = TomlSource.load(course_dir / COURSE_FILE, f"{display_dir}/{COURSE_FILE}")
    root = source.root(
        {
            "id",
            "track",
            "position",
            "hours",
            "lab_profile",
            "gpu_hour_quota",
            "grading_profile",
            "instructors",
            "title",
            "description",
            "passing",
            "competencies",
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
    grading_profile = root.string("grading_profile", default="cpu")
    if grading_profile not in GRADING_PROFILES:
        raise root.error("grading_profile", f"must be one of {', '.join(GRADING_PROFILES)} "
                                            f"(found '{grading_profile}'): 'gpu' grades with a GPU where one is free")

    instructors = _instructors(root)
    assignments = _assignments(root, course_dir)
    passing_rule = _passing_rule(root, {a.slug for a in assignments})
    competencies = _competencies(root)

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
        grading_profile=grading_profile,
        instructors=instructors,
        passing_rule=passing_rule,
        competencies=competencies,
        assignments=assignments,
        directory=course_dir,
        manifest_hash=_manifest_hash(source.raw, course_dir, assignments),
    )


def read_catalog(courses_dir: Path) -> Catalog:
    """Read ``courses_dir/tracks.toml`` and every course directory beside it.

    Every directory under ``courses_dir`` is a course, except those whose name starts
    with ``.`` or ``_`` (drafts, checkpoints).  A malformed ``tracks.toml`` raises
    :class:`ManifestError` (no course can be placed without it); a malformed course is
    set aside in ``Catalog.refused`` with the first problem found in it, and the other
    courses are read.
    """
    courses_dir = Path(courses_dir).resolve()
    if not courses_dir.is_dir():
        raise ManifestError(str(courses_dir), "the courses directory does not exist")
    tracks = read_tracks(courses_dir / TRACKS_FILE)
    known = {track.slug for track in tracks}
    courses, refused = [], []
    for child in sorted(courses_dir.iterdir()):
        if child.is_dir() and not child.name.startswith((".", "_")):
            try:
                courses.append(read_course(child, known))
            except ManifestError as exc:
                refused.append(RefusedCourse(child.name, (str(exc),)))
    return Catalog(courses_dir=courses_dir, tracks=tuple(tracks), courses=tuple(courses), refused=tuple(refused))


def _titles(table: TomlTable) -> tuple[str, str]:
    title = table.table("title", {"ko", "en"})
    return title.string("ko", max_length=TITLE_MAX), title.string("en", max_length=TITLE_MAX)


def _descriptions(table: TomlTable) -> tuple[str, str]:
    description = table.table("description", {"ko", "en"}, required=False)
    return description.string("ko", default=""), description.string("en", default="")


def _competencies(root: TomlTable) -> tuple[tuple[str, str], ...]:
    """The optional ``[[competencies]]`` tables, each with ``ko`` and ``en``."""
    if "competencies" not in root.data:
        return ()
    tables = root.tables("competencies", {"ko", "en"})
    if len(tables) > COMPETENCIES_MAX:
        raise root.error("competencies", f"may list at most {COMPETENCIES_MAX} entries (found {len(tables)})")
    return tuple((t.string("ko", max_length=TITLE_MAX), t.string("en", max_length=TITLE_MAX)) for t in tables)


def _instructors(root: TomlTable) -> tuple[str, ...]:
    emails: list[str] = []
    for index, email in enumerate(root.strings("instructors")):
        email = email.lower()
        if len(email) > EMAIL_MAX or not EMAIL_RE.match(email):
            raise root.error("instructors", f"'{email}' is not an email address", index=index)
        if email in emails:
            raise root.error("instructors", f"'{email}' is listed twice", index=index)
        emails.append(email)
    return tuple(emails)


def _passing_rule(root: TomlTable, assignment_ids: set[str]) -> dict[str, Any]:
    passing = root.table("passing", {"min_score_percent", "required_assignments", "min_total_percent",
                                     "min_lab_hours"})
    min_score = passing.number("min_score_percent", maximum=100)
    required = passing.strings("required_assignments")
    extra: dict[str, float] = {}
    if "min_total_percent" in passing.data:
        extra["min_total_percent"] = passing.number("min_total_percent", maximum=100)
    if "min_lab_hours" in passing.data:
        extra["min_lab_hours"] = passing.number("min_lab_hours", maximum=10_000)
    for index, name in enumerate(required):
        if name not in assignment_ids:
            raise passing.error(
                "required_assignments", f"'{name}' is not one of this course's assignments", index=index
            )
    return {"min_score_percent": min_score, "required_assignments": list(dict.fromkeys(required)), **extra}


def _assignments(root: TomlTable, course_dir: Path) -> tuple[AssignmentManifest, ...]:
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
        grading = read_grading_policy(entry)

        directory = course_dir / SOURCE_DIR / slug
        if not directory.is_dir():
            raise entry.error("id", f"no assignment directory {SOURCE_DIR}/{slug}/ in {display_dir}/")
        notebooks = sorted(p.name for p in directory.glob("*.ipynb") if p.is_file())
        if not notebooks:
            raise entry.error("id", f"{display_dir}/{SOURCE_DIR}/{slug}/ holds no .ipynb notebook")
        read = {name: read_source_notebook(directory / name, f"{display_dir}/{SOURCE_DIR}/{slug}/{name}")
                for name in notebooks}
        if not any(notebook.graded for notebook in read.values()):
            raise entry.error("id", f"{display_dir}/{SOURCE_DIR}/{slug}/ has no graded cell (nbgrader 'grade': true) "
                                    f"in {', '.join(notebooks)}: nothing to score")
        max_score = sum(notebook.points for notebook in read.values())
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
                imports=tuple((name, cell, module) for name, notebook in read.items()
                              for cell, module in notebook.imports),
            )
        )
    return tuple(result)


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
