"""Question statistics of one assignment, so instructors see at a glance which concept did not land.

For each graded cell (a question) of an assignment: how the learners' counted attempts scored on
it (mean, and how many got nothing, part or all of its points, or still wait for a written answer
to be graded), and for the autograded tests, which failed most often and with what error.

* **Which attempt counts** — the one the rest of the portal counts (``grading.standing``): the
  assignment's ``score_policy`` ``best`` (highest score, the earliest such attempt on a tie) or
  ``last`` (newest attempt with a score), as the course's staff see it, so nothing is held.  An
  attempt without a score (queued, grading, grader error) never counts.
* **A failure** — an autograded (not written) cell scoring less than its maximum on any attempt
  with a score, not only the counted one: a test many learners needed several tries for is a
  concept that did not land even if they got there in the end.
* **Names** — as the current release's notebooks name the questions
  (``grading.questions.question_names``); ``name`` is None where the release has none (or there
  is no release), and the caller shows "Question ``number``" in the viewer's language.

The counted attempts are the gradebook's kept cells' (:mod:`academy.teaching.cells`, computed by
``grading.standing``); the figures are summed by the database, a row per question, never an attempt
per learner.  Plain functions of a Session and plain values; the caller owns the transaction
(nothing is written but this transaction's own cells, when it changed attempts or a policy).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.orm import Session

from academy.catalog.models import Assignment
from academy.errors import NotFound
from academy.grading.models import CellScore, Submission, SubmissionStatus
from academy.grading.questions import question_names
from academy.grading.services import current_release
from academy.stats.export import Table
from academy.teaching import cells
from academy.teaching.models import GradebookCell

MAX_ERRORS = 5  # distinct error messages kept per failing question
_EPSILON = 1e-9  # scores are floats: 1.9999999999 of 2 points is full marks
_SCORED = tuple(s for s in SubmissionStatus if s.has_score)
Key = tuple[str, str]  # (notebook, grade_id)


@dataclass(frozen=True)
class ErrorGroup:
    """Failing attempts of one question that ended with the same error (None: no message recorded)."""

    message: str | None
    attempts: int


@dataclass(frozen=True)
class QuestionStat:
    """How the learners' counted attempts scored on one question."""

    notebook: str
    grade_id: str
    number: int  # 1-based position in the release: the caller's "Question N" when ``name`` is None
    name: str | None  # as the released notebook names it
    max_score: float
    manual: bool  # a written answer, graded by hand
    hidden: bool  # its test cell holds hidden tests
    learners: int  # learners whose counted attempt has this question, waiting ones included
    mean: float | None  # mean points over the graded ones (None: none graded)
    mean_percent: float | None  # ``mean`` as a percent of ``max_score``
    zero: int  # learners with no points
    partial: int  # learners with some but not all points
    full: int  # learners with all points
    waiting: int  # written answers not graded by hand yet (in no bucket and not in the mean)


@dataclass(frozen=True)
class FailedQuestion:
    """An autograded question that learners failed: how many, how often, and the errors behind it."""

    question: QuestionStat
    learners: int  # learners who failed it in at least one attempt
    attempts: int  # failing attempts, all learners together
    errors: tuple[ErrorGroup, ...]  # most frequent first, at most MAX_ERRORS


@dataclass(frozen=True)
class QuestionReport:
    """Question statistics of one assignment over a set of learners."""

    assignment_id: int
    slug: str
    score_policy: str
    learners: int  # learners with a counted attempt
    questions: tuple[QuestionStat, ...]  # in the release's notebook and cell order
    failed_most: tuple[FailedQuestion, ...]  # most learners failing first; only questions failed at least once
    counted_attempts: Mapping[int, int]  # user id → the attempt number that counts


def question_report(session: Session, assignment: Assignment,
                    learners: Collection[int] | None = None) -> QuestionReport:
    """Question statistics of ``assignment`` over ``learners`` (user ids; None: everyone who submitted).

    Counts only attempts whose status carries a score.  An assignment nobody submitted gives a
    report with no learners and no questions.  Four queries, whatever the number of learners: the
    counted attempts (the gradebook's kept cells), the figures per question summed by the database
    in one pass over the attempts' cells, the questions' order, and the release for their names.
    """
    policy = str(assignment.policy("score_policy"))
    if learners is not None and not learners:
        return QuestionReport(assignment.id, assignment.slug, policy, 0, (), (), {})
    cells.settle(session)  # this transaction's own changes (a policy just set) count
    users = sorted(set(learners)) if learners is not None else None
    kept = [GradebookCell.assignment_id == assignment.id, GradebookCell.counted_submission_id.is_not(None)]
    if users is not None:
        kept.append(GradebookCell.user_id.in_(users))
    counted = dict(session.execute(select(GradebookCell.user_id, GradebookCell.counted_attempt).where(*kept)).all())

    where = [Submission.assignment_id == assignment.id, Submission.status.in_(_SCORED)]
    if users is not None:
        where.append(Submission.user_id.in_(users))
    figures: dict[Key, _Figures] = {}
    for row in session.execute(_figures_query(assignment.id, where)):
        figures.setdefault((row.notebook, row.grade_id), _Figures()).add(row)
    if not figures:
        return QuestionReport(assignment.id, assignment.slug, policy, len(counted), (), (), counted)
    keys = _ordered_keys(session, where, set(figures))
    names = _names(session, assignment, keys)

    questions = []
    failures = []
    for number, key in enumerate(keys, start=1):
        mine = figures[key]
        stat = mine.stat(key, number, names.get(key))
        questions.append(stat)
        if not stat.manual and mine.failed_attempts:
            failures.append(FailedQuestion(stat, len(mine.failed_learners), mine.failed_attempts,
                                           _errors(mine.errors.items())))
    failures.sort(key=lambda f: (-f.learners, -f.attempts, f.question.number))
    return QuestionReport(assignment.id, assignment.slug, policy, len(counted), tuple(questions),
                          tuple(failures), counted)


class _Figures:
    """One question's figures, summed from its groups of ``_figures_query`` rows."""

    def __init__(self) -> None:
        self.max_all = 0.0
        self.max_counted: float | None = None
        self.manual = self.hidden = False
        self.learners = self.graded = self.full = self.zero = self.failed_attempts = 0
        self.total = 0.0
        self.failed_learners: set[int] = set()
        self.errors: Counter[str | None] = Counter()

    def add(self, row: Sequence[Any]) -> None:
        """One row of ``_figures_query`` (in its column order: thousands of them, so by position)."""
        (_notebook, _grade_id, failed_by, error, max_all, max_counted, manual, hidden, learners, graded, total,
         full, zero, attempts) = row
        if max_all is not None and max_all > self.max_all:
            self.max_all = float(max_all)
        if max_counted is not None and (self.max_counted is None or max_counted > self.max_counted):
            self.max_counted = float(max_counted)
        self.manual = self.manual or bool(manual)
        self.hidden = self.hidden or bool(hidden)
        if learners:
            self.learners += int(learners)
            self.graded += int(graded or 0)
            self.total += float(total or 0.0)
            self.full += int(full or 0)
            self.zero += int(zero or 0)
        if failed_by is not None:  # a group of failing attempts: one learner, one error
            self.failed_learners.add(failed_by)
            self.failed_attempts += int(attempts)
            self.errors[error] += int(attempts)

    def stat(self, key: Key, number: int, name: str | None) -> QuestionStat:
        maximum = self.max_counted if self.max_counted is not None else self.max_all
        mean = self.total / self.graded if self.graded else None
        percent = 100.0 * mean / maximum if mean is not None and maximum > 0 else None
        return QuestionStat(
            notebook=key[0], grade_id=key[1], number=number, name=name, max_score=maximum,
            manual=self.manual, hidden=self.hidden, learners=self.learners, mean=mean, mean_percent=percent,
            zero=self.zero, partial=self.graded - self.full - self.zero, full=self.full,
            waiting=self.learners - self.graded,
        )


def _figures_query(assignment_id: int, where: Sequence[ColumnElement[bool]]) -> Select[Any]:
    """Per question, the figures over every scored attempt and over the counted ones (the kept cells').

    Failing autograded cells are grouped apart, by learner and error, so that one pass over the cells
    (no distinct count, no second scan) also gives who failed and why: a row per question with
    ``failed_by`` None, and a row per (question, learner who failed it, error).
    """
    counted = GradebookCell.user_id.is_not(None)
    graded = and_(counted, CellScore.score.is_not(None))
    full = CellScore.score >= CellScore.max_score - _EPSILON
    failing = and_(CellScore.manual.is_(False), CellScore.score.is_not(None),
                   CellScore.score < CellScore.max_score - _EPSILON)
    failed_by = case((failing, Submission.user_id)).label("failed_by")
    error = case((failing, CellScore.error)).label("error")

    def number(condition: ColumnElement[bool]) -> Any:
        return func.sum(case((condition, 1), else_=0))

    return (select(CellScore.notebook, CellScore.grade_id, failed_by, error,
                   func.max(CellScore.max_score).label("max_all"),
                   func.max(case((counted, CellScore.max_score))).label("max_counted"),
                   func.max(case((CellScore.manual.is_(True), 1), else_=0)).label("manual"),
                   func.max(case((CellScore.hidden.is_(True), 1), else_=0)).label("hidden"),
                   number(counted).label("learners"),
                   number(graded).label("graded"),
                   func.sum(case((graded, CellScore.score))).label("total"),
                   number(and_(graded, full)).label("full"),
                   number(and_(graded, ~full, CellScore.score <= _EPSILON)).label("zero"),
                   func.count().label("attempts"))
            .join(Submission, Submission.id == CellScore.submission_id)
            .outerjoin(GradebookCell, and_(GradebookCell.assignment_id == assignment_id,
                                           GradebookCell.counted_submission_id == Submission.id))
            .where(*where)
            .group_by(CellScore.notebook, CellScore.grade_id, failed_by, error))


def _ordered_keys(session: Session, where: Sequence[ColumnElement[bool]], wanted: set[Key]) -> list[Key]:
    """The questions in the order the grader reports them, newest release first.

    The grader reports each attempt's cells in the release's notebook and cell order
    (engine.scores): read newest release and attempt first, its questions lead, in its order, and a
    question that only an older release had follows them.  The newest attempts nearly always name
    every question, so only the cells of the newest twenty are read (all of them otherwise).
    """
    newest = (select(Submission.id).where(*where)
              .order_by(Submission.release_id.desc(), Submission.id.desc()).limit(20).scalar_subquery())
    query = (select(CellScore.notebook, CellScore.grade_id).join(Submission, Submission.id == CellScore.submission_id)
             .order_by(Submission.release_id.desc(), Submission.id.desc(), CellScore.id))
    keys: list[Key] = list(dict.fromkeys(
        (n, g) for n, g in session.execute(query.where(CellScore.submission_id.in_(newest)))))
    if set(keys) != wanted:
        keys = list(dict.fromkeys((n, g) for n, g in session.execute(query.where(*where))))
    return [key for key in keys if key in wanted]


def _names(session: Session, assignment: Assignment, keys: Sequence[Key]) -> dict[Key, str]:
    """The questions' names in the current release; none when there is no release."""
    try:
        release = current_release(session, assignment)
    except NotFound:
        return {}
    return question_names(release, [notebook for notebook, _grade_id in keys])


def _errors(errors: Iterable[tuple[str | None, int]]) -> tuple[ErrorGroup, ...]:
    """Failing attempts grouped by their error (``(message, attempts)`` pairs), whitespace normalised;
    most frequent first."""
    counts: Counter[str | None] = Counter()
    for error, n in errors:
        counts[(" ".join(error.split()) or None) if error else None] += n
    ranked = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0] is None, pair[0] or ""))
    return tuple(ErrorGroup(message, n) for message, n in ranked[:MAX_ERRORS])


TABLE_LABELS: dict[str, str] = {
    "title": "Question statistics",
    "number": "#",
    "question": "Question",
    "unnamed": "Question %(n)d",
    "max_score": "Points",
    "manual": "Written answer",
    "hidden": "Hidden tests",
    "learners": "Learners",
    "mean": "Mean",
    "mean_percent": "Mean %",
    "zero": "No points",
    "partial": "Some points",
    "full": "Full points",
    "waiting": "Waiting for grading",
    "failed_learners": "Learners who failed",
    "failed_attempts": "Failing attempts",
    "top_error": "Most frequent error",
}


def question_table(report: QuestionReport, labels: Mapping[str, str]) -> Table:
    """``report`` as an exportable table, one row per question in release order.

    ``labels``: the translated texts of :data:`TABLE_LABELS`' keys (those missing stay English);
    ``unnamed`` is a ``%(n)d`` pattern naming a question the release has no name for.
    """
    text = {**TABLE_LABELS, **labels}
    failed = {(f.question.notebook, f.question.grade_id): f for f in report.failed_most}
    columns = ("number", "question", "max_score", "manual", "hidden", "learners", "mean", "mean_percent",
               "zero", "partial", "full", "waiting", "failed_learners", "failed_attempts", "top_error")
    rows = []
    for q in report.questions:
        failure = failed.get((q.notebook, q.grade_id))
        top = failure.errors[0].message if failure and failure.errors else None
        rows.append([
            q.number, q.name or text["unnamed"] % {"n": q.number}, q.max_score, q.manual, q.hidden, q.learners,
            None if q.mean is None else round(q.mean, 2),
            None if q.mean_percent is None else round(q.mean_percent, 1),
            q.zero, q.partial, q.full, q.waiting,
            failure.learners if failure else 0, failure.attempts if failure else 0, top,
        ])
    stem = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "-" for ch in report.slug)
    return Table(f"questions-{stem}", text["title"], [text[c] for c in columns], rows)
