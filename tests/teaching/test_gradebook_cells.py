"""The gradebook's kept cells (``academy.teaching.cells``) stay what ``standing_from`` computes, whatever changed.

Each step changes the data the way the portal does (the grading services, the catalog's objects,
bulk statements) and commits; then every kept cell of the course is compared with the staff
standing built from the attempts themselves (``learner_standing(..., staff=True)``, which loads
every attempt with its cells), and with the gradebook's page built from the kept cells.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, insert, select, update

from academy.extensions import db

TEACHER = "cells-teacher@example.kr"
RESULT_Q1 = {"grade_id": "q1", "score": 6.0, "max_score": 8.0}


@pytest.fixture
def world(app: Flask, make_track: Any, make_cohort: Any, make_user: Any) -> dict[str, Any]:
    """A course of two assignments with a release each, a cohort, two learners and an instructor."""
    from academy.catalog.models import Assignment, Course
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import request_enrollment
    from academy.grading.models import AssignmentRelease
    from academy.users.models import User

    track_id = make_track(instructors=(TEACHER,))
    cohort_id = make_cohort(capacity=5, track_id=track_id)
    teacher = make_user("instructor", email=TEACHER)
    learners = [make_user(name=f"학습자 {n}", email=f"cells{n}@example.kr") for n in (1, 2)]
    with app.app_context():
        course = db.session.scalar(select(Course).where(Course.track_id == track_id))
        second = Assignment(course=course, slug="02-second", title_ko="두 번째", title_en="Second", position=1,
                            due_days=14, max_score=10.0, notebooks=["intro.ipynb"])
        db.session.add(second)
        db.session.flush()
        for assignment in course.assignments:
            db.session.add(AssignmentRelease(assignment=assignment, version=1, source_hash=f"h{assignment.id}",
                                             path="/nonexistent"))
        for user_id in learners:
            request_enrollment(db.session, db.session.get(Cohort, cohort_id), db.session.get(User, user_id))
        db.session.commit()
        return {"course": course.id, "assignments": [a.id for a in course.assignments], "learners": learners,
                "teacher": teacher, "cohort": cohort_id}


def _agree(world: dict[str, Any]) -> dict[tuple[int, int], Any]:
    """Assert that every kept cell of the course is what the standing computes; returns the kept cells by pair."""
    from academy.catalog.models import Assignment, Course
    from academy.grading.models import Submission
    from academy.grading.standing import flag_unreviewed, learner_standing
    from academy.teaching.models import GradebookCell
    from academy.teaching.services import build_gradebook
    from academy.users.models import User

    db.session.expire_all()
    kept = {(c.user_id, c.assignment_id): c for c in db.session.scalars(select(GradebookCell))}
    book = build_gradebook(db.session, db.session.get(Course, world["course"]))
    rows = {row.user.id: row for row in book.rows}
    for user_id in world["learners"]:
        user = db.session.get(User, user_id)
        for assignment_id in world["assignments"]:
            assignment = db.session.get(Assignment, assignment_id)
            standing = learner_standing(db.session, assignment, user, staff=True)
            attempts = db.session.scalars(select(Submission).where(
                Submission.user_id == user_id, Submission.assignment_id == assignment_id)).all()
            cell = kept.get((user_id, assignment_id))
            where = (user_id, assignment_id)
            if not attempts:
                assert cell is None and standing.status == "not_started", where
            else:
                counted = standing.counted
                assert cell is not None, where
                assert (cell.status, cell.score, cell.attempts) == (standing.status, standing.score, len(attempts)), \
                    where
                assert cell.counted_submission_id == (counted.submission.id if counted else None), where
                assert cell.counted_attempt == (counted.submission.attempt if counted else None), where
                assert cell.late_days == (counted.submission.late_days if counted else 0), where
                assert cell.flag_unreviewed == any(flag_unreviewed(s) for s in attempts), where
                assert cell.last_submitted_at == max(s.submitted_at for s in attempts), where
            shown = rows[user_id].cells[assignment_id]
            assert (shown.status, shown.score, shown.max_score, shown.due_at, shown.overdue) == \
                (standing.status, standing.score, standing.max_score, standing.due_at, standing.overdue), where
    assert set(kept) <= {(u, a) for u in world["learners"] for a in world["assignments"]}
    return kept


def _submit(world: dict[str, Any], learner: int, assignment: int, attempt: int, **fields: Any) -> int:
    """A new attempt, as submitting leaves it: queued for grading."""
    from academy.grading.models import AssignmentRelease, Submission, SubmissionStatus

    release = db.session.scalar(select(AssignmentRelease.id).where(AssignmentRelease.assignment_id == assignment))
    submission = Submission(assignment_id=assignment, user_id=learner, release_id=release, attempt=attempt,
                            status=SubmissionStatus.queued, max_score=10.0,
                            submitted_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=10 - attempt), **fields)
    db.session.add(submission)
    db.session.commit()
    return submission.id


def _graded(submission_id: int, q1: float, *, essay: float | None = None, flags: tuple[str, ...] = ()) -> None:
    """The grader's result for the attempt, recorded as the worker records it."""
    from academy.grading.models import Submission
    from academy.grading.services import record_result

    cells = [{**RESULT_Q1, "score": q1},
             {"grade_id": "essay", "score": essay, "max_score": 2.0, "needs_manual_grading": True}]
    record_result(db.session, db.session.get(Submission, submission_id),
                  {"status": "graded", "score": q1, "max_score": 10.0, "flags": list(flags),
                   "notebooks": [{"name": "intro.ipynb", "cells": cells}]})
    db.session.commit()


def test_kept_cells_follow_every_kind_of_change(app: Flask, world: dict[str, Any]) -> None:
    from academy.catalog.models import Assignment, Course
    from academy.grading.models import CellScore, Submission
    from academy.grading.services import (
        CONFIRMED,
        grade_by_hand,
        grant_extension,
        override_score,
        regrade,
        review_flag,
    )
    from academy.teaching.cells import rebuild
    from academy.users.models import User

    minsu, jiwoo = world["learners"]
    first, second = world["assignments"]
    with app.app_context():
        teacher = db.session.get(User, world["teacher"])
        assert _agree(world) == {}  # nobody has attempted anything

        # A new attempt: queued, then graded with a written answer waiting for points.
        one = _submit(world, minsu, first, 1)
        assert _agree(world)[(minsu, first)].status == "grading"
        _graded(one, 3.0)
        assert _agree(world)[(minsu, first)].status == "waiting_for_instructor"

        # Grading by hand: the written answer gets its points.
        essay = db.session.scalar(select(CellScore.id).where(CellScore.submission_id == one,
                                                             CellScore.grade_id == "essay"))
        grade_by_hand(db.session, db.session.get(Submission, one), {essay: 2.0}, actor=teacher)
        db.session.commit()
        cell = _agree(world)[(minsu, first)]
        assert (cell.status, cell.score) == ("not_passed", 5.0)

        # A second, better attempt that the grader flags: it waits for staff, then staff confirm it.
        two = _submit(world, minsu, first, 2, late_days=1)
        _graded(two, 8.0, essay=2.0, flags=("float subclass",))
        cell = _agree(world)[(minsu, first)]
        assert cell.flag_unreviewed and cell.status == "waiting_for_instructor" and cell.attempts == 2
        review_flag(db.session, db.session.get(Submission, two), CONFIRMED, reason="checked by hand", actor=teacher)
        db.session.commit()
        cell = _agree(world)[(minsu, first)]
        assert (cell.status, cell.score, cell.counted_attempt, cell.late_days) == ("passed", 10.0, 2, 1)
        assert not cell.flag_unreviewed

        # An override of an autograded cell, kept across a regrade.
        q1 = db.session.scalar(select(CellScore.id).where(CellScore.submission_id == two, CellScore.grade_id == "q1"))
        db.session.refresh(teacher)  # override_score reads actor.id after adding its row: not while expired
        override_score(db.session, db.session.get(Submission, two), q1, 2.0, reason="wrong test", actor=teacher)
        db.session.commit()
        cell = _agree(world)[(minsu, first)]
        assert (cell.score, cell.counted_attempt) == (5.0, 1)  # 2 + 2 < 3 + 2: the first attempt counts again
        regrade(db.session, [db.session.get(Submission, two)], actor=teacher)
        db.session.commit()
        assert _agree(world)[(minsu, first)].status == "grading"
        _graded(two, 8.0, flags=("float subclass",))
        assert _agree(world)[(minsu, first)].counted_attempt == 1

        # An extension: nothing of the kept cell depends on the deadline, the page's deadline moves.
        grant_extension(db.session, db.session.get(Assignment, second), db.session.get(User, jiwoo),
                        dt.datetime.now(dt.UTC) + dt.timedelta(days=60), actor=teacher)
        db.session.commit()
        _agree(world)

        # The assignment's score policy: the last attempt counts from now on.
        db.session.get(Assignment, first).grading = {"score_policy": "last"}
        db.session.commit()
        assert _agree(world)[(minsu, first)].counted_attempt == 2

        # The course's pass mark.
        three = _submit(world, jiwoo, second, 1)
        _graded(three, 6.0, essay=1.0)
        assert _agree(world)[(jiwoo, second)].status == "passed"  # 7 of 10 against 60 %
        db.session.get(Course, world["course"]).passing_rule = {"min_score_percent": 80}
        db.session.commit()
        assert _agree(world)[(jiwoo, second)].status == "not_passed"

        # Bulk statements: an insert of rows, an update and a delete by condition.
        release = db.session.scalar(select(Submission.release_id).where(Submission.id == three))
        db.session.execute(insert(Submission), [{
            "public_id": "00000000-0000-4000-8000-000000000001", "assignment_id": first, "user_id": jiwoo,
            "release_id": release, "attempt": 1, "status": "graded", "score": 9.0, "raw_score": 9.0,
            "max_score": 10.0, "submitted_at": dt.datetime.now(dt.UTC), "problems": [], "flag_reasons": []}])
        db.session.commit()
        assert _agree(world)[(jiwoo, first)].score == 9.0
        db.session.execute(update(Submission).where(Submission.user_id == jiwoo, Submission.assignment_id == first)
                           .values(score=4.0))
        db.session.commit()
        assert _agree(world)[(jiwoo, first)].status == "not_passed"
        db.session.execute(delete(CellScore).where(CellScore.submission_id == three))
        db.session.commit()
        _agree(world)
        db.session.execute(delete(Submission).where(Submission.user_id == jiwoo, Submission.assignment_id == first))
        db.session.commit()
        assert (jiwoo, first) not in _agree(world)

        # An attempt deleted through the session takes its learner back to "not started" when it was the only one.
        db.session.delete(db.session.get(Submission, three))
        db.session.commit()
        assert (jiwoo, second) not in _agree(world)

        # A change rolled back leaves the kept cells as they were.
        before = {pair: (c.status, c.score) for pair, c in _agree(world).items()}
        db.session.get(Assignment, first).grading = {"score_policy": "best"}
        db.session.flush()
        db.session.rollback()
        assert {pair: (c.status, c.score) for pair, c in _agree(world).items()} == before

        # Rebuilding from scratch changes nothing.
        assert rebuild(db.session) == len(before)
        db.session.commit()
        assert {pair: (c.status, c.score) for pair, c in _agree(world).items()} == before


def test_a_reader_sees_its_own_transaction_s_changes(app: Flask, world: dict[str, Any]) -> None:
    """Before the commit, the gradebook and the question statistics already count a policy just changed."""
    from academy.catalog.models import Assignment, Course
    from academy.teaching.questions import question_report
    from academy.teaching.services import build_gradebook

    minsu = world["learners"][0]
    first = world["assignments"][0]
    with app.app_context():
        _graded(_submit(world, minsu, first, 1), 8.0, essay=2.0)
        _graded(_submit(world, minsu, first, 2), 1.0, essay=0.0)
        assignment = db.session.get(Assignment, first)
        assert question_report(db.session, assignment).counted_attempts == {minsu: 1}
        assignment.grading = {"score_policy": "last"}  # not flushed, not committed
        assert question_report(db.session, assignment).counted_attempts == {minsu: 2}
        row = next(r for r in build_gradebook(db.session, db.session.get(Course, world["course"])).rows
                   if r.user.id == minsu)
        assert row.cells[first].score == 1.0
        db.session.rollback()
        assert question_report(db.session, db.session.get(Assignment, first)).counted_attempts == {minsu: 1}


def test_the_rebuild_command(app: Flask, world: dict[str, Any]) -> None:
    from academy.teaching.cli import gradebook_group
    from academy.teaching.models import GradebookCell

    minsu = world["learners"][0]
    with app.app_context():
        _graded(_submit(world, minsu, world["assignments"][0], 1), 8.0, essay=2.0)
        db.session.execute(delete(GradebookCell))  # as if the rows had been written around the portal
        db.session.commit()
    runner = app.test_cli_runner()
    result = runner.invoke(gradebook_group, ["rebuild", "--course", str(world["course"])])
    assert result.exit_code == 0 and "gradebook cells written: 1" in result.output
    again = runner.invoke(gradebook_group, ["rebuild"])
    assert again.exit_code == 0 and "gradebook cells written: 1" in again.output
    with app.app_context():
        _agree(world)
    assert runner.invoke(gradebook_group, ["rebuild", "--course", "999999"]).exit_code == 2
