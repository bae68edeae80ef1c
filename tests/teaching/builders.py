"""Builders for the at-risk and nudge tests: a course's assignments, seats, attempts and lab sessions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from academy.extensions import db

DAY = dt.timedelta(days=1)


def get_course(course_id: int) -> Any:
    from academy.catalog.models import Course

    return db.session.get(Course, course_id)


def get_cohort(cohort_id: int) -> Any:
    from academy.enrollment.models import Cohort

    return db.session.get(Cohort, cohort_id)


def add_assignments(course_id: int, count: int, release_path: str = "/nonexistent") -> list[Any]:
    """The course's assignments, topped up to ``count`` (max 10 points each), each with a release."""
    from academy.catalog.models import Assignment
    from academy.grading.models import AssignmentRelease

    course = get_course(course_id)
    for n in range(len(course.assignments), count):
        db.session.add(Assignment(course=course, slug=f"{n + 1:02d}-more", title_ko=f"과제 {n + 1}",
                                  title_en=f"Task {n + 1}", position=n, due_days=7, max_score=10.0,
                                  notebooks=["more.ipynb"]))
    db.session.flush()
    db.session.refresh(course)
    for assignment in course.assignments:
        if db.session.scalar(db.select(AssignmentRelease.id).where(AssignmentRelease.assignment_id == assignment.id)):
            continue
        db.session.add(AssignmentRelease(assignment=assignment, version=1, source_hash=f"h{assignment.id}",
                                         path=release_path))
    db.session.flush()
    return list(course.assignments)


def seat(cohort_id: int, user_id: int, *, requested_at: dt.datetime | None = None) -> Any:
    """Give the learner a seat in the cohort; ``requested_at`` backdates (or postdates) the request."""
    from academy.enrollment.models import EnrollmentStatus
    from academy.enrollment.services import request_enrollment
    from academy.users.models import User

    enrollment = request_enrollment(db.session, get_cohort(cohort_id), db.session.get(User, user_id))
    assert enrollment.status is EnrollmentStatus.enrolled
    if requested_at is not None:
        enrollment.requested_at = requested_at
    db.session.flush()
    return enrollment


def add_attempt(user_id: int, assignment: Any, n: int, cells: dict[str, float], *, at: dt.datetime,
             status: str = "graded", manual: Iterable[str] = ()) -> None:
    """Attempt ``n`` of the learner at ``assignment``: ``cells`` maps grade ids of notebook "intro" to points of 5."""
    from academy.grading.models import AssignmentRelease, CellScore, Submission, SubmissionStatus

    release = db.session.scalar(db.select(AssignmentRelease).where(AssignmentRelease.assignment_id == assignment.id))
    total = sum(cells.values())
    scale = 10.0 / (5.0 * len(cells))
    submission = Submission(assignment=assignment, user_id=user_id, release=release, attempt=n,
                            status=SubmissionStatus(status), raw_score=total * scale, score=total * scale,
                            max_score=10.0, submitted_at=at, graded_at=at)
    submission.cells = [CellScore(notebook="intro", grade_id=grade_id, score=score, max_score=5.0,
                                  manual=grade_id in manual) for grade_id, score in cells.items()]
    db.session.add(submission)
    db.session.flush()


def pass_all(user_id: int, assignments: Iterable[Any], *, at: dt.datetime) -> None:
    for assignment in assignments:
        add_attempt(user_id, assignment, 1, {"q1": 5.0, "q2": 5.0}, at=at)


def add_lab(user_id: int, course_id: int, *, at: dt.datetime) -> None:
    from academy.labs.models import LabSession, LabState

    db.session.add(LabSession(user_id=user_id, course_id=course_id, hub_user=f"u{user_id}", profile="cpu",
                              state=LabState.stopped, queued_at=at, started_at=at,
                              stopped_at=at + dt.timedelta(hours=1), last_seen_at=at))
    db.session.flush()
