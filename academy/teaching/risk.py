"""Learners at risk of not finishing a course, for its instructor.

The learners are those holding a seat in a cohort of the course's track that is running now
(``starts_at <= now < ends_at``), taken from the course's gradebook
(:func:`academy.teaching.services.build_gradebook`) so that this list and the gradebook never
disagree on a learner's standing, progress or last activity.  A learner who completed the course
is never at risk.  Three rules, each giving a :class:`Reason`:

* **idle** — no lab session and no attempt in the course for ``idle_days`` days.  The clock starts
  at the latest of their last activity, the cohort's start and the time they asked for their seat
  (``Enrollment.requested_at``: the model keeps no separate time of the decision), so a learner
  who joined three days ago is not idle yet.  Detail: ``days`` (whole days idle) and
  ``ever_active`` (whether they ever did anything in the course).
* **stuck** — an autograded cell (not a written answer) scored below its maximum in
  ``failing_attempts`` or more scored attempts at one assignment since the learner last passed it
  (so failures followed by a pass are not stuck).  One reason per such cell.  Detail:
  ``assignment_id``, ``notebook``, ``grade_id``, ``attempts`` (the failing attempts) and ``name``
  (the question as the current release names it; None without a release or a name).
* **behind** — the learner's progress (share of the course's active assignments passed) is below
  the median progress of their cohort's learners in the course by more than ``margin``.  Detail:
  ``progress`` and ``median``, both fractions of 1.

No translation here: the caller words the reasons.  Plain functions of a Session and plain values;
nothing is written.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from academy.catalog.models import Assignment, Course
from academy.db import utcnow
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.errors import NotFound
from academy.grading.models import CellScore, Submission, SubmissionStatus
from academy.grading.questions import question_names
from academy.grading.services import current_release
from academy.teaching.services import LearnerRow, build_gradebook
from academy.users.models import User

IDLE = "idle"
STUCK = "stuck"
BEHIND = "behind"
_EPSILON = 1e-9  # scores and fractions are floats: 1.9999999999 of 2 points is full marks
_SCORED = tuple(s for s in SubmissionStatus if s.has_score)


@dataclass(frozen=True)
class Reason:
    """Why a learner is at risk: ``code`` is ``idle``, ``stuck`` or ``behind``; ``detail`` as the module says."""

    code: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class RiskRow:
    """A learner at risk in one course, with every reason found (at least one)."""

    user: User
    cohort: Cohort
    reasons: tuple[Reason, ...]
    last_activity: dt.datetime | None  # newest attempt or lab session in the course, as the gradebook has it


class _StuckCell(NamedTuple):
    user_id: int
    assignment_id: int
    notebook: str
    grade_id: str
    attempts: int


def at_risk(session: Session, course: Course, *, cohort_id: int | None = None, now: dt.datetime | None = None,
            idle_days: int = 7, failing_attempts: int = 3, margin: float = 0.25) -> list[RiskRow]:
    """The learners of ``course`` at risk of not finishing it, most reasons first, then by name.

    Only learners enrolled in a cohort of the course's track running at ``now`` (and in cohort
    ``cohort_id`` when given) who have not completed the course.  ``idle_days``, ``failing_attempts``
    and ``margin`` (a fraction: 0.25 is 25 percentage points) tune the rules described in the
    module's docstring.  A few queries for the whole course, never one per learner.
    """
    now = now or utcnow()
    book = build_gradebook(session, course, cohort_id=cohort_id, now=now)
    running = [r for r in book.rows if r.cohort.starts_at <= now < r.cohort.ends_at]
    candidates = [r for r in running if r.completed_at is None]
    if not candidates:
        return []

    seats = _seat_times(session, {r.cohort.id for r in candidates})
    stuck = _stuck_cells(session, [a.id for a in book.assignments], [r.user.id for r in candidates],
                         failing_attempts)
    names = _question_names(session, book.assignments, stuck)
    stuck_of: dict[int, list[_StuckCell]] = defaultdict(list)
    for cell in stuck:
        stuck_of[cell.user_id].append(cell)
    medians = _median_progress(running, len(book.assignments))
    position = {a.id: (a.position, a.id) for a in book.assignments}

    found = []
    for row in candidates:
        reasons: list[Reason] = []
        start = max(t for t in (row.last_activity, row.cohort.starts_at, seats.get((row.user.id, row.cohort.id)))
                    if t is not None)
        if now - start >= dt.timedelta(days=idle_days):
            reasons.append(Reason(IDLE, {"days": (now - start).days, "ever_active": row.last_activity is not None}))
        for cell in sorted(stuck_of[row.user.id], key=lambda c: (position[c.assignment_id], c.notebook, c.grade_id)):
            reasons.append(Reason(STUCK, {
                "assignment_id": cell.assignment_id, "notebook": cell.notebook, "grade_id": cell.grade_id,
                "attempts": cell.attempts, "name": names.get((cell.assignment_id, cell.notebook, cell.grade_id)),
            }))
        if book.assignments:
            progress = row.passed / len(book.assignments)
            median = medians[row.cohort.id]
            if median - progress > margin + _EPSILON:
                reasons.append(Reason(BEHIND, {"progress": progress, "median": median}))
        if reasons:
            found.append(RiskRow(row.user, row.cohort, tuple(reasons), row.last_activity))
    found.sort(key=lambda r: (-len(r.reasons), r.user.name.lower(), r.user.email))
    return found


def _seat_times(session: Session, cohort_ids: Collection[int]) -> dict[tuple[int, int], dt.datetime]:
    """(user id, cohort id) → when the learner asked for the seat they hold, for the cohorts' enrolled learners."""
    return {(user_id, cohort_id): at for user_id, cohort_id, at in session.execute(
        select(Enrollment.user_id, Enrollment.cohort_id, Enrollment.requested_at).where(
            Enrollment.cohort_id.in_(sorted(cohort_ids)), Enrollment.status == EnrollmentStatus.enrolled))}


def _stuck_cells(session: Session, assignment_ids: Sequence[int], user_ids: Sequence[int],
                 failing_attempts: int) -> list[_StuckCell]:
    """The autograded cells each learner failed in ``failing_attempts`` or more attempts since last passing them.

    One query of columns for all learners: the failing cells of scored attempts later than the
    learner's last passing attempt at that cell (if any), counted per learner, assignment and cell.
    """
    if not assignment_ids or not user_ids:
        return []
    scope = (Submission.assignment_id.in_(assignment_ids), Submission.user_id.in_(sorted(set(user_ids))),
             Submission.status.in_(_SCORED), CellScore.manual.is_(False), CellScore.score.is_not(None))
    key = (Submission.user_id, Submission.assignment_id, CellScore.notebook, CellScore.grade_id)
    last_pass = (select(*key, func.max(Submission.attempt).label("attempt"))
                 .join(CellScore, CellScore.submission_id == Submission.id)
                 .where(*scope, CellScore.score >= CellScore.max_score - _EPSILON)
                 .group_by(*key).subquery())
    failures = func.count().label("failures")
    query = (select(*key, failures)
             .join(CellScore, CellScore.submission_id == Submission.id)
             .outerjoin(last_pass, and_(last_pass.c.user_id == Submission.user_id,
                                        last_pass.c.assignment_id == Submission.assignment_id,
                                        last_pass.c.notebook == CellScore.notebook,
                                        last_pass.c.grade_id == CellScore.grade_id))
             .where(*scope, CellScore.score < CellScore.max_score - _EPSILON,
                    or_(last_pass.c.attempt.is_(None), Submission.attempt > last_pass.c.attempt))
             .group_by(*key)
             .having(func.count() >= failing_attempts))
    return [_StuckCell(*row) for row in session.execute(query)]


def _question_names(session: Session, assignments: Sequence[Assignment],
                    cells: Sequence[_StuckCell]) -> dict[tuple[int, str, str], str]:
    """(assignment id, notebook, grade_id) → the question's name in its assignment's current release."""
    notebooks: dict[int, list[str]] = defaultdict(list)
    for cell in cells:
        notebooks[cell.assignment_id].append(cell.notebook)
    names: dict[tuple[int, str, str], str] = {}
    for assignment in assignments:
        if assignment.id not in notebooks:
            continue
        try:
            release = current_release(session, assignment)
        except NotFound:
            continue
        for (notebook, grade_id), name in question_names(release, notebooks[assignment.id]).items():
            names[(assignment.id, notebook, grade_id)] = name
    return names


def _median_progress(rows: Sequence[LearnerRow], assignments: int) -> dict[int, float]:
    """Cohort id → the median share of the assignments passed by the cohort's learners (completed ones included)."""
    if not assignments:
        return {}
    by_cohort: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        by_cohort[row.cohort.id].append(row.passed / assignments)
    return {cohort_id: statistics.median(values) for cohort_id, values in by_cohort.items()}
