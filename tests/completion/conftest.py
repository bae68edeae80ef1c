"""The academy every completion and certificate test starts from, and helpers that write graded attempts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from academy.catalog.models import Assignment, Course
from academy.completion.models import Completion
from academy.enrollment.models import Cohort
from academy.enrollment.services import request_enrollment
from academy.extensions import db
from academy.grading.models import AssignmentRelease, CellScore, Submission, SubmissionStatus
from academy.grading.services import cohort_deadline
from academy.users.models import User

T0 = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def academy(app: Flask, make_cohort: Any, make_user: Any) -> dict[str, Any]:
    """A track of two courses; course A has a required and an optional assignment, course B one.

    Course A: pass mark 60 %, ``a1`` required, total at least 50 %.  The learner is enrolled in a
    cohort that started at T0; hidden results are held until each deadline.
    """
    cohort_id = make_cohort(capacity=5)
    learner_id = make_user("learner", locale="en")
    with app.app_context():
        cohort = db.session.get(Cohort, cohort_id)
        cohort.starts_at, cohort.ends_at = T0, T0 + dt.timedelta(days=60)
        track = cohort.track
        course_a = track.courses[0]
        course_a.passing_rule = {"min_score_percent": 60, "required_assignments": ["01-intro"],
                                 "min_total_percent": 50}
        a2 = Assignment(course=course_a, slug="02-more", title_ko="둘째 과제", title_en="Second task", due_days=14,
                        max_score=10.0, position=2)
        course_b = Course(slug=f"{track.slug}-b", track=track, title_ko="과정 B", title_en="Course B",
                          source_path="/nonexistent/b", hours=6.0, position=2, passing_rule={"min_score_percent": 60})
        b1 = Assignment(course=course_b, slug="01-b", title_ko="B 과제", title_en="B task", due_days=7,
                        max_score=10.0)
        db.session.add_all([a2, course_b, b1])
        request_enrollment(db.session, cohort, db.session.get(User, learner_id))
        db.session.flush()
        ids = {"learner": learner_id, "cohort": cohort_id, "track": track.id, "a": course_a.id, "b": course_b.id,
               "a1": course_a.assignments[0].id, "a2": a2.id, "b1": b1.id}
        for key in ("a1", "a2", "b1"):
            assignment = db.session.get(Assignment, ids[key])
            db.session.add(AssignmentRelease(assignment=assignment, version=1, source_hash="0" * 64,
                                             path="/nonexistent"))
            ids[f"due_{key}"] = cohort_deadline(assignment, cohort)
        db.session.commit()
    return ids


def _graded(ids: dict[str, Any], key: str, score: float, *, attempt: int = 1,
            at: dt.datetime | None = None) -> int:
    """A graded attempt at assignment ``key`` worth 10 (one hidden-test cell); returns its id."""
    release = db.session.scalar(select(AssignmentRelease).where(AssignmentRelease.assignment_id == ids[key]))
    row = Submission(assignment_id=ids[key], user_id=ids["learner"], release=release, attempt=attempt,
                     status=SubmissionStatus.graded, score=score, raw_score=score, max_score=10.0,
                     submitted_at=at or T0 + dt.timedelta(days=2), graded_at=at or T0 + dt.timedelta(days=2),
                     cells=[CellScore(notebook="n.ipynb", grade_id="g", score=score, max_score=10.0, hidden=True)])
    db.session.add(row)
    db.session.flush()
    return row.id


def _shown_at_once(ids: dict[str, Any], key: str) -> AssignmentRelease:
    """Make assignment ``key`` show hidden results at once (no deadline to wait for); returns its release."""
    db.session.get(Assignment, ids[key]).grading = {"hidden_tests": "immediately"}
    return db.session.scalar(select(AssignmentRelease).where(AssignmentRelease.assignment_id == ids[key]))


def _in_force(ids: dict[str, Any], **where: Any) -> list[Completion]:
    query = select(Completion).where(Completion.user_id == ids["learner"], Completion.withdrawn_at.is_(None))
    for key, value in where.items():
        query = query.where(getattr(Completion, key) == value)
    return list(db.session.scalars(query))


