"""The gradebook's kept cells (``gradebook_cell``): one row per learner and assignment they attempted.

Building a course's gradebook from its attempts reads every attempt of every learner (100,000 at
2,000 learners × 10 assignments × 5 attempts: seconds).  Instead each (learner, assignment) pair's
summary is kept in :class:`~academy.teaching.models.GradebookCell` and computed by the one truth,
``grading.standing.standing_from(..., staff=True)``, never by a copy of its rules: nothing is held
from staff, so no value of a cell depends on the clock.  Beside the standing a cell keeps what the
other instructor pages would otherwise read every attempt for: the autograded questions failed since
last passed (``failing_streaks``, the at-risk list's "stuck" rule) and the learner's facts per
question (``question_facts``, summed by the question statistics).

Nothing has to remember to keep them: as :mod:`academy.stamps` does for view stamps, session events
note which pairs changed and their cells are computed again just before the transaction commits
(``stamps.on_commit``), so a cell is committed with the data it sums up (and rolled back with it).
On PostgreSQL the computing transaction first holds an advisory lock per assignment (see ``_lock``),
so two transactions committing attempts of one learner at once never leave a stale cell.  What is
noted:

* attempts (``submission``) added, changed or deleted, and their graded cells (``cell_score``:
  grading, hand grading and overrides write them), as objects or as ``insert()`` statements with
  their rows (a bulk insert), ``update()`` and ``delete()`` statements (on PostgreSQL the rows'
  pairs are read before the statement; on SQLite, where that read could make the transaction
  unwritable (see ``stamps._statement``), every cell is computed again unless this transaction
  already writes);
* an assignment whose ``grading`` policy (which attempt counts) or ``max_score`` changed, and a
  course whose ``passing_rule`` (the pass mark) changed: every cell of that assignment or course.

Extensions need nothing: a staff standing does not depend on the deadline.  Raw SQL and PostgreSQL's
``COPY`` bypass the events: ``rebuild`` (``academy gradebook rebuild``) computes every cell again;
``academy synth`` computes the rows of what it copies with ``row_of`` and copies them too.
Readers call ``settle`` first, so that a transaction reads its own changes.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, event, func, select
from sqlalchemy.orm import ORMExecuteState, Session, scoped_session

from academy import stamps
from academy.catalog.models import Assignment, Course
from academy.db import utcnow
from academy.extensions import db
from academy.grading.models import CellScore, Submission, SubmissionStatus
from academy.grading.standing import flag_unreviewed, standing_from
from academy.teaching.models import GradebookCell

_PENDING = "academy.gradebook_cells.pending"
_CHUNK = 500  # learners per query when many cells are computed at once
ASSIGNMENT_COLUMNS = frozenset({"grading", "max_score"})  # what a cell depends on besides the attempts
COURSE_COLUMNS = frozenset({"passing_rule"})


@dataclass
class _Pending:
    """What this transaction changed, as far as cells go."""

    pairs: set[tuple[int, int]]  # (user id, assignment id)
    submissions: set[int]  # attempts whose graded cells changed
    assignments: set[int]  # every cell of these
    courses: set[int]  # every cell of these courses' assignments
    everything: bool = False

    def __bool__(self) -> bool:
        return bool(self.pairs or self.submissions or self.assignments or self.courses or self.everything)


def _pending(session: Session) -> _Pending:
    found = session.info.get(_PENDING)
    if found is None:
        found = session.info[_PENDING] = _Pending(set(), set(), set(), set())
    return found


@dataclass(frozen=True, slots=True)
class _Attempt:
    """The columns of an attempt that a staff standing reads (``standing_from`` reads no more)."""

    id: int
    user_id: int
    assignment_id: int
    attempt: int
    status: SubmissionStatus
    score: float | None
    max_score: float
    penalty_percent: float
    late_days: int
    flagged: bool
    flag_review: str | None
    submitted_at: dt.datetime
    assignment: Assignment


_ATTEMPT_COLUMNS = (Submission.id, Submission.user_id, Submission.assignment_id, Submission.attempt,
                    Submission.status, Submission.score, Submission.max_score, Submission.penalty_percent,
                    Submission.late_days, Submission.flagged, Submission.flag_review, Submission.submitted_at)


_EPSILON = 1e-9  # scores are floats: 1.9999999999 of 2 points is full marks
_SCORED = tuple(s for s in SubmissionStatus if s.has_score)


def failing_streaks(attempts: Sequence[Any], scores: Iterable[tuple[int, str, str, float, float]]) -> list[list[Any]]:
    """Each autograded cell the learner failed since they last passed it: ``[notebook, grade_id, attempts]``.

    ``scores``: ``(submission id, notebook, grade_id, score, max_score)`` of the autograded cells with
    a score of ``attempts``; only attempts whose status carries a score count.  A cell scored below
    its maximum fails; the count starts after the newest attempt that passed it.  Sorted by cell.
    """
    number = {a.id: a.attempt for a in attempts if a.status.has_score}
    outcomes: dict[tuple[str, str], list[tuple[int, bool]]] = defaultdict(list)
    for submission_id, notebook, grade_id, score, maximum in scores:
        if submission_id in number:
            outcomes[(notebook, grade_id)].append((number[submission_id], score >= maximum - _EPSILON))
    found = []
    for (notebook, grade_id), results in sorted(outcomes.items()):
        last_pass = max((attempt for attempt, passed in results if passed), default=0)
        failures = sum(1 for attempt, passed in results if not passed and attempt > last_pass)
        if failures:
            found.append([notebook, grade_id, failures])
    return found


#: One graded cell of a scored attempt: (submission id, notebook, grade_id, score, max_score, manual, hidden, error).
CellRow = tuple[int, str, str, float | None, float, bool, bool, str | None]


def question_facts(counted_id: int | None, cells: Sequence[CellRow]) -> dict[str, list[Any]] | None:
    """What the question statistics need of one learner's scored attempts at an assignment, as JSON.

    ``q``: each question seen, ``[notebook, grade_id, max_score, manual, hidden]`` (the largest
    maximum; whether any of its cells is a written answer, holds hidden tests); ``c``: the counted
    attempt's cells, ``[notebook, grade_id, score, max_score]``; ``f``: each autograded question
    failed (scored below its maximum) in some attempt, ``[notebook, grade_id, attempts, [[error,
    attempts], ...]]`` with the errors as recorded.  The statistics sum these per question
    (:mod:`academy.teaching.questions`).  None without any cell.
    """
    if not cells:
        return None
    seen: dict[tuple[str, str], list[Any]] = {}
    failed: dict[tuple[str, str], dict[str | None, int]] = {}
    counted = []
    for submission_id, notebook, grade_id, score, maximum, manual, hidden, error in cells:
        key = (notebook, grade_id)
        facts = seen.get(key)
        if facts is None:
            seen[key] = [notebook, grade_id, maximum, bool(manual), bool(hidden)]
        else:
            facts[2] = max(facts[2], maximum)
            facts[3] = facts[3] or bool(manual)
            facts[4] = facts[4] or bool(hidden)
        if submission_id == counted_id:
            counted.append([notebook, grade_id, score, maximum])
        if not manual and score is not None and score < maximum - _EPSILON:
            errors = failed.setdefault(key, {})
            errors[error] = errors.get(error, 0) + 1
    return {"q": list(seen.values()), "c": counted,
            "f": [[notebook, grade_id, sum(errors.values()), [[e, n] for e, n in errors.items()]]
                  for (notebook, grade_id), errors in failed.items()]}


def cell_values(assignment: Assignment, attempts: Sequence[Any], cells: Sequence[CellRow]) -> dict[str, Any] | None:
    """The cell of one learner's ``attempts`` (Submissions, or anything with their columns) at ``assignment``.

    ``cells``: the graded cells of those attempts whose status carries a score.  None when there is no attempt.
    """
    if not attempts:
        return None
    waiting = {c[0] for c in cells if c[5] and c[3] is None}  # written answers not graded yet
    standing = standing_from(
        assignment, attempts, due=None, now=utcnow(), staff=True,
        waiting=lambda s: s.status.has_score and (s.id in waiting or flag_unreviewed(s)))
    counted = standing.counted
    failing = failing_streaks(attempts, [c[:5] for c in cells if not c[5] and c[3] is not None])
    return {
        "attempts": len(attempts),
        "status": standing.status,
        "counted_submission_id": counted.submission.id if counted else None,
        "counted_attempt": counted.submission.attempt if counted else None,
        "score": counted.final_score if counted else None,
        "max_score": counted.max_score if counted else None,
        "late_days": counted.submission.late_days if counted else 0,
        "flag_unreviewed": any(flag_unreviewed(s) for s in attempts),
        "last_submitted_at": max(s.submitted_at for s in attempts),
        "failing": failing or None,
        "most_failing": max((n for _notebook, _grade_id, n in failing), default=0),
        "questions": question_facts(counted.submission.id if counted else None, cells),
    }


def row_of(assignment: Assignment, user_id: int, attempts: Sequence[dict[str, Any]],
           cells: dict[int, Sequence[dict[str, Any]]]) -> dict[str, Any] | None:
    """The ``gradebook_cell`` row of ``user_id``'s attempts at ``assignment`` given as column values, for a
    writer that goes around the session events (``academy synth``'s COPY) and so keeps the cells itself.

    ``attempts``: the attempts' ``submission`` rows (with ``id``; ``status`` a :class:`SubmissionStatus` or its
    name); ``cells``: their ``cell_score`` rows by submission id.  Computed by :func:`cell_values`, as ever.
    """
    found = [_Attempt(a["id"], user_id, assignment.id, a["attempt"],
                      a["status"] if isinstance(a["status"], SubmissionStatus) else SubmissionStatus[a["status"]],
                      a.get("score"), a.get("max_score") or 0.0, a.get("penalty_percent") or 0.0,
                      a.get("late_days") or 0, bool(a.get("flagged")), a.get("flag_review"), a["submitted_at"],
                      assignment=assignment) for a in attempts]
    graded: list[CellRow] = [(attempt.id, c["notebook"], c["grade_id"], c["score"], c["max_score"],
                              bool(c.get("manual")), bool(c.get("hidden")), c.get("error"))
                             for attempt in found if attempt.status in _SCORED for c in cells.get(attempt.id, ())]
    values = cell_values(assignment, found, graded)
    return None if values is None else {"assignment_id": assignment.id, "user_id": user_id, **values}


def refresh(session: Session, *, pairs: Iterable[tuple[int, int]] = (), assignment_ids: Iterable[int] = ()) -> int:
    """Compute again the cells of ``pairs`` ((user id, assignment id)) and of every learner of ``assignment_ids``.

    Writes a row per pair with attempts and deletes the rows of pairs without any; returns the
    number of rows written.  Flushes; the caller commits.
    """
    whole = sorted(set(assignment_ids))
    wanted: dict[int, set[int]] = defaultdict(set)  # assignment id → user ids
    for user_id, assignment_id in pairs:
        if assignment_id not in whole:
            wanted[assignment_id].add(user_id)
    if not whole and not wanted:
        return 0
    ids = sorted(set(whole) | set(wanted))
    assignments = {a.id: a for a in session.scalars(select(Assignment).where(Assignment.id.in_(ids)))}
    written = 0
    for assignment_id in whole:
        if assignment_id in assignments:
            written += _refresh_users(session, assignments[assignment_id], None)
    for assignment_id, users in sorted(wanted.items()):
        if assignment_id not in assignments:
            continue  # deleted: its cells went with it
        ordered = sorted(users)
        for start in range(0, len(ordered), _CHUNK):
            written += _refresh_users(session, assignments[assignment_id], ordered[start:start + _CHUNK])
    return written


def _refresh_users(session: Session, assignment: Assignment, user_ids: Sequence[int] | None) -> int:
    """The cells of ``user_ids`` (None: every learner) at ``assignment``, written or deleted."""
    where = [Submission.assignment_id == assignment.id]
    if user_ids is not None:
        where.append(Submission.user_id.in_(user_ids))
    by_user: dict[int, list[_Attempt]] = defaultdict(list)
    for row in session.execute(select(*_ATTEMPT_COLUMNS).where(*where)):
        by_user[row.user_id].append(_Attempt(*row, assignment=assignment))
    cells: dict[int, list[CellRow]] = defaultdict(list)
    for user_id, *cell in session.execute(
            select(Submission.user_id, CellScore.submission_id, CellScore.notebook, CellScore.grade_id,
                   CellScore.score, CellScore.max_score, CellScore.manual, CellScore.hidden, CellScore.error)
            .join(Submission, Submission.id == CellScore.submission_id)
            .where(*where, Submission.status.in_(_SCORED))):
        cells[user_id].append(tuple(cell))  # type: ignore[arg-type]
    rows = []
    for user_id, attempts in by_user.items():
        values = cell_values(assignment, attempts, cells.get(user_id, []))
        if values is not None:
            rows.append({"assignment_id": assignment.id, "user_id": user_id, **values})
    table = GradebookCell.__table__
    if user_ids is None:
        session.execute(delete(table).where(table.c.assignment_id == assignment.id))
    else:
        gone = [u for u in user_ids if u not in by_user]
        if gone:
            session.execute(delete(table).where(table.c.assignment_id == assignment.id, table.c.user_id.in_(gone)))
    if rows:
        _upsert(session, rows)
    return len(rows)


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    table = GradebookCell.__table__
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table)
    keys = ("assignment_id", "user_id")
    statement = statement.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys})
    for start in range(0, len(rows), 1000):
        session.execute(statement, rows[start:start + 1000])


def rebuild(session: Session, *, course_ids: Iterable[int] | None = None) -> int:
    """Compute every cell again (of ``course_ids``' assignments only, when given); returns the rows written.

    Idempotent.  Cells of assignments nobody attempted are removed with the rest.  The caller commits.
    """
    query = select(Assignment.id)
    if course_ids is not None:
        query = query.where(Assignment.course_id.in_(sorted(set(course_ids))))
    ids = list(session.scalars(query.order_by(Assignment.id)))
    if course_ids is None:
        session.execute(delete(GradebookCell).where(GradebookCell.assignment_id.not_in(ids)))
    return refresh(session, assignment_ids=ids)


def settle(session: Session | scoped_session) -> None:
    """Compute now the cells this transaction's changes (flushed or not) touched, so its readers see them."""
    if isinstance(session, scoped_session):
        session = session()
    session.flush()
    _apply(session)


def _apply(session: Session, *, lock: bool = False) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    if pending.everything:
        if lock:
            _lock(session, session.scalars(select(Assignment.id)))
        rebuild(session)
        return
    assignment_ids = set(pending.assignments)
    if pending.courses:
        assignment_ids.update(session.scalars(select(Assignment.id).where(
            Assignment.course_id.in_(sorted(pending.courses)))))
    pairs = set(pending.pairs)
    if pending.submissions:
        ordered = sorted(pending.submissions)
        for start in range(0, len(ordered), 5000):
            pairs.update(session.execute(select(Submission.user_id, Submission.assignment_id).where(
                Submission.id.in_(ordered[start:start + 5000]))))
    if lock:
        _lock(session, assignment_ids | {a for _u, a in pairs})
    refresh(session, pairs=pairs, assignment_ids=assignment_ids)
    session.info.pop(_PENDING, None)  # writing cells is no change of its own


_LOCKS = 0x6762  # "gb": the advisory locks' first key; the second is an assignment id


def _lock(session: Session, assignment_ids: Iterable[int]) -> None:
    """On PostgreSQL, wait until no other transaction is computing cells of these assignments, then hold them.

    Held until the commit, so that cells computed from one snapshot are never written over those of a
    transaction that committed newer attempts in between: under READ COMMITTED the reads that follow
    see whatever committed before the lock was granted.  Taken in order (no deadlock between two
    committers); SQLite lets one writer at a time anyway.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    for assignment_id in sorted(set(assignment_ids)):
        session.execute(select(func.pg_advisory_xact_lock(_LOCKS, assignment_id)))


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context: Any) -> None:
    pending = _pending(session)
    for instance in (*session.new, *session.dirty, *session.deleted):
        if isinstance(instance, Submission):
            user_id = stamps.loaded_value(instance, "user_id")
            assignment_id = stamps.loaded_value(instance, "assignment_id")
            if user_id is None or assignment_id is None:
                pending.everything = True
            else:
                pending.pairs.add((user_id, assignment_id))
        elif isinstance(instance, CellScore):
            submission_id = stamps.loaded_value(instance, "submission_id")
            if submission_id is None:
                pending.everything = True
            else:
                pending.submissions.add(submission_id)
        elif isinstance(instance, Assignment) and instance in session.dirty \
                and stamps.changed_columns(instance) & ASSIGNMENT_COLUMNS:
            pending.assignments.add(instance.id)
        elif isinstance(instance, Course) and instance in session.dirty \
                and stamps.changed_columns(instance) & COURSE_COLUMNS:
            pending.courses.add(instance.id)


@event.listens_for(Session, "do_orm_execute")
def _statement(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    table = getattr(state.statement, "table", None)
    name = getattr(table, "name", None)
    if name is None or getattr(table, "metadata", None) is not db.metadata:
        return
    pending = _pending(state.session)
    if name in ("assignment", "course"):
        if state.is_update:
            values = getattr(state.statement, "_values", None) or {}
            columns = {getattr(key, "key", key) for key in values}
            watched = ASSIGNMENT_COLUMNS if name == "assignment" else COURSE_COLUMNS
            if columns & watched or not columns:
                pending.everything = True
        return
    if name not in ("submission", "cell_score"):
        return
    if state.is_insert:
        rows = state.parameters
        rows = [rows] if isinstance(rows, dict) else list(rows or [])
        statement = state.statement
        if not rows or statement._values or statement._multi_values or statement.select is not None:
            pending.everything = True  # values inside the statement, or INSERT ... SELECT
        elif name == "submission":
            pending.pairs.update((row["user_id"], row["assignment_id"]) for row in rows)
        else:
            pending.submissions.update(row["submission_id"] for row in rows)
        return
    where = getattr(state.statement, "whereclause", None)
    if where is None:
        pending.everything = True
        return
    if state.session.get_bind().dialect.name == "sqlite" and not _writing(state.session):
        pending.everything = True  # see the module docstring
        return
    submissions = db.metadata.tables["submission"]
    if name == "cell_score":
        owners = select(submissions.c.user_id, submissions.c.assignment_id).where(
            submissions.c.id.in_(select(table.c.submission_id).where(where)))
    else:
        owners = select(table.c.user_id, table.c.assignment_id).where(where)
    pending.pairs.update(state.session.execute(owners.distinct()))


def _writing(session: Session) -> bool:
    """Whether the session's SQLite connection is already in a write transaction (reading then is safe)."""
    connection = session.connection().connection.driver_connection
    return bool(getattr(connection, "in_transaction", False))


def _commit(session: Session) -> None:
    """Just before the transaction commits (``stamps.on_commit``: after its last flush)."""
    _apply(session, lock=True)


stamps.on_commit(_commit)


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # committed (computed) or rolled back (nothing changed)
        session.info.pop(_PENDING, None)

