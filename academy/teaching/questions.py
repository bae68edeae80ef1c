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

Two queries, of columns only: the attempts, and their cells.  Plain functions of a Session and
plain values; the caller owns the transaction (nothing is written).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from academy.catalog.models import Assignment
from academy.errors import NotFound
from academy.grading import deadlines
from academy.grading.models import CellScore, Submission, SubmissionStatus
from academy.grading.questions import question_names
from academy.grading.services import current_release
from academy.stats.export import Table

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


class _Attempt(NamedTuple):
    submission_id: int
    user_id: int
    attempt: int
    score: float | None


class _Cell(NamedTuple):
    submission_id: int
    notebook: str
    grade_id: str
    score: float | None
    max_score: float
    manual: bool
    hidden: bool
    error: str | None

    @property
    def key(self) -> Key:
        return self.notebook, self.grade_id


def counted_attempt(attempts: Iterable[tuple[int, float | None]], score_policy: str) -> int | None:
    """The attempt number that counts among one learner's ``(attempt, score)`` of scored submissions.

    The same choice as ``grading.standing`` makes for staff (nothing held): ``last`` the newest
    attempt with a score, ``best`` the earliest attempt with the best score
    (``deadlines.counting_score``).  None when no attempt has a score.
    """
    scored = [(attempt, score) for attempt, score in attempts if score is not None]
    if not scored:
        return None
    if score_policy == "last":
        return max(attempt for attempt, _score in scored)
    best = deadlines.counting_score(scored, "best")
    return min(attempt for attempt, score in scored if score == best)


def question_report(session: Session, assignment: Assignment,
                    learners: Collection[int] | None = None) -> QuestionReport:
    """Question statistics of ``assignment`` over ``learners`` (user ids; None: everyone who submitted).

    Counts only attempts whose status carries a score.  An assignment nobody submitted gives a
    report with no learners and no questions.
    """
    policy = str(assignment.policy("score_policy"))
    attempts, cells = _load(session, assignment, learners)

    by_learner: dict[int, list[_Attempt]] = defaultdict(list)
    for row in attempts:
        by_learner[row.user_id].append(row)
    counted: dict[int, int] = {}
    counted_ids: set[int] = set()
    for user_id, own in by_learner.items():
        number = counted_attempt([(a.attempt, a.score) for a in own], policy)
        if number is not None:
            counted[user_id] = number
            counted_ids.update(a.submission_id for a in own if a.attempt == number)

    # The grader reports each attempt's cells in the release's notebook and cell order
    # (engine.scores), and they arrive newest release first: so its questions lead, in its order,
    # and a question that only an older release had follows them.
    keys = list(dict.fromkeys(cell.key for cell in cells))
    names = _names(session, assignment, keys)
    user_of = {a.submission_id: a.user_id for a in attempts}
    by_key: dict[Key, list[_Cell]] = defaultdict(list)
    for cell in cells:
        by_key[cell.key].append(cell)

    questions = []
    failures = []
    for number, key in enumerate(keys, start=1):
        own = by_key[key]
        stat = _stat(key, number, names.get(key), own, counted_ids)
        questions.append(stat)
        if not stat.manual:
            failed = [c for c in own if c.score is not None and c.score < c.max_score - _EPSILON]
            if failed:
                failures.append(FailedQuestion(stat, len({user_of[c.submission_id] for c in failed}),
                                               len(failed), _errors(c.error for c in failed)))
    failures.sort(key=lambda f: (-f.learners, -f.attempts, f.question.number))
    return QuestionReport(assignment.id, assignment.slug, policy, len(counted), tuple(questions),
                          tuple(failures), counted)


def _load(session: Session, assignment: Assignment,
          learners: Collection[int] | None) -> tuple[list[_Attempt], list[_Cell]]:
    """The scored attempts of ``learners`` at ``assignment`` and their cells: two queries of columns."""
    if learners is not None and not learners:
        return [], []
    where = [Submission.assignment_id == assignment.id, Submission.status.in_(_SCORED)]
    if learners is not None:
        where.append(Submission.user_id.in_(sorted(set(learners))))
    attempts = list(map(_Attempt._make, session.execute(
        select(Submission.id, Submission.user_id, Submission.attempt, Submission.score).where(*where))))
    cells = list(map(_Cell._make, session.execute(
        select(CellScore.submission_id, CellScore.notebook, CellScore.grade_id, CellScore.score,
               CellScore.max_score, CellScore.manual, CellScore.hidden, CellScore.error)
        .join(Submission, Submission.id == CellScore.submission_id)
        .where(*where)
        .order_by(Submission.release_id.desc(), Submission.id.desc(), CellScore.id))))
    return attempts, cells


def _names(session: Session, assignment: Assignment, keys: Sequence[Key]) -> dict[Key, str]:
    """The questions' names in the current release; none when there is no release."""
    try:
        release = current_release(session, assignment)
    except NotFound:
        return {}
    return question_names(release, [notebook for notebook, _grade_id in keys])


def _stat(key: Key, number: int, name: str | None, cells: Sequence[_Cell], counted_ids: set[int]) -> QuestionStat:
    """One question's figures over the counted attempts' cells."""
    mine = [c for c in cells if c.submission_id in counted_ids]
    graded = [c for c in mine if c.score is not None]
    maximum = max((c.max_score for c in mine or cells), default=0.0)
    zero = partial = full = 0
    for cell in graded:
        score = float(cell.score or 0.0)
        if score >= cell.max_score - _EPSILON:
            full += 1
        elif score <= _EPSILON:
            zero += 1
        else:
            partial += 1
    mean = sum(float(c.score or 0.0) for c in graded) / len(graded) if graded else None
    percent = 100.0 * mean / maximum if mean is not None and maximum > 0 else None
    return QuestionStat(
        notebook=key[0], grade_id=key[1], number=number, name=name, max_score=maximum,
        manual=any(c.manual for c in cells), hidden=any(c.hidden for c in cells),
        learners=len(mine), mean=mean, mean_percent=percent,
        zero=zero, partial=partial, full=full, waiting=len(mine) - len(graded),
    )


def _errors(errors: Iterable[str | None]) -> tuple[ErrorGroup, ...]:
    """Failing attempts grouped by their error, whitespace normalised; most frequent first."""
    counts = Counter((" ".join(e.split()) or None) if e else None for e in errors)
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
