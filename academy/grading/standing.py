"""Where a learner stands on an assignment: the one place that decides deadline, score and status.

Every page that shows a learner's deadline, score or status (the dashboard, the assignment
page and its attempt history, the submission page, its status JSON and the feedback link)
asks this module, so they cannot disagree.  The rules:

* **Deadline** — the learner's personal extension when one was granted, else the cohort's
  (``services.cohort_deadline``: start + ``due_days`` at 23:59 KST, capped at the cohort's
  end).  ``Submission.due_at`` is only what applied when the attempt was made (for its late
  penalty); it is never shown as the deadline.  A learner no longer in a cohort of the course
  keeps an extension if any, else the deadline stored on their latest attempt.
* **Held** — with ``hidden_tests = "after_deadline"`` the hidden tests' results, the total and
  the detailed feedback are held until the effective deadline passes.  Staff see everything.
* **Attempt that counts** — ``score_policy`` ``best`` (highest score) or ``last`` (newest
  attempt with a score), as ``deadlines.counting_score``; an attempt without a score (queued,
  grading, grader error) never counts.  While results are held, "best" is judged on the
  visible scores, so which attempt counts gives nothing of the hidden tests away.
* **Status** — one of ``STATUSES``:

  ``not_started``             no attempt yet;
  ``grading``                 the newest attempt is queued or being graded;
  ``grader_error``            grading failed on our side and no attempt has a score;
  ``held``                    an attempt counts, but its result waits for the deadline;
  ``waiting_for_instructor``  the counted attempt has written answers not yet graded by hand, or
                              the grader flagged it and staff have not confirmed or rejected it;
  ``passed`` / ``not_passed`` the counted attempt's final score against the course's pass
                              mark (``passing_rule.min_score_percent``, 60 by default).

  "Passed" is decided on the final score only, never on a score whose hidden part is held.

Plain functions of plain values; ``now`` is always injectable.  The batch form
(``learner_standings``) loads a learner's attempts, cells and extensions for many
assignments in three queries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from academy.catalog.models import Assignment
from academy.db import utcnow
from academy.enrollment.models import Cohort
from academy.errors import AcademyError
from academy.grading import deadlines
from academy.grading.models import CellScore, Extension, Submission, SubmissionStatus
from academy.grading.services import cohort_deadline, learner_cohort
from academy.users.models import User

STATUSES = ("not_started", "grading", "grader_error", "held", "waiting_for_instructor", "passed", "not_passed")
DEFAULT_PASS_MARK = 60.0


def effective_deadline(assignment: Assignment, cohort: Cohort | None, extension: Extension | None,
                       fallback: dt.datetime | None = None) -> dt.datetime | None:
    """The deadline that applies to one learner: the extension, else the cohort's, else ``fallback``."""
    if extension is not None:
        return extension.due_at
    if cohort is not None:
        return cohort_deadline(assignment, cohort)
    return fallback


def course_pass_mark(passing_rule: dict[str, Any] | None) -> float:
    """A course's pass mark in percent from its ``passing_rule`` (``min_score_percent``, 60 by default)."""
    return float((passing_rule or {}).get("min_score_percent", DEFAULT_PASS_MARK))


def pass_mark(assignment: Assignment) -> float:
    """The pass mark of ``assignment``'s course, in percent."""
    return course_pass_mark(assignment.course.passing_rule)


def hidden_results_held(assignment: Assignment, due: dt.datetime | None, now: dt.datetime, *,
                        staff: bool = False) -> bool:
    """Whether hidden-test results (and so the total) are held from the learner now."""
    return (not staff and assignment.policy("hidden_tests") == "after_deadline"
            and due is not None and now < due)


@dataclass(frozen=True)
class CellView:
    """One graded cell as the viewer may see it now."""

    cell: CellScore
    name: str
    shown: bool  # its points may be shown now
    waiting: bool  # a written answer the instructor has not graded yet
    held: bool  # hidden-test results that wait for the deadline
    message: str | None  # the failure message the viewer may read
    override_reason: str | None = None  # staff set this autograded cell's points by hand, and why

    @property
    def visible_passed(self) -> bool | None:
        """Whether the tests the learner can see passed (None: not recorded or not a test)."""
        return self.cell.visible_passed


@dataclass(frozen=True)
class AttemptStanding:
    """One attempt's figures for the history table and the submission page."""

    submission: Submission
    held: bool
    counts: bool
    visible_score: float | None  # points of the cells the viewer may see now, after the late penalty
    visible_max: float  # what those cells could give (0: nothing to show before the deadline)
    final_score: float | None  # the total, None while held or when there is no score
    max_score: float
    waiting: bool  # has written answers not yet graded by hand

    @property
    def has_score(self) -> bool:
        """True when grading produced a score (a grader error never does)."""
        return self.submission.status.has_score

    @property
    def in_progress(self) -> bool:
        """True while the attempt is queued or being graded."""
        return not self.submission.status.finished


@dataclass(frozen=True)
class Standing:
    """A learner's standing on one assignment, as every page shows it."""

    assignment: Assignment
    due_at: dt.datetime | None
    extended: bool
    held: bool
    status: str
    pass_mark: float
    now: dt.datetime
    attempts: list[AttemptStanding] = field(default_factory=list)  # newest first

    @property
    def counted(self) -> AttemptStanding | None:
        """The attempt that counts, if any."""
        return next((a for a in self.attempts if a.counts), None)

    @property
    def score(self) -> float | None:
        """The final score that counts; None while held, waiting for grading, or without attempts."""
        counted = self.counted
        return None if counted is None else counted.final_score

    @property
    def max_score(self) -> float:
        """The maximum of the counted attempt, else the assignment's."""
        counted = self.counted
        return counted.max_score if counted is not None else float(self.assignment.max_score or 0.0)

    @property
    def overdue(self) -> bool:
        """The deadline passed without any attempt."""
        return self.status == "not_started" and self.due_at is not None and self.due_at < self.now

    def attempt(self, submission: Submission) -> AttemptStanding:
        """The figures of one of this learner's attempts."""
        return next(a for a in self.attempts if a.submission is submission
                    or (submission.id is not None and a.submission.id == submission.id))

    def as_json(self) -> dict[str, object]:
        """The facts pages show, as JSON (the status poll uses it)."""
        counted = self.counted
        return {
            "standing": self.status,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "held": self.held,
            "score": self.score,
            "max_score": self.max_score,
            "counted_attempt": counted.submission.attempt if counted else None,
        }


def _waiting(submission: Submission) -> bool:
    return submission.status.has_score and (flag_unreviewed(submission)
                                             or any(c.manual and c.score is None for c in submission.cells))


def flag_unreviewed(submission: Submission) -> bool:
    """The grader flagged the attempt and staff have not confirmed or rejected its score yet."""
    return bool(submission.flagged) and submission.flag_review is None


def _attempt(submission: Submission, *, held: bool, counts: bool,
             waiting: Callable[[Submission], bool] = _waiting) -> AttemptStanding:
    maximum = float(submission.max_score or submission.assignment.max_score or 0.0)
    if not submission.status.has_score:
        return AttemptStanding(submission, held, counts, None, 0.0, None, maximum, False)
    if held:
        # Points shown now: cells without hidden tests, written answers once graded by hand.
        shown = [c for c in submission.cells if not c.hidden and c.score is not None]
        visible = deadlines.apply_penalty(sum(c.score or 0.0 for c in shown), submission.penalty_percent)
        visible_max = sum(c.max_score for c in shown)
    else:
        visible, visible_max = submission.score, maximum
    final = None if held else submission.score
    return AttemptStanding(submission, held, counts, visible, visible_max, final, maximum, waiting(submission))


def _counted(rows: Sequence[AttemptStanding], score_policy: str) -> AttemptStanding | None:
    """The attempt that counts, judged on the scores the viewer may see now.

    While hidden results are held that is the visible score, so that which attempt counts
    never gives away how the hidden tests went; once released, the final score.
    """
    scored = [(r, r.visible_score if r.held else r.final_score) for r in rows if r.has_score]
    scored = [(r, score) for r, score in scored if score is not None]
    if not scored:
        return None
    if score_policy == "last":
        return max(scored, key=lambda pair: pair[0].submission.attempt)[0]
    best = deadlines.counting_score([(r.submission.attempt, score) for r, score in scored], "best")
    return min((r for r, score in scored if score == best), key=lambda r: r.submission.attempt)


def standing_from(assignment: Assignment, submissions: Iterable[Submission], *, due: dt.datetime | None,
                  extended: bool = False, now: dt.datetime, staff: bool = False,
                  waiting: Callable[[Submission], bool] | None = None) -> Standing:
    """The standing from already loaded attempts (with their cells) and the effective deadline.

    ``staff``: the viewer is the course's staff, who see hidden results before the deadline.
    ``waiting``: whether an attempt has written answers not yet graded by hand, for a caller that
    found out in one query for many learners instead of loading every attempt's cells (only
    when nothing is held: held figures need the cells themselves).
    """
    attempts = sorted(submissions, key=lambda s: s.attempt, reverse=True)
    held = hidden_results_held(assignment, due, now, staff=staff)
    if waiting is None or held:
        waiting = _waiting
    rows = [_attempt(s, held=held, counts=False, waiting=waiting) for s in attempts]
    chosen = _counted(rows, assignment.policy("score_policy"))
    rows = [replace(r, counts=True) if r is chosen else r for r in rows]
    counted = chosen.submission if chosen is not None else None
    mark = pass_mark(assignment)
    if not attempts:
        status = "not_started"
    elif not attempts[0].status.finished:
        status = "grading"
    elif counted is None:
        status = "grader_error" if attempts[0].status is SubmissionStatus.grader_error else "not_passed"
    elif held:
        status = "held"
    elif waiting(counted):
        status = "waiting_for_instructor"
    else:
        maximum = float(counted.max_score or assignment.max_score or 0.0)
        passed = maximum > 0 and 100.0 * float(counted.score or 0.0) / maximum >= mark
        status = "passed" if passed else "not_passed"
    return Standing(assignment, due, extended, held, status, mark, now, rows)


def learner_standing(session: Session, assignment: Assignment, learner: User, *, cohort: Cohort | None = None,
                     now: dt.datetime | None = None, staff: bool = False) -> Standing:
    """``learner``'s standing on ``assignment``.

    ``cohort``: the learner's cohort when the caller has it; otherwise it is looked up (a learner
    no longer enrolled has none).  ``staff``: the viewer is the course's staff.
    """
    return learner_standings(session, learner, [assignment], cohort=cohort, now=now, staff=staff,
                             look_up_cohort=cohort is None)[assignment.id]


def learner_standings(session: Session, learner: User, assignments: Sequence[Assignment], *,
                      cohort: Cohort | None, now: dt.datetime | None = None, staff: bool = False,
                      look_up_cohort: bool = False) -> dict[int, Standing]:
    """Standings of one learner on many assignments, by assignment id, without a query per assignment.

    ``cohort`` is the cohort whose dates apply (the dashboard knows it per track); with
    ``look_up_cohort`` each assignment's cohort is found through ``learner_cohort``.
    """
    now = now or utcnow()
    if not assignments:
        return {}
    ids = [a.id for a in assignments]
    submissions = session.scalars(
        select(Submission).where(Submission.user_id == learner.id, Submission.assignment_id.in_(ids))
        .options(selectinload(Submission.cells))
    ).all()
    extensions = {e.assignment_id: e for e in session.scalars(
        select(Extension).where(Extension.user_id == learner.id, Extension.assignment_id.in_(ids)))}
    by_assignment: dict[int, list[Submission]] = {i: [] for i in ids}
    for submission in submissions:
        by_assignment[submission.assignment_id].append(submission)
    result = {}
    for assignment in assignments:
        own = by_assignment[assignment.id]
        applies = _cohort_of(session, assignment, learner) if look_up_cohort else cohort
        latest = max(own, key=lambda s: s.attempt).due_at if own else None
        extension = extensions.get(assignment.id)
        due = effective_deadline(assignment, applies, extension, fallback=latest)
        result[assignment.id] = standing_from(assignment, own, due=due, extended=extension is not None,
                                              now=now, staff=staff)
    return result


def _cohort_of(session: Session, assignment: Assignment, learner: User) -> Cohort | None:
    try:
        return learner_cohort(session, assignment, learner)
    except AcademyError:
        return None


def cell_views(submission: Submission, *, held: bool) -> list[CellView]:
    """The submission's graded cells as the viewer may see them, named as the notebook names them.

    ``held``: hidden-test results wait for the deadline (the standing's ``held``).  The visible
    tests' outcome is always shown; their failure message is ``visible_error``, or ``error`` for
    a cell without hidden tests (whose error is all visible).  A hidden cell's own ``error`` is
    shown only once its results are released.
    """
    from flask_babel import gettext as _

    from academy.grading.questions import question_names

    release = submission.release
    names = question_names(release, [c.notebook for c in submission.cells]) if release is not None else {}
    reasons = {(o.notebook, o.grade_id): o.reason for o in submission.overrides} \
        if any(c.overridden for c in submission.cells) else {}
    views = []
    for number, cell in enumerate(submission.cells, start=1):
        name = names.get((cell.notebook, cell.grade_id)) or _("Question %(n)d", n=number)
        cell_held = held and cell.hidden
        waiting = cell.manual and cell.score is None
        message = None
        if cell.visible_passed is False:
            message = cell.visible_error or (None if cell.hidden else cell.error)
        elif not cell_held and not waiting:
            message = cell.error
        views.append(CellView(cell, name, shown=not cell_held and not waiting, waiting=waiting,
                              held=cell_held, message=message,
                              override_reason=reasons.get((cell.notebook, cell.grade_id)) if cell.overridden else None))
    return views
