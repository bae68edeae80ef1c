"""Building the learner dashboard from enrollments and the catalog.

Everything here is read-only and takes plain values.  Assignment status comes from
``assignment_statuses``, which knows only "not started" until submissions exist
(the grading issue adds them); deadlines come from the cohort's dates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from academy.catalog.models import Assignment, Course, Track
from academy.db import utcnow
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.enrollment.services import enrollments_of, waitlist_position


@dataclass
class AssignmentRow:
    assignment: Assignment
    status: str  # "not_started" | "submitted" | "passed"
    due_at: dt.datetime
    overdue: bool


@dataclass
class CourseRow:
    course: Course
    assignments: list[AssignmentRow] = field(default_factory=list)

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


def due_at(assignment: Assignment, cohort: Cohort) -> dt.datetime:
    """An assignment's deadline in a cohort: start + ``due_days``, capped at the cohort's end.

    Deadlines fall at 23:59 Asia/Seoul of that day, which is what a learner expects
    "due on the 14th" to mean.
    """
    if assignment.due_days is None:
        return cohort.ends_at
    from zoneinfo import ZoneInfo

    seoul = ZoneInfo("Asia/Seoul")
    start_local = cohort.starts_at.astimezone(seoul)
    day = (start_local + dt.timedelta(days=assignment.due_days)).date()
    local = dt.datetime.combine(day, dt.time(23, 59), tzinfo=seoul)
    return min(local.astimezone(dt.UTC), cohort.ends_at)


def assignment_statuses(session: Session, user_id: int, assignment_ids: list[int]) -> dict[int, str]:
    """Each assignment's status for this learner: not started, submitted, or passed.

    Passed means the attempt that counts (best or last, per the assignment's policy)
    reaches the course's pass mark (``min_score_percent``, 60 by default).
    """
    from sqlalchemy import select

    from academy.grading.deadlines import counting_score
    from academy.grading.models import Submission

    statuses = {assignment_id: "not_started" for assignment_id in assignment_ids}
    if not assignment_ids:
        return statuses
    rows = session.execute(
        select(Submission.assignment_id, Submission.attempt, Submission.score, Submission.max_score)
        .where(Submission.user_id == user_id, Submission.assignment_id.in_(assignment_ids))
    ).all()
    by_assignment: dict[int, list[tuple[int, float | None, float]]] = {}
    for assignment_id, attempt, score, max_score in rows:
        by_assignment.setdefault(assignment_id, []).append((attempt, score, max_score))
    assignments = {a.id: a for a in session.scalars(select(Assignment).where(Assignment.id.in_(by_assignment)))}
    for assignment_id, attempts in by_assignment.items():
        assignment = assignments[assignment_id]
        score = counting_score([(a, s) for a, s, _m in attempts], assignment.policy("score_policy"))
        maximum = max(m for _a, _s, m in attempts) or assignment.max_score
        pass_mark = float(assignment.course.passing_rule.get("min_score_percent", 60))
        passed = score is not None and maximum > 0 and 100 * score / maximum >= pass_mark
        statuses[assignment_id] = "passed" if passed else "submitted"
    return statuses


def build_dashboard(session: Session, user_id: int, *, now: dt.datetime | None = None) -> list[TrackRow]:
    """The learner's active enrollments with their courses and assignments."""
    from academy.users.models import User

    now = now or utcnow()
    user = session.get(User, user_id)
    if user is None:
        return []
    rows: list[TrackRow] = []
    for enrollment in enrollments_of(session, user, active_only=True):
        cohort = enrollment.cohort
        track = cohort.track
        row = TrackRow(enrollment, cohort, track, waitlist_position(session, enrollment))
        courses = [c for c in track.courses if c.active]
        assignment_ids = [a.id for c in courses for a in c.assignments if a.active]
        statuses = assignment_statuses(session, user_id, assignment_ids)
        for course in courses:
            course_row = CourseRow(course)
            for assignment in course.assignments:
                if not assignment.active:
                    continue
                due = due_at(assignment, cohort)
                status = statuses.get(assignment.id, "not_started")
                course_row.assignments.append(
                    AssignmentRow(assignment, status, due, overdue=due < now and status == "not_started")
                )
            row.courses.append(course_row)
        rows.append(row)
    return rows
