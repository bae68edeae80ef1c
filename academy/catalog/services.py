"""Catalog operations: loading ``courses/`` into the database, and the queries views use.

``load_catalog`` is what ``academy init`` runs.  It reads and checks every manifest
first (:mod:`academy.catalog.manifest`, and the caller's further checks such as
:mod:`academy.catalog.checks`); a course that fails is refused by name and left in the
database as it was, and the others are loaded: tracks, courses, instructors and
assignments upserted by slug.  Rows whose manifest disappeared are marked inactive,
never deleted: enrollments and submissions refer to them.  Like every service it only
flushes; the caller commits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from academy.audit.services import record
from academy.catalog.manifest import (
    AssignmentManifest,
    Catalog,
    CourseManifest,
    RefusedCourse,
    TrackManifest,
    read_catalog,
)
from academy.catalog.models import Assignment, Course, CourseInstructor, Track
from academy.errors import NotFound
from academy.users.models import User

__all__ = ["LoadReport", "get_course_by_slug", "list_tracks", "load_catalog"]


@dataclass
class LoadReport:
    """What :func:`load_catalog` did, counted over tracks, courses and assignments.

    ``changes`` names each created, updated or deactivated row, for example
    ``"course python-data updated"``.
    """

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    changes: list[str] = field(default_factory=list)
    refused: list[RefusedCourse] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether the load changed anything in the database."""
        return bool(self.created or self.updated or self.deactivated)

    def summary(self) -> str:
        """One line for the command line and the audit log."""
        line = (
            f"catalog: {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.deactivated} deactivated"
        )
        if self.refused:
            line += f"; {len(self.refused)} course(s) refused: {', '.join(r.slug for r in self.refused)}"
        return line

    def note(self, outcome: str, kind: str, slug: str) -> None:
        """Count one row as "created", "updated", "unchanged" or "deactivated"."""
        setattr(self, outcome, getattr(self, outcome) + 1)
        if outcome != "unchanged":
            self.changes.append(f"{kind} {slug} {outcome}")


def load_catalog(session: Session, courses_dir: Path, *, actor: User | None = None,
                 checks: Callable[[Catalog], Sequence[RefusedCourse]] | None = None) -> LoadReport:
    """Bring the catalog rows in step with ``courses_dir``; idempotent.

    Reads the whole catalog, and runs ``checks`` on it, before touching the database.
    A malformed ``tracks.toml`` raises :class:`~academy.catalog.manifest.ManifestError`
    and leaves every row as it was; a course that cannot be read or that ``checks``
    refuses is listed in ``LoadReport.refused`` and its rows stay as they were (not
    created, updated nor deactivated).  Of the rest: creates missing rows, updates
    changed ones, reactivates rows that came back, and deactivates tracks, courses and
    assignments no longer on disk.  A course whose ``manifest_hash``, directory and
    track are unchanged is skipped.  Writes a ``catalog.load`` audit entry by ``actor``
    (``None`` for the command line) when something changed, in ``session``; it is
    flushed, not committed.
    """
    catalog = read_catalog(courses_dir)
    report = LoadReport(refused=list(catalog.refused))
    if checks is not None:
        report.refused += checks(catalog)
    refused = {course.slug for course in report.refused}
    tracks = _sync_tracks(session, catalog.tracks, report)
    _sync_courses(session, tuple(c for c in catalog.courses if c.slug not in refused), tracks, report,
                  keep=refused)
    if report.changed:
        record(
            session,
            "catalog.load",
            actor=actor,
            target_type="catalog",
            courses_dir=str(catalog.courses_dir),
            created=report.created,
            updated=report.updated,
            unchanged=report.unchanged,
            deactivated=report.deactivated,
            changes=report.changes,
            refused={course.slug: list(course.problems) for course in report.refused},
        )
    session.flush()
    return report


def list_tracks(session: Session, active_only: bool = True) -> list[Track]:
    """Tracks in display order (position, then slug), with their courses loaded.

    ``Track.courses`` holds inactive courses too; filter on ``Course.active`` when
    showing them to learners.
    """
    stmt = select(Track).options(selectinload(Track.courses)).order_by(Track.position, Track.slug)
    if active_only:
        stmt = stmt.where(Track.active.is_(True))
    return list(session.scalars(stmt))


def get_course_by_slug(session: Session, slug: str, *, include_inactive: bool = False) -> Course:
    """The course called ``slug`` with its track, assignments and instructors loaded.

    Raises :class:`~academy.errors.NotFound` when there is no such course, or when it is
    inactive (removed from ``courses/``) and ``include_inactive`` is false.
    """
    stmt = (
        select(Course)
        .where(Course.slug == slug)
        .options(
            selectinload(Course.track),
            selectinload(Course.assignments),
            selectinload(Course.instructors),
        )
    )
    course = session.scalars(stmt).one_or_none()
    if course is None or not (course.active or include_inactive):
        raise NotFound(_l("Course not found."))
    return course


# --------------------------------------------------------------------------- loading


def _apply(row: Any, values: dict[str, Any]) -> bool:
    """Set the attributes of ``row`` that differ from ``values``; whether any did."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def _sync_tracks(session: Session, manifests: tuple[TrackManifest, ...], report: LoadReport) -> dict[str, Track]:
    existing = {track.slug: track for track in session.scalars(select(Track))}
    result: dict[str, Track] = {}
    for manifest in manifests:
        values = {
            "title_ko": manifest.title_ko,
            "title_en": manifest.title_en,
            "description_ko": manifest.description_ko,
            "description_en": manifest.description_en,
            "position": manifest.position,
            "active": True,
        }
        track = existing.get(manifest.slug)
        if track is None:
            track = Track(slug=manifest.slug, **values)
            session.add(track)
            report.note("created", "track", manifest.slug)
        else:
            report.note("updated" if _apply(track, values) else "unchanged", "track", manifest.slug)
        result[manifest.slug] = track
    for slug, track in existing.items():
        if slug not in result and track.active:
            track.active = False
            report.note("deactivated", "track", slug)
    return result


def _course_values(manifest: CourseManifest) -> dict[str, Any]:
    return {
        "title_ko": manifest.title_ko,
        "title_en": manifest.title_en,
        "description_ko": manifest.description_ko,
        "description_en": manifest.description_en,
        "position": manifest.position,
        "hours": manifest.hours,
        "lab_profile": manifest.lab_profile,
        "gpu_hour_quota": manifest.gpu_hour_quota,
        "grading_profile": manifest.grading_profile,
        "passing_rule": dict(manifest.passing_rule),
        "competencies": [{"ko": ko, "en": en} for ko, en in manifest.competencies],
        "source_path": str(manifest.directory),
        "manifest_hash": manifest.manifest_hash,
        "active": True,
    }


def _assignment_values(manifest: AssignmentManifest) -> dict[str, Any]:
    return {
        "title_ko": manifest.title_ko,
        "title_en": manifest.title_en,
        "position": manifest.position,
        "due_days": manifest.due_days,
        "max_score": manifest.max_score,
        "notebooks": list(manifest.notebooks),
        "grading": dict(manifest.grading),
        "active": True,
    }


def _sync_courses(
    session: Session,
    manifests: tuple[CourseManifest, ...],
    tracks: dict[str, Track],
    report: LoadReport,
    *,
    keep: set[str],
) -> None:
    """Upsert ``manifests``; deactivate the courses that are neither among them nor in ``keep`` (refused ones)."""
    stmt = select(Course).options(selectinload(Course.assignments), selectinload(Course.instructors))
    existing = {course.slug: course for course in session.scalars(stmt)}
    seen: set[str] = set()
    for manifest in manifests:
        seen.add(manifest.slug)
        track = tracks[manifest.track]
        values = _course_values(manifest)
        course = existing.get(manifest.slug)
        if course is None:
            course = Course(slug=manifest.slug, track=track, **values)
            course.instructors = [CourseInstructor(email=email) for email in manifest.instructors]
            session.add(course)
            report.note("created", "course", manifest.slug)
        elif (
            course.manifest_hash == manifest.manifest_hash
            and course.active
            and course.source_path == values["source_path"]
            and course.track is track
        ):
            # Same manifest and notebooks as last time: nothing below can differ.
            report.note("unchanged", "course", manifest.slug)
            report.unchanged += len(manifest.assignments)
            continue
        else:
            changed = _apply(course, values)
            if course.track is not track:
                course.track = track
                changed = True
            changed = _sync_instructors(course, manifest.instructors) or changed
            report.note("updated" if changed else "unchanged", "course", manifest.slug)
        _sync_assignments(course, manifest, report)

    for slug, course in existing.items():
        if slug in seen or slug in keep:
            continue
        if course.active:
            course.active = False
            report.note("deactivated", "course", slug)
        for assignment in course.assignments:
            if assignment.active:
                assignment.active = False
                report.note("deactivated", "assignment", f"{slug}/{assignment.slug}")


def _sync_instructors(course: Course, emails: tuple[str, ...]) -> bool:
    """Make the course's instructor rows match ``emails``; whether anything changed."""
    changed = False
    current = {instructor.email: instructor for instructor in course.instructors}
    for email, instructor in current.items():
        if email not in emails:
            course.instructors.remove(instructor)  # delete-orphan removes the row
            changed = True
    for email in emails:
        if email not in current:
            course.instructors.append(CourseInstructor(email=email))
            changed = True
    return changed


def _sync_assignments(course: Course, manifest: CourseManifest, report: LoadReport) -> None:
    existing = {assignment.slug: assignment for assignment in course.assignments}
    listed: set[str] = set()
    for item in manifest.assignments:
        listed.add(item.slug)
        name = f"{manifest.slug}/{item.slug}"
        values = _assignment_values(item)
        assignment = existing.get(item.slug)
        if assignment is None:
            course.assignments.append(Assignment(slug=item.slug, **values))
            report.note("created", "assignment", name)
        else:
            report.note("updated" if _apply(assignment, values) else "unchanged", "assignment", name)
    for slug, assignment in existing.items():
        if slug not in listed and assignment.active:
            assignment.active = False
            report.note("deactivated", "assignment", f"{manifest.slug}/{slug}")
