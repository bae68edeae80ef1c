"""Building the learner dashboard from enrollments and the catalog.

Everything here is read-only and takes plain values.  Each assignment's deadline, score
and status come from ``academy.grading.standing`` (the same answer the assignment and
submission pages give), fetched per track in a fixed number of queries; each course's
completion (or what is still missing for it) from ``academy.completion``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from academy.catalog.models import Assignment, Course, Track
from academy.certificates.models import Certificate
from academy.certificates.services import certificates_of
from academy.completion.models import Completion
from academy.completion.rules import Condition, Outcome
from academy.completion.services import outcome_from
from academy.db import utcnow
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.enrollment.services import enrollments_of, waitlist_position
from academy.grading.services import cohort_deadline
from academy.grading.standing import Standing, learner_standings


@dataclass
class AssignmentRow:
    """One assignment on the dashboard: the learner's standing on it."""

    assignment: Assignment
    standing: Standing

    @property
    def status(self) -> str:
        """One of ``academy.grading.standing.STATUSES``."""
        return self.standing.status

    @property
    def due_at(self) -> dt.datetime | None:
        """The learner's own deadline (an extension included)."""
        return self.standing.due_at

    @property
    def overdue(self) -> bool:
        """The deadline passed without any attempt."""
        return self.standing.overdue


@dataclass
class CourseRow:
    course: Course
    assignments: list[AssignmentRow] = field(default_factory=list)
    completion: Completion | None = None  # in force
    certificate: Certificate | None = None  # of that completion
    outcome: Outcome | None = None  # the passing rule judged now (None without access)

    @property
    def missing(self) -> list[Condition]:
        """The conditions of the passing rule not met yet (nothing once completed)."""
        if self.completion is not None or self.outcome is None:
            return []
        return [c for c in self.outcome.conditions if not c.met]

    def assignment_title(self, slug: str | None, locale: str) -> str:
        """An assignment of this course by its title."""
        found = next((a.assignment for a in self.assignments if a.assignment.slug == slug), None)
        return found.title(locale) if found is not None else (slug or "")

    @property
    def progress(self) -> int:
        """Percent of the course's assignments passed."""
        if not self.assignments:
            return 0
        done = sum(1 for row in self.assignments if row.status == "passed")
        return round(100 * done / len(self.assignments))


@dataclass
class TrackRow:
    enrollment: Enrollment
    cohort: Cohort
    track: Track
    waitlist_position: int | None
    courses: list[CourseRow] = field(default_factory=list)
    completion: Completion | None = None  # of the whole track, in force
    certificate: Certificate | None = None  # of that completion

    @property
    def progress(self) -> int:
        """Percent of all assignments of the track passed."""
        rows = [a for c in self.courses for a in c.assignments]
        if not rows:
            return 0
        return round(100 * sum(1 for a in rows if a.status == "passed") / len(rows))

    @property
    def has_access(self) -> bool:
        """Only enrolled learners see the course material."""
        return self.enrollment.status is EnrollmentStatus.enrolled


#: An assignment's deadline in a cohort (start + ``due_days`` at 23:59 KST, capped at the cohort's
#: end).  The rule lives with grading; a learner's own deadline (extensions included) comes from
#: ``academy.grading.standing``.
due_at = cohort_deadline


def build_dashboard(session: Session, user_id: int, *, now: dt.datetime | None = None,
                    certificates: Sequence[Certificate] | None = None) -> list[TrackRow]:
    """The learner's active enrollments with their courses and assignments.

    ``certificates``: the learner's certificates when the caller has them already (the page lists them too).
    """
    from academy.users.models import User

    now = now or utcnow()
    user = session.get(User, user_id)
    if user is None:
        return []
    rows: list[TrackRow] = []
    completions = session.scalars(select(Completion).where(Completion.user_id == user.id,
                                                           Completion.withdrawn_at.is_(None))).all()
    course_done = {c.course_id: c for c in completions if c.course_id is not None}
    track_done = {c.track_id: c for c in completions if c.course_id is None}
    if certificates is None:
        certificates = certificates_of(session, user.id)
    valid = {c.completion_id: c for c in certificates if c.valid}
    for enrollment in enrollments_of(session, user, active_only=True, with_catalog=True):
        cohort = enrollment.cohort
        track = cohort.track
        row = TrackRow(enrollment, cohort, track, waitlist_position(session, enrollment),
                       completion=track_done.get(track.id))
        row.certificate = valid.get(row.completion.id) if row.completion is not None else None
        courses = [c for c in track.courses if c.active]
        assignments = [a for c in courses for a in c.assignments if a.active]
        standings = learner_standings(session, user, assignments, cohort=cohort, now=now) if row.has_access else {}
        for course in courses:
            course_row = CourseRow(course, completion=course_done.get(course.id))
            if course_row.completion is not None:
                course_row.certificate = valid.get(course_row.completion.id)
            for assignment in course.assignments:
                if assignment.active and assignment.id in standings:
                    course_row.assignments.append(AssignmentRow(assignment, standings[assignment.id]))
            if row.has_access and course_row.completion is None:
                course_row.outcome = outcome_from(session, user, course, standings, now=now, lab_hours=False)
            row.courses.append(course_row)
        rows.append(row)
    return rows


#: While a lab-hours condition is still counting, the hours shown grow with an open lab.
COUNTING = dt.timedelta(minutes=1)


def fresh_until(rows: Sequence[TrackRow], now: dt.datetime) -> dt.datetime | None:
    """Until when the dashboard built from ``rows`` at ``now`` stays true without any data change.

    The earliest moment ahead that its facts depend on: a deadline (status, overdue, held
    results), a cohort's start or end; a minute ahead while a lab-hours condition is unmet.
    None when the page must not be kept at all (a waitlist position, which others move).
    """
    moments: list[dt.datetime] = []
    for row in rows:
        if row.waitlist_position is not None:
            return None
        moments += [row.cohort.starts_at, row.cohort.ends_at]
        for course in row.courses:
            moments += [a.due_at for a in course.assignments if a.due_at is not None]
            if any(c.kind == "lab_hours" for c in course.missing):
                moments.append(now + COUNTING)
    return min((m for m in moments if m is not None and m > now), default=now + dt.timedelta(days=3650))
