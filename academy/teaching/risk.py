"""Learners at risk of not finishing a course, for its instructor.

The learners are those holding a seat in a cohort of the course's track that is running now
(``starts_at <= now < ends_at``), taken from the gradebook's learner summaries
(:func:`academy.teaching.services.learner_summaries`, read from the kept cells) so that this list
and the gradebook never disagree on a learner's standing, progress or last activity.  A learner who completed the course
is never at risk.  Three rules, each giving a :class:`Reason`:

* **idle** — no lab session and no attempt in the course for ``idle_days`` days.  The clock starts
  at the latest of their last activity, the cohort's start and the time they asked for their seat
  (``Enrollment.requested_at``: the model keeps no separate time of the decision), so a learner
  who joined three days ago is not idle yet.  Detail: ``days`` (whole days idle) and
  ``ever_active`` (whether they ever did anything in the course).
* **stuck** — an autograded cell (not a written answer) scored below its maximum in
  ``failing_attempts`` or more scored attempts at one assignment since the learner last passed it
  (so failures followed by a pass are not stuck), as each learner's kept cell counts them
  (:func:`academy.teaching.cells.failing_streaks`).  One reason per such cell.  Detail:
  ``assignment_id``, ``notebook``, ``grade_id``, ``attempts`` (the failing attempts) and ``name``
  (the question as the current release names it; None without a release or a name).
* **behind** — the learner's progress (share of the course's active assignments passed) is below
  the median progress of their cohort's learners in the course by more than ``margin``.  Detail:
  ``progress`` and ``median``, both fractions of 1.

No translation here: the caller words the reasons.  Plain functions of a Session and plain values;
nothing is written (but this transaction's own kept cells, when it changed attempts).
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from academy.catalog.models import Assignment, Course
from academy.db import utcnow
from academy.enrollment.models import Cohort
from academy.errors import NotFound
from academy.grading.questions import question_names
from academy.grading.services import current_release
from academy.teaching import cells
from academy.teaching.models import GradebookCell
from academy.teaching.services import LearnerSummary, learner_summaries

IDLE = "idle"
STUCK = "stuck"
BEHIND = "behind"
_EPSILON = 1e-9  # scores and fractions are floats: 1.9999999999 of 2 points is full marks


class Reason(NamedTuple):
    """Why a learner is at risk: ``code`` is ``idle``, ``stuck`` or ``behind``; ``detail`` as the module says.

    A tuple, not a dataclass: a page of a large course makes tens of thousands of them.
    """

    code: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class RiskRow:
    """A learner at risk in one course, with every reason found (at least one)."""

    user: LearnerSummary  # who (``id``, ``name``, ``email``), as the gradebook sums them up
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
    found = _assess(session, course, cohort_id=cohort_id, now=now, idle_days=idle_days,
                    failing_attempts=failing_attempts, margin=margin, named=True)
    return [RiskRow(row, row.cohort, reasons, row.last_activity) for row, reasons in found]


def count_at_risk(session: Session, course: Course, *, now: dt.datetime | None = None, idle_days: int = 7,
                  failing_attempts: int = 3, margin: float = 0.25) -> int:
    """How many learners of ``course`` ``at_risk`` lists (the same rules, without naming anything)."""
    return len(_assess(session, course, cohort_id=None, now=now, idle_days=idle_days,
                       failing_attempts=failing_attempts, margin=margin, named=False))


def _assess(session: Session, course: Course, *, cohort_id: int | None, now: dt.datetime | None, idle_days: int,
            failing_attempts: int, margin: float, named: bool) -> list[tuple[LearnerSummary, tuple[Reason, ...]]]:
    """The learners at risk with their reasons, in ``at_risk``'s order.

    ``named``: stuck cells are read one by one and named; otherwise each stuck learner has one stand-in
    stuck reason (enough to count them).
    """
    now = now or utcnow()
    cells.settle(session)
    assignments = [a for a in course.assignments if a.active]
    learners = learner_summaries(session, course, cohort_id=cohort_id, assignments=assignments)
    running = [r for r in learners if r.cohort.starts_at <= now < r.cohort.ends_at]
    candidates = [r for r in running if r.completed_at is None]
    if not candidates:
        return []

    ids = [a.id for a in assignments]
    stuck_of: dict[int, list[_StuckCell]] = defaultdict(list)
    names: dict[tuple[int, str, str], str] = {}
    if named:
        stuck = _stuck_cells(session, ids, {r.user_id for r in candidates}, failing_attempts)
        names = _question_names(session, assignments, stuck)
        for cell in stuck:
            stuck_of[cell.user_id].append(cell)
    else:  # counting only: whether a learner is stuck at all, without reading which cells
        stuck_of.update((user_id, [_StuckCell(user_id, 0, "", "", failing_attempts)]) for user_id in session.scalars(
            select(GradebookCell.user_id).where(GradebookCell.assignment_id.in_(ids),
                                                GradebookCell.most_failing >= failing_attempts).distinct()))
    medians = _median_progress(running, len(assignments))
    position = {a.id: (a.position, a.id) for a in assignments}

    found: list[tuple[LearnerSummary, tuple[Reason, ...]]] = []
    for row in candidates:
        reasons: list[Reason] = []
        start = max(t for t in (row.last_activity, row.cohort.starts_at, row.requested_at) if t is not None)
        if now - start >= dt.timedelta(days=idle_days):
            reasons.append(Reason(IDLE, {"days": (now - start).days, "ever_active": row.last_activity is not None}))
        for cell in sorted(stuck_of.get(row.user_id, ()),
                           key=lambda c: (position.get(c.assignment_id, (0, 0)), c.notebook, c.grade_id)):
            reasons.append(Reason(STUCK, {
                "assignment_id": cell.assignment_id, "notebook": cell.notebook, "grade_id": cell.grade_id,
                "attempts": cell.attempts, "name": names.get((cell.assignment_id, cell.notebook, cell.grade_id)),
            }))
        if assignments:
            progress = row.passed / len(assignments)
            median = medians[row.cohort.id]
            if median - progress > margin + _EPSILON:
                reasons.append(Reason(BEHIND, {"progress": progress, "median": median}))
        if reasons:
            found.append((row, tuple(reasons)))
    found.sort(key=lambda pair: (-len(pair[1]), pair[0].name.lower(), pair[0].email))
    return found


def _stuck_cells(session: Session, assignment_ids: Sequence[int], user_ids: Collection[int],
                 failing_attempts: int) -> list[_StuckCell]:
    """The autograded cells each learner failed in ``failing_attempts`` or more attempts since last passing them.

    Read from the kept cells of ``assignment_ids``, which count each cell's failures since the last
    pass (``cells.failing_streaks``): one query, only the cells failed that often.
    """
    if not assignment_ids or not user_ids:
        return []
    found = []
    # As text, decoded here: faster than the driver's JSON decoding, thousands of rows at a time.
    for user_id, assignment_id, failing in session.execute(
            select(GradebookCell.user_id, GradebookCell.assignment_id, cast(GradebookCell.failing, Text)).where(
                GradebookCell.assignment_id.in_(assignment_ids), GradebookCell.most_failing >= failing_attempts)):
        if user_id not in user_ids or not failing:
            continue
        found.extend(_StuckCell(user_id, assignment_id, notebook, grade_id, n)
                     for notebook, grade_id, n in json.loads(failing) if n >= failing_attempts)
    return found


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


def _median_progress(rows: Sequence[LearnerSummary], assignments: int) -> dict[int, float]:
    """Cohort id → the median share of the assignments passed by the cohort's learners (completed ones included)."""
    if not assignments:
        return {}
    by_cohort: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        by_cohort[row.cohort.id].append(row.passed / assignments)
    return {cohort_id: statistics.median(values) for cohort_id, values in by_cohort.items()}
