"""Loading courses/ into the database: idempotent upserts, deactivation, audit, a broken course refused by name."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from academy.audit.models import AuditEntry
from academy.catalog.manifest import ManifestError
from academy.catalog.models import Assignment, Course, CourseInstructor, Track
from academy.catalog.services import LoadReport, get_course_by_slug, list_tracks, load_catalog
from academy.errors import NotFound
from academy.extensions import db
from academy.users.models import User
from tests.support import COURSES

COURSE_TOML = "python-data/course.toml"
PANDAS_NB = "python-data/source/01-pandas-basics/production_log.ipynb"
TRACKS = ["ai-basics", "data-analytics", "applied-ml", "ai-advanced"]
SHIPPED_COURSES = 9
SHIPPED_ROWS = len(TRACKS) + SHIPPED_COURSES + 27  # tracks + courses + assignments


def copy_courses(tmp_path: Path) -> Path:
    """A private copy of the shipped courses/ to change."""
    return Path(shutil.copytree(COURSES, tmp_path / "courses"))


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first ``old`` in ``path`` with ``new``."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def load(app: Flask, courses_dir: Path, actor_id: int | None = None) -> LoadReport:
    """Run the loader in its own transaction, as ``academy init`` does (by the user ``actor_id``, if given)."""
    with app.app_context():
        actor = None if actor_id is None else db.session.get(User, actor_id)
        report = load_catalog(db.session, courses_dir, actor=actor)
        db.session.commit()
        return report


def snapshot(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Every catalog row, updated_at included, so that any write shows up."""
    with app.app_context():
        def rows(model: Any, *columns: Any) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in db.session.execute(select(*columns).order_by(model.id))]

        return {
            "track": rows(Track, Track.id, Track.slug, Track.title_ko, Track.position, Track.active,
                          Track.updated_at),
            "course": rows(Course, Course.id, Course.slug, Course.track_id, Course.title_ko, Course.hours,
                           Course.passing_rule, Course.source_path, Course.manifest_hash, Course.active,
                           Course.updated_at),
            "instructor": rows(CourseInstructor, CourseInstructor.id, CourseInstructor.course_id,
                               CourseInstructor.email),
            "assignment": rows(Assignment, Assignment.id, Assignment.course_id, Assignment.slug,
                               Assignment.max_score, Assignment.notebooks, Assignment.active,
                               Assignment.updated_at),
        }


def audit_entries(app: Flask) -> list[AuditEntry]:
    with app.app_context():
        entries = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "catalog.load").order_by(AuditEntry.id)
        ).all()
        db.session.expunge_all()
        return list(entries)


# --------------------------------------------------------------------------- the shipped catalog


def test_shipped_courses_load(app: Flask, make_user: Any) -> None:
    admin_id = make_user("admin")
    report = load(app, COURSES, actor_id=admin_id)

    assert (report.created, report.updated, report.unchanged, report.deactivated) == (SHIPPED_ROWS, 0, 0, 0)
    assert "course python-data created" in report.changes
    assert "assignment ml-quality/02-logistic-defect created" in report.changes
    assert report.summary() == f"catalog: {SHIPPED_ROWS} created, 0 updated, 0 unchanged, 0 deactivated"

    with app.app_context():
        track = db.session.scalars(select(Track).where(Track.slug == "ai-basics")).one()
        assert (track.title_ko, track.title_en, track.active) == (
            "제조 AI 기초", "AI Foundations for Manufacturing", True
        )
        course = get_course_by_slug(db.session, "python-data")
        assert course.track is track
        assert course.title_ko == "파이썬 데이터 분석 기초"
        assert (course.hours, course.lab_profile, course.gpu_hour_quota) == (12.0, "cpu", 0.0)
        assert course.passing_rule == {
            "min_score_percent": 60.0,
            "required_assignments": ["01-pandas-basics", "02-sensor-cleaning", "03-shift-charts"],
        }
        assert course.source_path == str(COURSES.resolve() / "python-data")
        assert len(course.manifest_hash) == 64
        assert [i.email for i in course.instructors] == ["instructor@demo.academy.kr"]
        assert [(a.slug, a.position, a.due_days, a.max_score, a.notebooks) for a in course.assignments] == [
            ("01-pandas-basics", 1, 14, 12.0, ["production_log.ipynb"]),
            ("02-sensor-cleaning", 2, 28, 13.0, ["sensor_cleaning.ipynb"]),
            ("03-shift-charts", 3, 42, 15.0, ["shift_charts.ipynb"]),
        ]
        assert [t.slug for t in list_tracks(db.session)] == TRACKS
        assert [c.slug for c in list_tracks(db.session)[0].courses] == ["python-basics", "python-data", "ml-quality"]
        gpu = get_course_by_slug(db.session, "dl-vision")
        assert (gpu.track.slug, gpu.lab_profile, gpu.gpu_hour_quota) == ("ai-advanced", "gpu-shared", 10.0)
        assert [(a.slug, a.max_score, a.notebooks) for a in gpu.assignments] == [
            ("01-defect-cnn", 12.0, ["surface_scratch_cnn.ipynb"]),
            ("02-transfer-learning", 12.0, ["crack_transfer.ipynb"]),
            ("03-final-project", 16.0, ["part_inspection.ipynb"]),
        ]

    entries = audit_entries(app)
    assert len(entries) == 1
    assert entries[0].actor_id == admin_id
    assert entries[0].data["created"] == SHIPPED_ROWS


def test_loading_twice_changes_nothing(app: Flask) -> None:
    load(app, COURSES)
    before = snapshot(app)

    report = load(app, COURSES)

    assert (report.created, report.updated, report.unchanged, report.deactivated) == (0, 0, SHIPPED_ROWS, 0)
    assert not report.changed and report.changes == []
    assert snapshot(app) == before
    assert len(audit_entries(app)) == 1  # no audit entry when nothing changed


def test_loading_twice_in_one_transaction(app: Flask) -> None:
    with app.app_context():
        first = load_catalog(db.session, COURSES)
        second = load_catalog(db.session, COURSES)
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(Assignment)) == 27
    assert first.created == SHIPPED_ROWS
    assert (second.created, second.updated, second.unchanged) == (0, 0, SHIPPED_ROWS)


# --------------------------------------------------------------------------- changes on disk


def test_edited_manifest_and_notebook_are_updated(app: Flask, tmp_path: Path) -> None:
    courses = copy_courses(tmp_path)
    load(app, courses)
    edit(courses / COURSE_TOML, "hours = 12.0", "hours = 14.5")
    edit(courses / COURSE_TOML, 'instructors = ["instructor@demo.academy.kr"]',
         'instructors = ["Lee@Demo.Academy.kr"]')
    edit(courses / PANDAS_NB, '"points": 2', '"points": 4')

    report = load(app, courses)

    assert sorted(report.changes) == [
        "assignment python-data/01-pandas-basics updated",
        "course python-data updated",
    ]
    assert (report.updated, report.unchanged) == (2, SHIPPED_ROWS - 2)
    with app.app_context():
        course = get_course_by_slug(db.session, "python-data")
        assert course.hours == 14.5
        assert [i.email for i in course.instructors] == ["lee@demo.academy.kr"]
        assert course.assignments[0].max_score == 14.0
        assert db.session.scalar(select(func.count()).select_from(CourseInstructor)) == SHIPPED_COURSES
    assert len(audit_entries(app)) == 2


def test_moved_courses_dir_updates_source_path(app: Flask, tmp_path: Path) -> None:
    load(app, COURSES)
    moved = copy_courses(tmp_path)

    report = load(app, moved)

    # every course's source_path changes; tracks and assignments do not
    assert (report.updated, report.unchanged) == (SHIPPED_COURSES, SHIPPED_ROWS - SHIPPED_COURSES)
    with app.app_context():
        assert get_course_by_slug(db.session, "ml-quality").source_path == str(moved.resolve() / "ml-quality")


def test_removed_course_is_deactivated_not_deleted(app: Flask, tmp_path: Path) -> None:
    courses = copy_courses(tmp_path)
    load(app, courses)
    shutil.rmtree(courses / "ml-quality")

    report = load(app, courses)

    assert report.deactivated == 4
    assert sorted(report.changes) == [
        "assignment ml-quality/01-linear-regression deactivated",
        "assignment ml-quality/02-logistic-defect deactivated",
        "assignment ml-quality/03-final-project deactivated",
        "course ml-quality deactivated",
    ]
    with app.app_context():
        course = db.session.scalars(select(Course).where(Course.slug == "ml-quality")).one()
        assert not course.active
        assert [a.active for a in course.assignments] == [False, False, False]
        assert db.session.scalar(select(func.count()).select_from(Course)) == SHIPPED_COURSES
        with pytest.raises(NotFound):
            get_course_by_slug(db.session, "ml-quality")
        assert get_course_by_slug(db.session, "ml-quality", include_inactive=True) is course

    again = load(app, courses)
    assert (again.deactivated, again.changes) == (0, [])

    shutil.copytree(COURSES / "ml-quality", courses / "ml-quality")
    back = load(app, courses)
    assert (back.created, back.updated) == (0, 4)
    with app.app_context():
        assert get_course_by_slug(db.session, "ml-quality").active


def test_removed_assignment_is_deactivated(app: Flask, tmp_path: Path) -> None:
    courses = copy_courses(tmp_path)
    load(app, courses)
    path = courses / COURSE_TOML
    text = path.read_text(encoding="utf-8")
    second = text.rindex("[[assignments]]")
    path.write_text(
        text[:second].replace(', "03-shift-charts"]', "]"), encoding="utf-8"
    )

    report = load(app, courses)

    assert sorted(report.changes) == [
        "assignment python-data/03-shift-charts deactivated",
        "course python-data updated",
    ]
    with app.app_context():
        course = get_course_by_slug(db.session, "python-data")
        assert [(a.slug, a.active) for a in course.assignments] == [
            ("01-pandas-basics", True),
            ("02-sensor-cleaning", True),
            ("03-shift-charts", False),
        ]


def test_removed_track_is_deactivated(app: Flask, tmp_path: Path) -> None:
    courses = copy_courses(tmp_path)
    tracks = courses / "tracks.toml"
    original = tracks.read_text(encoding="utf-8")
    tracks.write_text(
        original + '\n[[tracks]]\nid = "vision"\nposition = 0\n[tracks.title]\nko = "비전 검사"\nen = "Vision"\n',
        encoding="utf-8",
    )
    load(app, courses)
    with app.app_context():
        assert [t.slug for t in list_tracks(db.session)] == ["vision", *TRACKS]

    tracks.write_text(original, encoding="utf-8")
    report = load(app, courses)

    assert report.changes == ["track vision deactivated"]
    with app.app_context():
        assert [t.slug for t in list_tracks(db.session)] == TRACKS
        assert [t.slug for t in list_tracks(db.session, active_only=False)] == ["vision", *TRACKS]


def test_unknown_course_is_not_found(app: Flask) -> None:
    load(app, COURSES)
    with app.app_context(), pytest.raises(NotFound):
        get_course_by_slug(db.session, "no-such-course")


# --------------------------------------------------------------------------- invalid catalogs

# (case id, file under courses/, text to replace, replacement, words in the message)
BROKEN = [
    ("syntax-error", COURSE_TOML, "hours = 12.0", "hours = 12.0.0", "line 5: field 'hours': TOML syntax error"),
    ("missing-field", COURSE_TOML, "hours = 12.0\n", "", "line 1: field 'hours': required field is missing"),
    ("wrong-type", COURSE_TOML, "hours = 12.0", 'hours = "12"', "line 5: field 'hours': must be a non-negative"),
    ("unknown-key", COURSE_TOML, "hours = 12.0", "hour = 12.0", "line 5: field 'hour': unknown key"),
    ("unknown-track", COURSE_TOML, 'track = "ai-basics"', 'track = "ai"', "line 3: field 'track': unknown track"),
    ("missing-assignment-dir", COURSE_TOML, 'id = "02-sensor-cleaning"', 'id = "02-gone"',
     "field 'assignments[1].id': no assignment directory source/02-gone/"),
    ("broken-notebook", PANDAS_NB, '"cells": [', '"cells": [,', "production_log.ipynb, line 2: not valid JSON"),
    ("duplicate-assignment-id", COURSE_TOML, 'id = "02-sensor-cleaning"', 'id = "01-pandas-basics"',
     "field 'assignments[1].id': duplicate assignment id"),
]


def _rows_of(snap: dict[str, list[tuple[Any, ...]]], course_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """The course's own rows of a snapshot: the course, its instructors and its assignments."""
    return {"course": [r for r in snap["course"] if r[0] == course_id],
            "instructor": [r for r in snap["instructor"] if r[1] == course_id],
            "assignment": [r for r in snap["assignment"] if r[1] == course_id]}


@pytest.mark.parametrize(("rel", "old", "new", "words"), [pytest.param(*c[1:], id=c[0]) for c in BROKEN])
def test_an_invalid_course_is_refused_by_name_and_the_rest_load(
    app: Flask, tmp_path: Path, rel: str, old: str, new: str, words: str
) -> None:
    courses = copy_courses(tmp_path)
    edit(courses / rel, old, new)

    # On an empty database: the broken course is not created, the others are.
    report = load(app, courses)
    assert [course.slug for course in report.refused] == ["python-data"]
    (problem,) = report.refused[0].problems
    assert problem.startswith(f"courses/{rel}, line "), problem
    assert words in problem
    assert "python-data" not in [row[1] for row in snapshot(app)["course"]]
    assert "ml-quality" in [row[1] for row in snapshot(app)["course"]]

    # On a loaded database: the broken course stays exactly as it was (not deactivated), while a valid
    # change in another course is applied.
    shutil.rmtree(courses)
    load(app, copy_courses(tmp_path))
    before = snapshot(app)
    with app.app_context():
        python_data = db.session.scalar(select(Course.id).where(Course.slug == "python-data"))
    edit(courses / "ml-quality/course.toml", "hours = 16.0", "hours = 20.0")
    edit(courses / rel, old, new)
    report = load(app, courses)
    assert [course.slug for course in report.refused] == ["python-data"]
    after = snapshot(app)
    assert _rows_of(after, python_data) == _rows_of(before, python_data)
    assert [row[4] for row in after["course"] if row[1] == "ml-quality"] == [20.0]
    assert audit_entries(app)[-1].data["refused"] == {"python-data": [problem]}


def test_a_broken_tracks_file_changes_nothing(app: Flask, tmp_path: Path) -> None:
    """Without a readable tracks.toml no course can be placed: the load stops and nothing changes."""
    courses = copy_courses(tmp_path)
    edit(courses / "tracks.toml", 'id = "ai-basics"', 'id = "ai basics"')
    with pytest.raises(ManifestError) as caught:
        load(app, courses)
    assert str(caught.value).startswith("courses/tracks.toml, line "), caught.value
    assert snapshot(app) == {"track": [], "course": [], "instructor": [], "assignment": []}
