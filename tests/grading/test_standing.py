"""``academy.grading.standing``: deadline, the attempt that counts, held results, status: with a fixed clock."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from academy.catalog.models import Assignment, Course
from academy.enrollment.models import Cohort
from academy.errors import ValidationFailed
from academy.extensions import db
from academy.grading.models import CellScore, Extension, Submission, SubmissionStatus
from academy.grading.questions import names_in_notebook
from academy.grading.services import cohort_deadline, grant_extension
from academy.grading.standing import STATUSES, cell_views, learner_standing, learner_standings, standing_from
from academy.users.models import User
from tests.support import ROOT

DUE = dt.datetime(2026, 12, 18, 14, 59, tzinfo=dt.UTC)  # 2026-12-18 23:59 KST
BEFORE = DUE - dt.timedelta(days=1)
AFTER = DUE + dt.timedelta(minutes=1)


def _assignment(pass_mark: float | None = None, **policy: Any) -> Assignment:
    rule = {} if pass_mark is None else {"min_score_percent": pass_mark}
    course = Course(slug="c", title_ko="과정", title_en="Course", passing_rule=rule, source_path="/nonexistent")
    return Assignment(course=course, slug="a", title_ko="과제", title_en="Task", max_score=10.0, grading=policy)


def _attempt(assignment: Assignment, attempt: int, score: float | None, *, hidden: float = 0.0,
             status: SubmissionStatus = SubmissionStatus.graded, essay: float | None | bool = False) -> Submission:
    """An attempt worth 10: 4 visible points, 3 hidden points (``hidden`` of them earned), 3 for an essay.

    ``score`` is the total the grader recorded; ``essay`` False leaves the essay out, None leaves it waiting.
    """
    cells = [] if not status.has_score else [
        CellScore(notebook="n.ipynb", grade_id="visible", score=(score or 0.0) - hidden - (essay or 0.0),
                  max_score=4.0, hidden=False, manual=False),
        CellScore(notebook="n.ipynb", grade_id="secret", score=hidden, max_score=3.0, hidden=True, manual=False,
                  error="AssertionError: hidden detail" if hidden < 3.0 else None),
    ]
    if essay is not False and status.has_score:
        cells.append(CellScore(notebook="n.ipynb", grade_id="essay", score=essay, max_score=3.0, hidden=False,
                               manual=True))
    return Submission(assignment=assignment, attempt=attempt, status=status, max_score=10.0, penalty_percent=0.0,
                      score=score if status.has_score else None, due_at=DUE - dt.timedelta(days=30), cells=cells)


def test_hidden_results_are_held_until_the_deadline_and_never_decide_passed() -> None:
    assignment = _assignment()
    attempt = _attempt(assignment, 1, 7.0, hidden=3.0)  # passes only with the hidden points
    held = standing_from(assignment, [attempt], due=DUE, now=BEFORE)
    assert held.held and held.status == "held" and held.score is None
    [row] = held.attempts
    assert row.final_score is None and row.visible_score == 4.0 and row.visible_max == 4.0
    released = standing_from(assignment, [attempt], due=DUE, now=AFTER)
    assert not released.held and released.status == "passed" and released.score == 7.0
    # The course's staff see everything before the deadline.
    assert standing_from(assignment, [attempt], due=DUE, now=BEFORE, staff=True).status == "passed"
    # An assignment that shows hidden results at once never holds them.
    immediate = _assignment(hidden_tests="immediately")
    assert standing_from(immediate, [_attempt(immediate, 1, 7.0, hidden=3.0)], due=DUE, now=BEFORE).status == "passed"


def test_the_pass_mark_is_the_courses_on_the_final_score() -> None:
    default = _assignment()
    assert standing_from(default, [_attempt(default, 1, 6.0)], due=DUE, now=AFTER).status == "passed"  # 60 %
    assert standing_from(default, [_attempt(default, 1, 5.9)], due=DUE, now=AFTER).status == "not_passed"
    strict = _assignment(pass_mark=80)
    standing = standing_from(strict, [_attempt(strict, 1, 7.0)], due=DUE, now=AFTER)
    assert standing.status == "not_passed" and standing.pass_mark == 80.0


@pytest.mark.parametrize(("policy", "counted"), [("best", 1), ("last", 3)])
def test_best_or_last_attempt_counts(policy: str, counted: int) -> None:
    assignment = _assignment(score_policy=policy)
    attempts = [_attempt(assignment, 1, 9.0), _attempt(assignment, 2, 4.0), _attempt(assignment, 3, 5.0),
                _attempt(assignment, 4, None, status=SubmissionStatus.grader_error)]
    standing = standing_from(assignment, attempts, due=DUE, now=AFTER)
    assert standing.counted is not None and standing.counted.submission.attempt == counted
    assert [a.submission.attempt for a in standing.attempts] == [4, 3, 2, 1]  # newest first
    assert sum(a.counts for a in standing.attempts) == 1
    assert standing.status == ("passed" if policy == "best" else "not_passed")


def test_which_attempt_counts_gives_nothing_hidden_away() -> None:
    """Under "best", while held, the attempt with the best visible score counts; after, the best total."""
    assignment = _assignment()
    attempts = [_attempt(assignment, 1, 4.0, hidden=0.0), _attempt(assignment, 2, 5.0, hidden=3.0)]
    held = standing_from(assignment, attempts, due=DUE, now=BEFORE)
    assert held.counted.submission.attempt == 1 and held.as_json()["counted_attempt"] == 1
    assert held.as_json()["score"] is None
    released = standing_from(assignment, attempts, due=DUE, now=AFTER)
    assert released.counted.submission.attempt == 2 and released.score == 5.0


def test_a_grader_error_never_counts_and_grading_in_progress_says_so() -> None:
    assignment = _assignment(score_policy="last")
    failed = _attempt(assignment, 1, None, status=SubmissionStatus.grader_error)
    standing = standing_from(assignment, [failed], due=DUE, now=AFTER)
    assert standing.status == "grader_error" and standing.counted is None and standing.score is None
    queued = _attempt(assignment, 2, None, status=SubmissionStatus.queued)
    assert standing_from(assignment, [failed, queued], due=DUE, now=AFTER).status == "grading"
    assert standing_from(assignment, [], due=DUE, now=AFTER).status == "not_started"
    assert standing_from(assignment, [], due=DUE, now=AFTER).overdue
    assert not standing_from(assignment, [], due=DUE, now=BEFORE).overdue
    # Code that failed still earns the points it got: it counts like any graded attempt.
    crashed = _attempt(assignment, 3, 2.0, status=SubmissionStatus.learner_code_failed)
    assert standing_from(assignment, [failed, crashed], due=DUE, now=AFTER).counted.submission is crashed


def test_written_answers_wait_for_the_instructor() -> None:
    assignment = _assignment()
    waiting = _attempt(assignment, 1, 7.0, hidden=3.0, essay=None)
    standing = standing_from(assignment, [waiting], due=DUE, now=AFTER)
    assert standing.status == "waiting_for_instructor" and standing.attempts[0].waiting
    essay = next(v for v in cell_views(waiting, held=False) if v.cell.manual)
    assert essay.waiting and not essay.shown
    # Before the deadline the hidden part is held first; the essay's points, once given, are visible.
    graded = _attempt(assignment, 1, 9.5, hidden=3.0, essay=2.5)
    held = standing_from(assignment, [graded], due=DUE, now=BEFORE)
    assert held.status == "held" and held.attempts[0].visible_score == 6.5 and held.attempts[0].visible_max == 7.0
    assert standing_from(assignment, [graded], due=DUE, now=AFTER).status == "passed"


def test_each_cell_shows_what_the_learner_may_read(app: Flask) -> None:
    assignment = _assignment()
    attempt = _attempt(assignment, 1, 5.0, hidden=1.0)
    visible, secret = attempt.cells
    visible.visible_passed, visible.error = False, "AssertionError: 2 != 3"
    secret.visible_passed, secret.visible_error = False, "AssertionError: visible check"
    with app.test_request_context():
        held = {v.cell.grade_id: v for v in cell_views(attempt, held=True)}
        released = {v.cell.grade_id: v for v in cell_views(attempt, held=False)}
        assert held["visible"].shown and held["visible"].message == "AssertionError: 2 != 3"
        assert held["secret"].held and not held["secret"].shown
        assert held["secret"].message == "AssertionError: visible check", "never the hidden tests' error"
        assert released["secret"].shown and released["secret"].message == "AssertionError: visible check"
        secret.visible_passed, secret.visible_error = True, None
        assert next(v for v in cell_views(attempt, held=True) if v.cell.hidden).message is None
        assert next(v for v in cell_views(attempt, held=False) if v.cell.hidden).message == secret.error
        # No release on disk: questions are numbered, never named by their grade id.
        assert [v.name for v in released.values()] == ["문항 1", "문항 2"] or \
            [v.name for v in released.values()] == ["Question 1", "Question 2"]


def test_questions_are_named_as_the_notebook_names_them() -> None:
    def md(text: str, **nbgrader: Any) -> dict[str, Any]:
        return {"cell_type": "markdown", "source": text, "metadata": {"nbgrader": nbgrader} if nbgrader else {}}

    def test(grade_id: str) -> dict[str, Any]:
        return {"cell_type": "code", "source": "assert True", "metadata": {"nbgrader": {
            "grade": True, "solution": False, "grade_id": grade_id, "points": 1}}}

    notebook = {"cells": [
        test("before_anything"),
        md("Fill in the function below.\n\nMore words."),
        test("first"),
        md("# Part 2: **Cleaning** the `data`\nSome text"),
        test("second"), test("third"),
        md("YOUR ANSWER HERE", grade=True, solution=True, grade_id="essay", points=2),
        md("Not a heading, but after one"),
        test("fourth"),
    ]}
    names = names_in_notebook(notebook)
    assert "before_anything" not in names
    assert names["first"] == "Fill in the function below."
    assert names["second"] == "Part 2: Cleaning the data"
    assert names["third"] == "Part 2: Cleaning the data (2)"
    assert names["essay"] == "Part 2: Cleaning the data (3)"
    assert names["fourth"] == "Part 2: Cleaning the data (4)", "the nearest heading wins over later instructions"
    shipped = json.loads((ROOT / "courses" / "python-data" / "source" / "01-pandas-basics"
                          / "production_log.ipynb").read_text(encoding="utf-8"))
    named = names_in_notebook(shipped)
    assert named["test_add_defect_rate"] == "문제 1. 불량률 열 추가하기 (2점)"
    assert named["priority_answer"] == "문제 4. 개선 우선순위 정하기 (서술형, 3점)"
    assert names_in_notebook({"cells": "nonsense"}) == {} and names_in_notebook({}) == {}


# --- with the database: cohorts, extensions and the batch form -----------------------------------------------


def _enrolled(app: Flask, make_cohort: Any, make_user: Any) -> tuple[int, int, int]:
    """A learner enrolled in a new cohort; returns (learner id, cohort id, assignment id)."""
    from academy.enrollment.services import request_enrollment

    cohort_id = make_cohort(capacity=5)
    learner_id = make_user("learner")
    with app.app_context():
        cohort = db.session.get(Cohort, cohort_id)
        request_enrollment(db.session, cohort, db.session.get(User, learner_id))
        assignment_id = cohort.track.courses[0].assignments[0].id
        db.session.commit()
    return learner_id, cohort_id, assignment_id


def test_the_deadline_is_the_cohorts_or_the_learners_extension(app: Flask, make_cohort: Any, make_user: Any) -> None:
    learner_id, cohort_id, assignment_id = _enrolled(app, make_cohort, make_user)
    staff = make_user("admin")
    with app.app_context():
        assignment, learner = db.session.get(Assignment, assignment_id), db.session.get(User, learner_id)
        original = cohort_deadline(assignment, db.session.get(Cohort, cohort_id))
        standing = learner_standing(db.session, assignment, learner, now=original - dt.timedelta(days=1))
        assert standing.due_at == original and not standing.extended and standing.status == "not_started"
        later = original + dt.timedelta(days=10)
        grant_extension(db.session, assignment, learner, later, actor=db.session.get(User, staff))
        db.session.commit()
        standing = learner_standing(db.session, assignment, learner, now=original + dt.timedelta(days=1))
        assert standing.due_at == later and standing.extended and not standing.overdue
        # An "extension" that ends before (or at) the original deadline is refused; the granted one stays.
        for bad in (original - dt.timedelta(days=1), original):
            with pytest.raises(ValidationFailed, match="원래 마감"):
                grant_extension(db.session, assignment, learner, bad, actor=db.session.get(User, staff))
            db.session.rollback()
        assert db.session.scalar(db.select(Extension.due_at)) == later


def test_the_batch_form_needs_no_query_per_assignment(app: Flask, make_cohort: Any, make_user: Any) -> None:
    learner_id, cohort_id, assignment_id = _enrolled(app, make_cohort, make_user)
    with app.app_context():
        from academy.grading.models import AssignmentRelease

        first = db.session.get(Assignment, assignment_id)
        release = AssignmentRelease(assignment_id=first.id, version=1, source_hash="0" * 64, path="/nonexistent")
        db.session.add(release)
        assignments = [first] + [Assignment(course=first.course, slug=f"extra-{i}", title_ko="과제", title_en="Task",
                                            max_score=10.0, due_days=7 + i) for i in range(4)]
        db.session.add_all(assignments)
        db.session.flush()
        for assignment in assignments:
            for attempt in (1, 2):
                db.session.add(Submission(assignment_id=assignment.id, user_id=learner_id, release=release,
                                          attempt=attempt, status=SubmissionStatus.graded, score=8.0, raw_score=8.0,
                                          max_score=10.0, cells=[CellScore(notebook="n", grade_id="g", score=8.0,
                                                                           max_score=10.0)]))
        db.session.commit()
        learner, cohort = db.session.get(User, learner_id), db.session.get(Cohort, cohort_id)
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(args[2])

        learner_standings(db.session, learner, assignments, cohort=cohort, now=BEFORE)  # loads the catalogue rows
        engine = db.engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            one = learner_standings(db.session, learner, assignments[:1], cohort=cohort, now=BEFORE)
            queries_for_one = len(statements)
            statements.clear()
            many = learner_standings(db.session, learner, assignments, cohort=cohort, now=BEFORE)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(statements) == queries_for_one <= 3, statements
        assert set(many) == {a.id for a in assignments} and one[first.id].status in STATUSES
        assert all(s.due_at == cohort_deadline(s.assignment, cohort) for s in many.values())
