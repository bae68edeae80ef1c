"""What course staff see: the courses they teach, what waits for them, and a course's gradebook.

The gradebook is one row per learner enrolled in a cohort of the course's track and one cell per
assignment.  Each cell is the learner's :class:`~academy.grading.standing.Standing`, built by the
same ``standing_from`` the learner's own pages use, so the gradebook and the dashboard never
disagree on a score, a deadline or a status.  It is built in a handful of queries for the whole
course (enrollments, attempts, the attempts waiting for hand grading, extensions, completions,
last lab sessions), never one per learner.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, load_only, raiseload

from academy.catalog.models import Assignment, Course, CourseInstructor
from academy.completion.models import Completion
from academy.db import utcnow
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.grading.models import CellScore, Extension, Submission, SubmissionStatus
from academy.grading.standing import Standing, effective_deadline, flag_unreviewed, standing_from
from academy.labs.models import LabSession
from academy.stats.export import Table
from academy.users.models import User

SEOUL = ZoneInfo("Asia/Seoul")
SCORED = (SubmissionStatus.graded, SubmissionStatus.learner_code_failed)
#: Cohorts that ended longer ago than this drop off the staff home (their gradebooks stay reachable).
RECENT_COHORTS = dt.timedelta(days=60)
_STANDING_COLUMNS = (Submission.id, Submission.public_id, Submission.assignment_id, Submission.user_id,
                     Submission.release_id, Submission.attempt, Submission.origin, Submission.submitted_at,
                     Submission.due_at, Submission.late_days, Submission.penalty_percent, Submission.status,
                     Submission.raw_score, Submission.score, Submission.max_score, Submission.flagged,
                     Submission.flag_review, Submission.graded_at)
SORTS = ("name", "progress", "activity", "cohort")
SHOWS = ("all", "missing", "waiting", "flagged", "completed", "not_completed")


def courses_taught(session: Session, user: User) -> list[Course]:
    """The active courses ``user`` manages: every one for an admin, the manifest's for an instructor."""
    query = select(Course).where(Course.active.is_(True)).order_by(Course.track_id, Course.position, Course.id)
    if not user.is_admin:
        if not user.is_instructor:
            return []
        query = query.join(CourseInstructor).where(func.lower(CourseInstructor.email) == user.email.lower())
    return list(session.scalars(query).unique())


@dataclass(frozen=True)
class CohortSummary:
    """A cohort of a taught course's track, with how many learners hold a seat in it."""

    cohort: Cohort
    enrolled: int
    state: str  # upcoming | running | ended


def cohorts_of(session: Session, courses: Sequence[Course], *, now: dt.datetime | None = None,
               recent_only: bool = True) -> dict[int, list[CohortSummary]]:
    """Track id → the cohorts of the courses' tracks (newest first), with their enrolled counts."""
    now = now or utcnow()
    track_ids = {c.track_id for c in courses}
    if not track_ids:
        return {}
    query = select(Cohort).where(Cohort.track_id.in_(track_ids)).order_by(Cohort.starts_at.desc(), Cohort.id)
    if recent_only:
        query = query.where(Cohort.ends_at >= now - RECENT_COHORTS)
    cohorts = list(session.scalars(query))
    counts = dict(session.execute(
        select(Enrollment.cohort_id, func.count()).where(
            Enrollment.cohort_id.in_([c.id for c in cohorts]), Enrollment.status == EnrollmentStatus.enrolled)
        .group_by(Enrollment.cohort_id)).all()) if cohorts else {}
    found: dict[int, list[CohortSummary]] = defaultdict(list)
    for cohort in cohorts:
        state = "upcoming" if cohort.starts_at > now else "ended" if cohort.ends_at < now else "running"
        found[cohort.track_id].append(CohortSummary(cohort, counts.get(cohort.id, 0), state))
    return dict(found)


@dataclass(frozen=True)
class WaitingItem:
    """A submission that waits for staff: written answers to grade by hand, or a grader's flag."""

    submission: Submission
    cells: int  # written answers still without points (0 for a flag)


@dataclass(frozen=True)
class Waiting:
    """What waits for course staff, newest first, with the full counts."""

    to_grade: list[WaitingItem]
    to_grade_count: int
    flagged: list[WaitingItem]
    flagged_count: int

    @property
    def empty(self) -> bool:
        return not (self.to_grade_count or self.flagged_count)


def waiting_queries(course_ids: Sequence[int]) -> tuple[Select[Any], Select[Any]]:
    """What waits for staff in ``course_ids``, unordered: (scored attempts with the number of their written
    answers not yet graded, attempts the grader flagged that nobody has reviewed).  Shared by the staff
    home and the grading queue (:mod:`academy.teaching.queue`) so the two never disagree."""
    in_courses = Submission.assignment_id.in_(select(Assignment.id).where(Assignment.course_id.in_(course_ids)))
    open_cells = (select(CellScore.submission_id, func.count().label("cells"))
                  .where(CellScore.manual.is_(True), CellScore.score.is_(None))
                  .group_by(CellScore.submission_id).subquery())
    graded = (select(Submission, open_cells.c.cells).join(open_cells, open_cells.c.submission_id == Submission.id)
              .where(in_courses, Submission.status.in_(SCORED)))
    flagged = select(Submission).where(in_courses, Submission.flagged.is_(True), Submission.flag_review.is_(None))
    return graded, flagged


def waiting_work(session: Session, course_ids: Sequence[int], *, limit: int = 20) -> Waiting:
    """Submissions of the courses with written answers not yet graded, and those the grader flagged."""
    if not course_ids:
        return Waiting([], 0, [], 0)
    graded, flagged_query = waiting_queries(course_ids)
    to_grade_count = session.scalar(select(func.count()).select_from(graded.subquery())) or 0
    to_grade = [WaitingItem(s, n) for s, n in session.execute(
        graded.order_by(Submission.submitted_at, Submission.id).limit(limit))]
    flagged_count = session.scalar(select(func.count()).select_from(flagged_query.subquery())) or 0
    flagged = [WaitingItem(s, 0) for s in session.scalars(
        flagged_query.order_by(Submission.submitted_at.desc(), Submission.id.desc()).limit(limit))]
    return Waiting(to_grade, to_grade_count, flagged, flagged_count)


@dataclass(frozen=True)
class Cell:
    """One learner's standing on one assignment, with what the gradebook adds to it."""

    standing: Standing
    attempts: int
    late_days: int  # of the attempt that counts
    flagged: bool  # some attempt was flagged by the grader and waits for staff to decide

    @property
    def submitted(self) -> bool:
        return self.attempts > 0


@dataclass(frozen=True)
class LearnerRow:
    """A learner of the course: who, in which cohort, and a cell per assignment."""

    user: User
    cohort: Cohort
    cells: dict[int, Cell]
    completed_at: dt.datetime | None
    last_activity: dt.datetime | None  # newest attempt or lab session in the course

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cells.values() if c.standing.status == "passed")

    @property
    def missing(self) -> list[int]:
        """Assignments (ids) without any attempt."""
        return [aid for aid, c in self.cells.items() if not c.submitted]

    @property
    def waiting(self) -> bool:
        return any(c.standing.status == "waiting_for_instructor" for c in self.cells.values())

    @property
    def flagged(self) -> bool:
        return any(c.flagged for c in self.cells.values())


@dataclass(frozen=True)
class Gradebook:
    """A course's learners × assignments, as filtered and sorted for the page."""

    course: Course
    assignments: list[Assignment]
    rows: list[LearnerRow]
    total: int  # learners before the filter
    cohort: Cohort | None = None
    counts: dict[str, int] = field(default_factory=dict)  # per ``SHOWS`` entry, before the filter


def _learners(session: Session, course: Course, cohort_id: int | None) -> list[tuple[User, Cohort]]:
    query = (select(User, Cohort).join(Enrollment, Enrollment.user_id == User.id)
             .join(Cohort, Cohort.id == Enrollment.cohort_id)
             .where(Cohort.track_id == course.track_id, Enrollment.status == EnrollmentStatus.enrolled))
    if cohort_id is not None:
        query = query.where(Cohort.id == cohort_id)
    return list(session.execute(query))


def build_gradebook(session: Session, course: Course, *, cohort_id: int | None = None, show: str = "all",
                    search: str = "", sort: str = "name", descending: bool = False,
                    now: dt.datetime | None = None) -> Gradebook:
    """The course's gradebook, optionally for one cohort, filtered by ``show`` and ``search``.

    ``sort``: one of ``SORTS`` or ``a<assignment id>`` (that assignment's score).
    """
    now = now or utcnow()
    assignments = [a for a in course.assignments if a.active]
    ids = [a.id for a in assignments]
    learners = _learners(session, course, cohort_id)
    user_ids = [u.id for u, _ in learners]
    by_learner: dict[tuple[int, int], list[Submission]] = defaultdict(list)
    waiting_ids: set[int] = set()
    extensions: dict[tuple[int, int], Extension] = {}
    completed: dict[int, dt.datetime] = {}
    lab_last: dict[int, dt.datetime] = {}
    if user_ids and ids:
        learner_ids = select(Enrollment.user_id).join(Cohort, Cohort.id == Enrollment.cohort_id).where(
            Cohort.track_id == course.track_id, Enrollment.status == EnrollmentStatus.enrolled)
        if cohort_id is not None:
            learner_ids = learner_ids.where(Cohort.id == cohort_id)
        theirs = (Submission.assignment_id.in_(ids), Submission.user_id.in_(learner_ids))
        # The columns a standing reads, no more: the JSON columns (problems, flag reasons, graded
        # notebooks) cost more to decode than everything else at 100,000 attempts.
        for submission in session.scalars(select(Submission).where(*theirs).options(
                load_only(*_STANDING_COLUMNS, raiseload=True), raiseload(Submission.cells),
                raiseload(Submission.files))):
            by_learner[(submission.user_id, submission.assignment_id)].append(submission)
        waiting_ids = set(session.scalars(
            select(CellScore.submission_id).join(Submission, Submission.id == CellScore.submission_id)
            .where(*theirs, CellScore.manual.is_(True), CellScore.score.is_(None)).distinct()))
        for extension in session.scalars(select(Extension).where(
                Extension.assignment_id.in_(ids), Extension.user_id.in_(learner_ids))):
            extensions[(extension.user_id, extension.assignment_id)] = extension
        completed = dict(session.execute(select(Completion.user_id, Completion.completed_at).where(
            Completion.course_id == course.id, Completion.withdrawn_at.is_(None),
            Completion.user_id.in_(learner_ids))).all())
        lab_last = dict(session.execute(select(LabSession.user_id, func.max(LabSession.queued_at)).where(
            LabSession.course_id == course.id, LabSession.user_id.in_(learner_ids))
            .group_by(LabSession.user_id)).all())

    def waiting(submission: Submission) -> bool:
        return submission.id in waiting_ids or flag_unreviewed(submission)

    rows = []
    for user, cohort in learners:
        cells = {}
        for assignment in assignments:
            own = by_learner.get((user.id, assignment.id), [])
            extension = extensions.get((user.id, assignment.id))
            latest = max(own, key=lambda s: s.attempt).due_at if own else None
            due = effective_deadline(assignment, cohort, extension, fallback=latest)
            standing = standing_from(assignment, own, due=due, extended=extension is not None, now=now,
                                     staff=True, waiting=waiting)
            counted = standing.counted
            cells[assignment.id] = Cell(standing, len(own), counted.submission.late_days if counted else 0,
                                        any(flag_unreviewed(s) for s in own))
        times = [s.submitted_at for a in assignments for s in by_learner.get((user.id, a.id), [])]
        if user.id in lab_last:
            times.append(lab_last[user.id])
        rows.append(LearnerRow(user, cohort, cells, completed.get(user.id), max(times, default=None)))
    counts = {name: sum(1 for r in rows if _shown(r, name)) for name in SHOWS}
    needle = search.strip().lower()
    shown = [r for r in rows if _shown(r, show)
             and (not needle or needle in r.user.name.lower() or needle in r.user.email.lower())]
    shown.sort(key=_sort_key(sort), reverse=descending)
    cohort = next((c for _, c in learners if c.id == cohort_id), None) if cohort_id is not None else None
    if cohort_id is not None and cohort is None:
        cohort = session.get(Cohort, cohort_id)
    return Gradebook(course, assignments, shown, len(rows), cohort, counts)


def _shown(row: LearnerRow, show: str) -> bool:
    if show == "missing":
        return bool(row.missing)
    if show == "waiting":
        return row.waiting
    if show == "flagged":
        return row.flagged
    if show == "completed":
        return row.completed_at is not None
    if show == "not_completed":
        return row.completed_at is None
    return True


def _sort_key(sort: str):  # noqa: ANN202 - a key function for list.sort
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    if sort.startswith("a") and sort[1:].isdigit():
        assignment_id = int(sort[1:])

        def by_score(row: LearnerRow) -> tuple[float, str]:
            cell = row.cells.get(assignment_id)
            score = cell.standing.score if cell is not None else None
            return (-1.0 if score is None else score, row.user.name)
        return by_score
    if sort == "progress":
        return lambda row: (row.passed, len(row.cells) - len(row.missing), row.user.name)
    if sort == "activity":
        return lambda row: (row.last_activity or epoch, row.user.name)
    if sort == "cohort":
        return lambda row: (row.cohort.starts_at, row.cohort.name, row.user.name)
    return lambda row: (row.user.name.lower(), row.user.email)


def gradebook_table(book: Gradebook, *, locale: str, header: dict[str, str], title: str,
                    status_label: Callable[[str], str]) -> Table:
    """The gradebook as an exportable table: a learner per row, score, status, attempts and late days per assignment.

    ``header`` holds the translated column names (keys ``learner``, ``email``, ``company``, ``cohort``,
    ``score``, ``status``, ``attempts``, ``late_days``, ``passed``, ``completed``); ``status_label``
    names a standing.  Scores are numbers (empty when there is none), dates are Seoul dates.
    """
    columns = [header["learner"], header["email"], header["company"], header["cohort"]]
    for assignment in book.assignments:
        name = assignment.title(locale)
        columns += [f"{name} · {header[key]}" for key in ("score", "status", "attempts", "late_days")]
    columns += [header["passed"], header["completed"]]
    rows = []
    for row in book.rows:
        values: list[object] = [row.user.name, row.user.email, row.user.company.name if row.user.company else "",
                                row.cohort.name]
        for assignment in book.assignments:
            cell = row.cells[assignment.id]
            score = cell.standing.score
            values += [None if score is None else round(score, 2), status_label(cell.standing.status),
                       cell.attempts, cell.late_days]
        values += [row.passed, row.completed_at.astimezone(SEOUL).date().isoformat() if row.completed_at else ""]
        rows.append(values)
    stem = f"gradebook-{book.course.slug}" + (f"-cohort{book.cohort.id}" if book.cohort else "")
    return Table(stem, title, columns, rows)


def learner_ids(session: Session, cohort: Cohort) -> list[int]:
    """The ids of the learners holding a seat in ``cohort``."""
    return list(session.scalars(select(Enrollment.user_id).where(
        Enrollment.cohort_id == cohort.id, Enrollment.status == EnrollmentStatus.enrolled)))
