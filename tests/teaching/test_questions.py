"""``academy.teaching.questions``: question statistics of the shipped pandas assignment, against values counted by hand.

The pandas assignment (``01-pandas-basics``) has four graded cells in ``production_log``:
Q1 ``test_add_defect_rate`` (2 points, hidden tests), Q2 ``test_summarize_by_line`` (3),
Q3 ``test_find_bad_days`` (2) and Q4 ``priority_answer`` (3, a written answer).  The attempts,
as ``(Q1, Q2, Q3, Q4)`` points (None: written answer not graded yet), with the errors recorded:

======  =======  ====================  =====  ==================================================
learner attempt  points                total  errors
======  =======  ====================  =====  ==================================================
A       1        0, 1, 2, None         3      Q1 NameError rate, Q2 AssertionError 불량률
A       2        2, 3, 2, 2            9
A       3        2, 1, 0, None         5      Q2 AssertionError 불량률 (odd whitespace), Q3 none
B       1        2, 0, 1, 3            6      Q2 KeyError 'line', Q3 AssertionError 날짜
B       2        2, 3, 2, None         7
C       1        1, 3, 2, 0            6      Q1 AssertionError 불량률
C       2        2, 2, 2, 0            6      Q2 "" (an empty message)
C       3        grader error          -      (never counts)
D       1        grader error          -      cells that would fail Q3 (never count)
======  =======  ====================  =====  ==================================================

Counted under "best": A2, B2, C1 (the tie 6 = 6 goes to the earlier attempt).
Counted under "last": A3, B2, C2 (C3 has no score).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select
from sqlalchemy.orm import selectinload

from academy.catalog.models import Assignment
from academy.extensions import db
from academy.grading.models import AssignmentRelease, CellScore, Submission, SubmissionStatus
from academy.grading.standing import standing_from
from academy.stats.export import to_csv
from academy.teaching.questions import (
    ErrorGroup,
    QuestionReport,
    question_report,
    question_table,
)
from tests.grading import conftest as grading

# The shipped assignment released once per run (tests/grading/conftest.py).
course = grading.course
grader_cache = grading.grader_cache

NB = "production_log"
CELLS = (("test_add_defect_rate", 2.0, True, False), ("test_summarize_by_line", 3.0, False, False),
         ("test_find_bad_days", 2.0, False, False), ("priority_answer", 3.0, False, True))
RATE = "AssertionError: 불량률은 0과 1 사이여야 합니다"
NAME = "NameError: name 'rate' is not defined"
KEY = "KeyError: 'line'"
DATE = "AssertionError: 날짜가 틀렸습니다"
GRADED, GRADER_ERROR = SubmissionStatus.graded, SubmissionStatus.grader_error
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)

Points = tuple[float | None, float | None, float | None, float | None]
ATTEMPTS: dict[str, list[tuple[SubmissionStatus, Points, dict[int, str | None]]]] = {
    "A": [(GRADED, (0, 1, 2, None), {0: NAME, 1: RATE}),
          (GRADED, (2, 3, 2, 2), {}),
          (GRADED, (2, 1, 0, None), {1: "  AssertionError:  불량률은 0과 1\n사이여야 합니다 ", 2: None})],
    "B": [(GRADED, (2, 0, 1, 3), {1: KEY, 2: DATE}),
          (GRADED, (2, 3, 2, None), {})],
    "C": [(GRADED, (1, 3, 2, 0), {0: RATE}),
          (GRADED, (2, 2, 2, 0), {1: ""}),
          (GRADER_ERROR, (None, None, None, None), {})],
    "D": [(GRADER_ERROR, (2, 3, 0, 3), {2: "would count if grader errors did"})],
}


def _submission(assignment_id: int, release_id: int, user_id: int, attempt: int, status: SubmissionStatus,
                points: Points, errors: dict[int, str | None]) -> Submission:
    """An attempt at the pandas assignment with the given points per cell (a grader error has no score)."""
    score = sum(p for p in points if p is not None) if status.has_score else None
    cells = [CellScore(notebook=NB, grade_id=grade_id, score=points[i], max_score=maximum, hidden=hidden,
                       manual=manual, error=errors.get(i))
             for i, (grade_id, maximum, hidden, manual) in enumerate(CELLS)]
    return Submission(assignment_id=assignment_id, user_id=user_id, release_id=release_id, attempt=attempt,
                      status=status, score=score, raw_score=score, max_score=10.0, cells=cells,
                      submitted_at=NOW + dt.timedelta(hours=attempt))


@pytest.fixture
def attempts(app: Flask, course: dict[str, Any], make_user: Any) -> dict[str, Any]:
    """The attempts of the table above, written directly; returns the assignment id and learner ids."""
    ids = {key: make_user("learner") for key in ATTEMPTS}
    with app.app_context():
        assignment_id = course["assignment_id"]
        release_id = db.session.scalar(select(AssignmentRelease.id).where(
            AssignmentRelease.assignment_id == assignment_id))
        for key, rows in ATTEMPTS.items():
            for attempt, (status, points, errors) in enumerate(rows, start=1):
                db.session.add(_submission(assignment_id, release_id, ids[key], attempt, status, points, errors))
        db.session.commit()
    return {"assignment": assignment_id, **ids}


def _report(assignment_id: int, policy: str = "best", learners: set[int] | None = None) -> QuestionReport:
    assignment = db.session.get(Assignment, assignment_id)
    assignment.grading = {**(assignment.grading or {}), "score_policy": policy}
    return question_report(db.session, assignment, learners)


def _figures(report: QuestionReport) -> list[tuple[Any, ...]]:
    return [(q.grade_id, q.learners, q.zero, q.partial, q.full, q.waiting) for q in report.questions]


def test_best_attempts_give_the_hand_counted_figures(app: Flask, attempts: dict[str, Any]) -> None:
    with app.app_context():
        report = _report(attempts["assignment"], "best")
        assert report.learners == 3  # D's only attempt is a grader error
        assert report.counted_attempts == {attempts["A"]: 2, attempts["B"]: 2, attempts["C"]: 1}
        assert _figures(report) == [
            ("test_add_defect_rate", 3, 0, 1, 2, 0),
            ("test_summarize_by_line", 3, 0, 0, 3, 0),
            ("test_find_bad_days", 3, 0, 0, 3, 0),
            ("priority_answer", 3, 1, 1, 0, 1),  # B's answer waits; A 2 of 3, C none
        ]
        q1, q2, q3, q4 = report.questions
        assert [q.number for q in report.questions] == [1, 2, 3, 4]
        assert q1.mean == pytest.approx(5 / 3) and q1.mean_percent == pytest.approx(500 / 6)
        assert q2.mean == 3.0 and q2.mean_percent == 100.0 and q3.mean == 2.0
        assert q4.mean == 1.0 and q4.mean_percent == pytest.approx(100 / 3)  # over the two graded answers
        assert (q1.max_score, q2.max_score, q3.max_score, q4.max_score) == (2.0, 3.0, 2.0, 3.0)
        assert (q1.hidden, q1.manual, q2.hidden, q4.manual, q4.hidden) == (True, False, False, True, False)
        # Named as the released notebook's headings name them.
        assert [q.name for q in report.questions] == [
            "문제 1. 불량률 열 추가하기 (2점)", "문제 2. 라인별 요약 (3점)", "문제 3. 불량률이 높은 날 찾기 (2점)",
            "문제 4. 개선 우선순위 정하기 (서술형, 3점)"]


def test_last_attempts_give_the_hand_counted_figures(app: Flask, attempts: dict[str, Any]) -> None:
    with app.app_context():
        report = _report(attempts["assignment"], "last")
        assert report.score_policy == "last" and report.learners == 3
        # C's newest attempt is a grader error: the one before it counts.
        assert report.counted_attempts == {attempts["A"]: 3, attempts["B"]: 2, attempts["C"]: 2}
        assert _figures(report) == [
            ("test_add_defect_rate", 3, 0, 0, 3, 0),
            ("test_summarize_by_line", 3, 0, 2, 1, 0),
            ("test_find_bad_days", 3, 1, 0, 2, 0),
            ("priority_answer", 3, 1, 0, 0, 2),
        ]
        q1, q2, q3, q4 = report.questions
        assert q1.mean == 2.0 and q2.mean == 2.0 and q2.mean_percent == pytest.approx(200 / 3)
        assert q3.mean == pytest.approx(4 / 3) and q4.mean == 0.0 and q4.mean_percent == 0.0


def test_failed_most_ranks_autograded_cells_and_groups_their_errors(app: Flask, attempts: dict[str, Any]) -> None:
    with app.app_context():
        for policy in ("best", "last"):  # failures are counted over every scored attempt, whatever counts
            failed = _report(attempts["assignment"], policy).failed_most
            assert [(f.question.grade_id, f.learners, f.attempts) for f in failed] == [
                ("test_summarize_by_line", 3, 4),  # A1, A3, B1, C2
                ("test_add_defect_rate", 2, 2),  # A1, C1; ties with Q3 on both counts, so release order
                ("test_find_bad_days", 2, 2),  # A3, B1; D's grader error does not count
            ]  # the written answer is never in it
            q2, q1, q3 = failed
            assert q2.errors == (ErrorGroup(RATE, 2), ErrorGroup(KEY, 1), ErrorGroup(None, 1))
            assert q1.errors == (ErrorGroup(RATE, 1), ErrorGroup(NAME, 1))
            assert q3.errors == (ErrorGroup(DATE, 1), ErrorGroup(None, 1))


def test_a_set_of_learners_limits_every_figure(app: Flask, attempts: dict[str, Any]) -> None:
    with app.app_context():
        report = _report(attempts["assignment"], "best", {attempts["B"], attempts["D"]})
        assert report.learners == 1 and report.counted_attempts == {attempts["B"]: 2}
        assert _figures(report)[3] == ("priority_answer", 1, 0, 0, 0, 1)
        assert report.questions[3].mean is None and report.questions[3].mean_percent is None
        assert [(f.question.grade_id, f.learners, f.attempts, f.errors) for f in report.failed_most] == [
            ("test_summarize_by_line", 1, 1, (ErrorGroup(KEY, 1),)),
            ("test_find_bad_days", 1, 1, (ErrorGroup(DATE, 1),)),
        ]
        empty = _report(attempts["assignment"], "best", set())
        assert (empty.learners, empty.questions, empty.failed_most) == (0, (), ())


def test_the_counted_attempt_is_the_one_the_standing_counts(app: Flask, attempts: dict[str, Any]) -> None:
    with app.app_context():
        assignment = db.session.get(Assignment, attempts["assignment"])
        for policy in ("best", "last"):
            report = _report(attempts["assignment"], policy)
            for key in ATTEMPTS:
                own = db.session.scalars(select(Submission).where(
                    Submission.assignment_id == assignment.id, Submission.user_id == attempts[key])
                    .options(selectinload(Submission.cells))).all()
                standing = standing_from(assignment, own, due=None, now=NOW, staff=True)
                counted = standing.counted.submission.attempt if standing.counted else None
                assert report.counted_attempts.get(attempts[key]) == counted, (policy, key)


def test_at_most_five_messages_per_cell_most_frequent_first(app: Flask, course: dict[str, Any],
                                                              make_user: Any) -> None:
    learner = make_user("learner")
    messages = [RATE, RATE, RATE, NAME, NAME, KEY, DATE, "ValueError: x", "TypeError: y", None, "   "]
    with app.app_context():
        assignment_id = course["assignment_id"]
        release_id = db.session.scalar(select(AssignmentRelease.id).where(
            AssignmentRelease.assignment_id == assignment_id))
        for attempt, message in enumerate(messages, start=1):
            db.session.add(_submission(assignment_id, release_id, learner, attempt, GRADED, (0, 3, 2, 3),
                                       {0: message}))
        db.session.commit()
        [failed] = _report(assignment_id).failed_most
        assert (failed.question.grade_id, failed.learners, failed.attempts) == ("test_add_defect_rate", 1, 11)
        # None and a blank message group together; ties read in message order, None last.
        assert failed.errors == (ErrorGroup(RATE, 3), ErrorGroup(NAME, 2), ErrorGroup(None, 2),
                                 ErrorGroup(DATE, 1), ErrorGroup(KEY, 1))


def test_an_assignment_nobody_submitted_gives_an_empty_report(app: Flask, course: dict[str, Any]) -> None:
    with app.app_context():
        # The sensor assignment was loaded but never released: no release, no submissions.
        other = db.session.scalar(select(Assignment).where(Assignment.slug == "02-sensor-cleaning"))
        report = question_report(db.session, other)
        assert (report.learners, report.questions, report.failed_most, report.counted_attempts) == (0, (), (), {})
        table = question_table(report, {})
        assert table.name == "questions-02-sensor-cleaning" and list(table.rows) == []


def test_questions_the_release_does_not_name_are_numbered(app: Flask, course: dict[str, Any],
                                                         make_user: Any) -> None:
    learner = make_user("learner")
    with app.app_context():
        other = db.session.scalar(select(Assignment).where(Assignment.slug == "02-sensor-cleaning"))
        release = AssignmentRelease(assignment_id=other.id, version=1, source_hash="0" * 64, path="/nonexistent")
        db.session.add(release)
        db.session.flush()
        db.session.add(_submission(other.id, release.id, learner, 1, GRADED, (2, 3, 2, 3), {}))
        db.session.commit()
        report = question_report(db.session, other)
        assert [(q.number, q.name) for q in report.questions] == [(1, None), (2, None), (3, None), (4, None)]
        assert report.failed_most == () and report.learners == 1
        table = question_table(report, {"unnamed": "문항 %(n)d"})
        assert [row[1] for row in table.rows] == ["문항 1", "문항 2", "문항 3", "문항 4"]


def test_the_table_exports_one_row_per_question(app: Flask, attempts: dict[str, Any]) -> None:
    labels = {"title": "문항 통계", "question": "문항", "mean": "평균"}
    with app.app_context():
        table = question_table(_report(attempts["assignment"], "best"), labels)
    assert table.name == "questions-01-pandas-basics" and table.title == "문항 통계"
    assert table.header[:3] == ["#", "문항", "Points"] and table.header[6] == "평균" and len(table.header) == 15
    assert list(table.rows[0]) == [1, "문제 1. 불량률 열 추가하기 (2점)", 2.0, False, True, 3,
                                   1.67, 83.3, 0, 1, 2, 0, 2, 2, RATE]
    assert list(table.rows[3]) == [4, "문제 4. 개선 우선순위 정하기 (서술형, 3점)", 3.0, True, False, 3, 1.0, 33.3,
                                   1, 1, 0, 1, 0, 0, None]
    assert "문항 통계" not in to_csv(table).decode("utf-8-sig")  # the title is not a row
    assert to_csv(table).decode("utf-8-sig").splitlines()[1].startswith("1,문제 1. 불량률 열 추가하기 (2점),2.0,0,1,3,")


def test_three_queries_whatever_the_number_of_learners(app: Flask, attempts: dict[str, Any]) -> None:
    with app.app_context():
        assignment = db.session.get(Assignment, attempts["assignment"])
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(args[2])

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            question_report(db.session, assignment)
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        # The learners' kept cells (their counted attempts and their facts per question), the questions'
        # order (from the newest attempts' cells), and the current release for the names.
        assert len(statements) == 3, statements
        assert "FROM gradebook_cell" in statements[0]
        assert sum("FROM assignment_release" in s for s in statements) == 1
