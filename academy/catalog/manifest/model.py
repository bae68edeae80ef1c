"""What a catalog read from ``courses/`` is: frozen dataclasses, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    imports: tuple[tuple[str, str, str], ...] = ()  # (notebook, cell, top-level module) of every import


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
    grading_profile: str  # "cpu", or "gpu": submissions graded with a GPU seat where one is free
    instructors: tuple[str, ...]
    passing_rule: dict[str, Any]  # min_score_percent, required_assignments[, min_total_percent, min_lab_hours]
    competencies: tuple[tuple[str, str], ...]  # (ko, en) pairs, printed on the certificate
    assignments: tuple[AssignmentManifest, ...]
    directory: Path  # absolute path of the nbgrader course directory
    manifest_hash: str  # sha256 of course.toml and the assignments' notebooks


@dataclass(frozen=True)
class RefusedCourse:
    """A course directory that cannot be loaded as it is, and why (each problem names the file and the cell)."""

    slug: str  # the directory name
    problems: tuple[str, ...]


@dataclass(frozen=True)
class Catalog:
    """Everything under ``courses/``: the tracks, the courses that read cleanly, and those refused."""

    courses_dir: Path
    tracks: tuple[TrackManifest, ...]
    courses: tuple[CourseManifest, ...]
    refused: tuple[RefusedCourse, ...] = ()
