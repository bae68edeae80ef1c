"""What course staff see: the courses they teach, what waits for them, and a course's gradebook.

The gradebook is one row per learner enrolled in a cohort of the course's track and one cell per
assignment.  Each cell is the learner's kept cell (:mod:`academy.teaching.cells`), computed by the
same ``standing_from`` the learner's own pages use, so the gradebook and the dashboard never
disagree on a score or a status; the deadline is the one that applies to the learner.  Filters,
sorts and counts read one summary per learner (one query over the kept cells, completions and lab
sessions); only the page's learners have their cells read, and no attempt is read at all.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session, selectinload

from academy.catalog.models import Assignment, Course, CourseInstructor
from academy.completion.models import Completion
from academy.db import utcnow
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.grading.models import CellScore, Extension, Submission, SubmissionStatus
from academy.grading.standing import STATUSES, effective_deadline
from academy.labs.models import LabSession
from academy.stats.export import Table
from academy.teaching import cells
from academy.teaching.models import GradebookCell
from academy.users.models import User

SEOUL = ZoneInfo("Asia/Seoul")
SCORED = (SubmissionStatus.graded, SubmissionStatus.learner_code_failed)
#: Cohorts that ended longer ago than this drop off the staff home (their gradebooks stay reachable).
RECENT_COHORTS = dt.timedelta(days=60)
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
    listed = (selectinload(Submission.user), selectinload(Submission.assignment))  # the home names both
    to_grade = [WaitingItem(s, n) for s, n in session.execute(
        graded.order_by(Submission.submitted_at, Submission.id).limit(limit).options(*listed))]
    flagged_count = session.scalar(select(func.count()).select_from(flagged_query.subquery())) or 0
    flagged = [WaitingItem(s, 0) for s in session.scalars(
        flagged_query.order_by(Submission.submitted_at.desc(), Submission.id.desc()).limit(limit).options(*listed))]
    return Waiting(to_grade, to_grade_count, flagged, flagged_count)


#: Learners shown per page of the gradebook.
PER_PAGE = 100


@dataclass(frozen=True)
class Cell:
    """One learner's standing on one assignment, as the gradebook shows it (from the kept cell).

    The same figures as the learner's staff standing (``grading.standing.standing_from(...,
    staff=True)``), which computed the kept cell; ``due_at`` is the deadline that applies to them.
    """

    status: str
    score: float | None  # the final score of the attempt that counts
    max_score: float  # of the attempt that counts, else the assignment's
    attempts: int
    late_days: int  # of the attempt that counts
    flagged: bool  # some attempt was flagged by the grader and waits for staff to decide
    due_at: dt.datetime | None
    now: dt.datetime

    @property
    def submitted(self) -> bool:
        return self.attempts > 0

    @property
    def overdue(self) -> bool:
        """The deadline passed without any attempt."""
        return self.status == "not_started" and self.due_at is not None and self.due_at < self.now


class LearnerSummary(NamedTuple):
    """A learner of the course over all its active assignments: what the filters, sorts and counts read.

    A tuple, not a dataclass: one per learner of the course on every request.
    """

    user_id: int
    name: str
    email: str
    cohort: Cohort
    requested_at: dt.datetime  # when they asked for the seat they hold
    completed_at: dt.datetime | None
    last_activity: dt.datetime | None  # newest attempt or lab session in the course
    passed: int  # assignments passed
    submitted: int  # assignments with at least one attempt
    waiting: bool  # some counted attempt waits for staff (written answers, or a flag)
    flagged: bool  # some attempt's flag waits for staff

    @property
    def id(self) -> int:
        """The learner's user id: a summary reads like the user where ``id``, ``name`` and ``email`` are all needed."""
        return self.user_id


@dataclass(frozen=True)
class LearnerRow:
    """A learner of the course as a gradebook row: who, in which cohort, and a cell per assignment."""

    user: User
    cohort: Cohort
    cells: dict[int, Cell]
    completed_at: dt.datetime | None
    last_activity: dt.datetime | None  # newest attempt or lab session in the course

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cells.values() if c.status == "passed")

    @property
    def missing(self) -> list[int]:
        """Assignments (ids) without any attempt."""
        return [aid for aid, c in self.cells.items() if not c.submitted]

    @property
    def waiting(self) -> bool:
        return any(c.status == "waiting_for_instructor" for c in self.cells.values())

    @property
    def flagged(self) -> bool:
        return any(c.flagged for c in self.cells.values())


@dataclass(frozen=True)
class Gradebook:
    """A course's learners × assignments, filtered and sorted over every learner; ``rows`` is one page of them."""

    course: Course
    assignments: list[Assignment]
    rows: list[LearnerRow]
    total: int  # learners before the filter
    shown: int = 0  # learners the filter keeps (every page together)
    page: int = 1
    pages: int = 1
    cohort: Cohort | None = None
    counts: dict[str, int] = field(default_factory=dict)  # per ``SHOWS`` entry, before the filter


def learner_summaries(session: Session, course: Course, *, cohort_id: int | None = None,
                      assignments: Sequence[Assignment] | None = None) -> list[LearnerSummary]:
    """Every learner enrolled in a cohort of the course's track (or in cohort ``cohort_id``), summed up.

    One query over the kept cells (:mod:`academy.teaching.cells`) of the course's active
    assignments (or ``assignments``), the learners' completions and their lab sessions; no attempt is read.
    """
    if assignments is None:
        assignments = [a for a in course.assignments if a.active]
    ids = [a.id for a in assignments] or [-1]
    summed = (select(GradebookCell.user_id,
                     func.sum(case((GradebookCell.status == "passed", 1), else_=0)).label("passed"),
                     func.count().label("submitted"),
                     func.max(case((GradebookCell.status == "waiting_for_instructor", 1), else_=0)).label("waiting"),
                     func.max(case((GradebookCell.flag_unreviewed.is_(True), 1), else_=0)).label("flagged"),
                     func.max(GradebookCell.last_submitted_at).label("last_submitted_at"))
              .where(GradebookCell.assignment_id.in_(ids)).group_by(GradebookCell.user_id).subquery())
    labs = (select(LabSession.user_id, func.max(LabSession.queued_at).label("at"))
            .where(LabSession.course_id == course.id).group_by(LabSession.user_id).subquery())
    completions = (select(Completion.user_id, Completion.completed_at)
                   .where(Completion.course_id == course.id, Completion.withdrawn_at.is_(None)).subquery())
    query = (select(User.id, User.name, User.email, Enrollment.cohort_id, Enrollment.requested_at,
                    completions.c.completed_at, summed.c.passed, summed.c.submitted, summed.c.waiting, summed.c.flagged,
                    summed.c.last_submitted_at, labs.c.at)
             .join(Enrollment, Enrollment.user_id == User.id)
             .join(Cohort, Cohort.id == Enrollment.cohort_id)
             .outerjoin(summed, summed.c.user_id == User.id)
             .outerjoin(labs, labs.c.user_id == User.id)
             .outerjoin(completions, completions.c.user_id == User.id)
             .where(Cohort.track_id == course.track_id, Enrollment.status == EnrollmentStatus.enrolled))
    if cohort_id is not None:
        query = query.where(Cohort.id == cohort_id)
    rows = session.execute(query).all()
    cohorts = {c.id: c for c in session.scalars(select(Cohort).where(
        Cohort.id.in_(sorted({r.cohort_id for r in rows}))))} if rows else {}
    found = []
    for (user_id, name, email, cohort_id, requested_at, completed_at, passed, submitted, waiting, flagged,
         submitted_at, lab_at) in rows:
        last = submitted_at if lab_at is None or (submitted_at is not None and submitted_at > lab_at) else lab_at
        found.append(LearnerSummary(user_id, name, email, cohorts[cohort_id], requested_at, completed_at, last,
                                    int(passed or 0), int(submitted or 0), bool(waiting), bool(flagged)))
    return found


def build_gradebook(session: Session, course: Course, *, cohort_id: int | None = None, show: str = "all",
                    search: str = "", sort: str = "name", descending: bool = False, page: int = 1,
                    per_page: int | None = PER_PAGE, now: dt.datetime | None = None) -> Gradebook:
    """The course's gradebook, optionally for one cohort, filtered by ``show`` and ``search``, one page of it.

    ``sort``: one of ``SORTS`` or ``a<assignment id>`` (that assignment's score).  The filter, the
    order and the counts cover every learner (from their summaries); cells are read for the page's
    learners only (``per_page`` None: every learner the filter keeps, as the exports want).
    ``page`` out of range shows the last page.
    """
    now = now or utcnow()
    cells.settle(session)
    assignments = [a for a in course.assignments if a.active]
    learners = learner_summaries(session, course, cohort_id=cohort_id, assignments=assignments)
    counts = {name: sum(1 for r in learners if _shown(r, name, len(assignments))) for name in SHOWS}
    needle = search.strip().lower()
    chosen = [r for r in learners if _shown(r, show, len(assignments))
              and (not needle or needle in r.name.lower() or needle in r.email.lower())]
    scores: dict[int, float | None] = {}
    if sort.startswith("a") and sort[1:].isdigit() and int(sort[1:]) in {a.id for a in assignments}:
        scores = dict(session.execute(select(GradebookCell.user_id, GradebookCell.score).where(
            GradebookCell.assignment_id == int(sort[1:]))).all())
    chosen.sort(key=_sort_key(sort, len(assignments), scores), reverse=descending)
    pages = max(1, -(-len(chosen) // per_page)) if per_page else 1
    page = min(max(page, 1), pages)
    window = chosen[(page - 1) * per_page:page * per_page] if per_page else chosen
    rows = _rows(session, assignments, window, now)
    cohort = None
    if cohort_id is not None:
        cohort = next((r.cohort for r in learners if r.cohort.id == cohort_id), None) or session.get(Cohort, cohort_id)
    return Gradebook(course, assignments, rows, len(learners), len(chosen), page, pages, cohort, counts)


def _rows(session: Session, assignments: Sequence[Assignment], learners: Sequence[LearnerSummary],
          now: dt.datetime) -> list[LearnerRow]:
    """The gradebook rows of ``learners``, in their order: their kept cells, deadlines and extensions."""
    if not learners:
        return []
    user_ids = [r.user_id for r in learners]
    ids = [a.id for a in assignments] or [-1]
    users: dict[int, User] = {}
    kept: dict[tuple[int, int], Any] = {}  # rows of the kept cells' columns, not objects: thousands of them
    extensions: dict[tuple[int, int], dt.datetime] = {}
    for start in range(0, len(user_ids), 1000):
        chunk = user_ids[start:start + 1000]
        users.update((u.id, u) for u in session.scalars(
            select(User).where(User.id.in_(chunk)).options(selectinload(User.company))))
        kept.update(((c.user_id, c.assignment_id), c) for c in session.execute(select(
            GradebookCell.user_id, GradebookCell.assignment_id, GradebookCell.status, GradebookCell.score,
            GradebookCell.max_score, GradebookCell.attempts, GradebookCell.late_days, GradebookCell.flag_unreviewed)
            .where(GradebookCell.user_id.in_(chunk), GradebookCell.assignment_id.in_(ids))))
        extensions.update(((u, a), due) for u, a, due in session.execute(
            select(Extension.user_id, Extension.assignment_id, Extension.due_at).where(
                Extension.user_id.in_(chunk), Extension.assignment_id.in_(ids))))
    deadlines: dict[tuple[int, int], dt.datetime | None] = {}
    rows = []
    for learner in learners:
        row_cells = {}
        for assignment in assignments:
            key = (learner.user_id, assignment.id)
            due = extensions.get(key)
            if due is None:
                at = (assignment.id, learner.cohort.id)
                if at not in deadlines:
                    deadlines[at] = effective_deadline(assignment, learner.cohort, None)
                due = deadlines[at]
            cell = kept.get(key)
            if cell is None:
                row_cells[assignment.id] = Cell("not_started", None, float(assignment.max_score or 0.0), 0, 0,
                                                False, due, now)
            else:
                maximum = cell.max_score if cell.max_score is not None else float(assignment.max_score or 0.0)
                row_cells[assignment.id] = Cell(cell.status, cell.score, maximum, cell.attempts, cell.late_days,
                                                cell.flag_unreviewed, due, now)
        rows.append(LearnerRow(users[learner.user_id], learner.cohort, row_cells, learner.completed_at,
                               learner.last_activity))
    return rows


def _shown(row: LearnerSummary, show: str, assignments: int) -> bool:
    if show == "missing":
        return row.submitted < assignments
    if show == "waiting":
        return row.waiting
    if show == "flagged":
        return row.flagged
    if show == "completed":
        return row.completed_at is not None
    if show == "not_completed":
        return row.completed_at is None
    return True


def _sort_key(sort: str, assignments: int, scores: dict[int, float | None]):  # noqa: ANN202 - a key for list.sort
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    if sort.startswith("a") and sort[1:].isdigit():
        def by_score(row: LearnerSummary) -> tuple[float, str]:
            score = scores.get(row.user_id)
            return (-1.0 if score is None else score, row.name)
        return by_score
    if sort == "progress":
        return lambda row: (row.passed, row.submitted, row.name)
    if sort == "activity":
        return lambda row: (row.last_activity or epoch, row.name)
    if sort == "cohort":
        return lambda row: (row.cohort.starts_at, row.cohort.name, row.name)
    return lambda row: (row.name.lower(), row.email)


def gradebook_table(book: Gradebook, *, locale: str, header: dict[str, str], title: str,
                    status_label: Callable[[str], str]) -> Table:
    """The gradebook as an exportable table: a learner per row, score, status, attempts and late days per assignment.

    ``header`` holds the translated column names (keys ``learner``, ``email``, ``company``, ``cohort``,
    ``score``, ``status``, ``attempts``, ``late_days``, ``passed``, ``completed``); ``status_label``
    names a standing.  Scores are numbers (empty when there is none), dates are Seoul dates.  Every
    row of ``book`` (build it with ``per_page=None`` for the whole gradebook).
    """
    columns = [header["learner"], header["email"], header["company"], header["cohort"]]
    for assignment in book.assignments:
        name = assignment.title(locale)
        columns += [f"{name} · {header[key]}" for key in ("score", "status", "attempts", "late_days")]
    columns += [header["passed"], header["completed"]]
    labels = {status: status_label(status) for status in STATUSES}
    rows = []
    for row in book.rows:
        values: list[object] = [row.user.name, row.user.email, row.user.company.name if row.user.company else "",
                                row.cohort.name]
        for assignment in book.assignments:
            cell = row.cells[assignment.id]
            values += [None if cell.score is None else round(cell.score, 2), labels[cell.status],
                       cell.attempts, cell.late_days]
        values += [row.passed, row.completed_at.astimezone(SEOUL).date().isoformat() if row.completed_at else ""]
        rows.append(values)
    stem = f"gradebook-{book.course.slug}" + (f"-cohort{book.cohort.id}" if book.cohort else "")
    return Table(stem, title, columns, rows)


def learner_ids(session: Session, cohort: Cohort) -> list[int]:
    """The ids of the learners holding a seat in ``cohort``."""
    return list(session.scalars(select(Enrollment.user_id).where(
        Enrollment.cohort_id == cohort.id, Enrollment.status == EnrollmentStatus.enrolled)))
