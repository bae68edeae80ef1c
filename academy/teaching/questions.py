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
``grading.standing``), and so are each learner's facts per question (``cells.question_facts``, kept
with them as their attempts change): the figures are their sums, one kept row per learner, never
the attempts' cells.  Plain functions of a Session and plain values; the caller owns the transaction
(nothing is written but this transaction's own cells, when it changed attempts or a policy).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Text, cast, select
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
    report with no learners and no questions.  Three queries, whatever the number of learners and
    attempts: the learners' kept cells (:mod:`academy.teaching.cells`: the counted attempt and each
    learner's facts per question, ``cells.question_facts``), the questions' order (from the newest
    attempts' cells), and the release for their names.
    """
    policy = str(assignment.policy("score_policy"))
    if learners is not None and not learners:
        return QuestionReport(assignment.id, assignment.slug, policy, 0, (), (), {})
    cells.settle(session)  # this transaction's own changes (a policy just set) count
    users = sorted(set(learners)) if learners is not None else None
    kept = [GradebookCell.assignment_id == assignment.id]
    if users is not None:
        kept.append(GradebookCell.user_id.in_(users))
    counted: dict[int, int] = {}
    figures: dict[Key, _Figures] = {}
    # The facts as text, decoded here: faster than the driver's JSON decoding, thousands of rows at a time.
    for user_id, attempt, text in session.execute(select(
            GradebookCell.user_id, GradebookCell.counted_attempt, cast(GradebookCell.questions, Text)).where(*kept)):
        if attempt is not None:
            counted[user_id] = attempt
        facts = json.loads(text) if text else None
        if facts:
            _add_facts(figures, user_id, facts)
    if not figures:
        return QuestionReport(assignment.id, assignment.slug, policy, len(counted), (), (), counted)
    where = [Submission.assignment_id == assignment.id, Submission.status.in_(_SCORED)]
    if users is not None:
        where.append(Submission.user_id.in_(users))
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
    """One question's figures, summed over the learners' facts."""

    def __init__(self) -> None:
        self.max_all = 0.0
        self.max_counted: float | None = None
        self.manual = self.hidden = False
        self.learners = self.graded = self.full = self.zero = self.failed_attempts = 0
        self.total = 0.0
        self.failed_learners: set[int] = set()
        self.errors: Counter[str | None] = Counter()

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


def _add_facts(figures: dict[Key, _Figures], user_id: int, facts: Mapping[str, Any]) -> None:
    """One learner's facts (``cells.question_facts``) added to the figures per question."""
    for notebook, grade_id, maximum, manual, hidden in facts["q"]:
        mine = figures.get((notebook, grade_id))
        if mine is None:
            mine = figures[(notebook, grade_id)] = _Figures()
        mine.max_all = max(mine.max_all, float(maximum))
        mine.manual = mine.manual or manual
        mine.hidden = mine.hidden or hidden
    for notebook, grade_id, score, maximum in facts["c"]:  # the counted attempt's cells
        mine = figures[(notebook, grade_id)]
        mine.learners += 1
        mine.max_counted = maximum if mine.max_counted is None else max(mine.max_counted, maximum)
        if score is None:
            continue  # a written answer waiting for points
        mine.graded += 1
        mine.total += score
        if score >= maximum - _EPSILON:
            mine.full += 1
        elif score <= _EPSILON:
            mine.zero += 1
    for notebook, grade_id, attempts, errors in facts["f"]:  # autograded questions failed in some attempt
        mine = figures[(notebook, grade_id)]
        mine.failed_attempts += attempts
        mine.failed_learners.add(user_id)
        for error, n in errors:
            mine.errors[error] += n


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
