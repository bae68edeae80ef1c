"""Completion of courses and tracks: the rule on plain values, then recorded, withdrawn and rebuilt in the database.

The clock is fixed: every judgement gets ``now``.  Scores are written as the grader would leave
them (``worker._finish`` with a result in the ``academy grade --json`` shape) or set directly on
the rows where only the arithmetic matters.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from academy.audit.models import AuditEntry
from academy.catalog.models import Course
from academy.completion.models import Completion
from academy.completion.rules import AssignmentResult, PassingRule, hours_reached, judge
from academy.completion.services import (
    course_outcome,
    recompute,
    recompute_changed_rules,
    refresh,
    refresh_due,
    rule_snapshot,
)
from academy.enrollment.models import Cohort
from academy.extensions import db
from academy.grading.models import CellScore, GradingJob, JobState, Submission, SubmissionStatus
from academy.labs.models import LabSession, LabState
from academy.mail.models import OutboxMessage
from academy.users.models import User
from tests.completion.conftest import T0, _graded, _in_force, _shown_at_once


def _result(slug: str, score: float | None, max_score: float = 10.0, status: str = "passed",
            at: dt.datetime | None = T0) -> AssignmentResult:
    return AssignmentResult(slug, status, score, max_score, at if score is not None else None)


# -- the rule on plain values ----------------------------------------------------------------------------------------

def test_every_required_assignment_must_be_passed_and_the_date_is_the_last_one() -> None:
    rule = PassingRule.from_manifest({"min_score_percent": 70, "required_assignments": ["a", "b"]}, ["a", "b", "c"])
    later = T0 + dt.timedelta(days=3)
    outcome = judge(rule, [_result("a", 8.0), _result("b", 7.0, at=later), _result("c", None, status="not_started")])
    assert outcome.met and outcome.completed_at == later
    assert outcome.score_percent == pytest.approx(50.0)  # 15 of 30 points: c counts 0
    failing = judge(rule, [_result("a", 8.0), _result("b", 6.0, status="not_passed")])
    assert not failing.met and [c.assignment for c in failing.failed] == ["b"]
    assert failing.completed_at is None


def test_no_required_list_means_every_assignment() -> None:
    rule = PassingRule.from_manifest({"min_score_percent": 60}, ["a", "b"])
    assert rule.required == ("a", "b")
    outcome = judge(rule, [_result("a", 9.0), _result("b", None, status="not_started")])
    assert not outcome.met and [c.assignment for c in outcome.failed] == ["b"]


def test_held_grading_or_waiting_results_are_pending_not_failed() -> None:
    rule = PassingRule.from_manifest({"min_score_percent": 60}, ["a", "b", "c"])
    outcome = judge(rule, [_result("a", None, status="held"), _result("b", None, status="grading"),
                           _result("c", None, status="waiting_for_instructor")])
    assert not outcome.met and outcome.failed == []
    assert all(c.pending for c in outcome.conditions)


def test_minimum_total_and_lab_hours() -> None:
    rule = PassingRule.from_manifest(
        {"min_score_percent": 50, "required_assignments": ["a"], "min_total_percent": 75, "min_lab_hours": 2},
        ["a", "b"])
    results = [_result("a", 10.0), _result("b", 4.0, status="not_passed")]  # 14 of 20 = 70 %
    outcome = judge(rule, results, lab_hours=3.0, lab_hours_reached_at=T0)
    assert [c.kind for c in outcome.failed] == ["total"] and outcome.failed[0].have == pytest.approx(70.0)
    better = judge(rule, [_result("a", 10.0), _result("b", 6.0)], lab_hours=1.5)
    assert [c.kind for c in better.failed] == ["lab_hours"]
    reached = T0 + dt.timedelta(days=5)
    done = judge(rule, [_result("a", 10.0), _result("b", 6.0)], lab_hours=2.5, lab_hours_reached_at=reached)
    assert done.met and done.completed_at == reached


def test_lab_hours_are_reached_inside_the_session_that_crosses_them() -> None:
    spans = [(T0 + dt.timedelta(days=1), T0 + dt.timedelta(days=1, hours=1)),
             (T0, T0 + dt.timedelta(minutes=30))]
    assert hours_reached(spans, 1.0) == T0 + dt.timedelta(days=1, minutes=30)
    assert hours_reached(spans, 2.0) is None
    assert hours_reached(spans, 0.25) == T0 + dt.timedelta(minutes=15)


# -- recorded in the database ----------------------------------------------------------------------------------------

def test_a_course_is_completed_when_its_results_become_final(app: Flask, academy: dict[str, Any]) -> None:
    ids = academy
    with app.app_context():
        learner, course_a = db.session.get(User, ids["learner"]), db.session.get(Course, ids["a"])
        _graded(ids, "a1", 7.0)
        before = ids["due_a1"] - dt.timedelta(hours=1)
        change = refresh(db.session, learner, course_a, now=before)
        assert change.recorded == [] and _in_force(ids) == []  # held until the deadline: pending, not failed
        outcome = course_outcome(db.session, learner, course_a, now=before)
        assert outcome.failed == [] and not outcome.met
        after = ids["due_a1"] + dt.timedelta(minutes=1)
        # a1 passed (70 %) but the total is 7 of 20 = 35 %: the total condition fails.
        assert [c.kind for c in course_outcome(db.session, learner, course_a, now=after).failed] == ["total"]
        _graded(ids, "a2", 5.0, at=ids["due_a1"] + dt.timedelta(days=3))
        after_a2 = ids["due_a2"] + dt.timedelta(minutes=1)
        change = refresh(db.session, learner, course_a, now=after_a2)
        db.session.commit()
        [row] = change.recorded
        # The last condition became true when a2's hidden results were released at its deadline.
        assert row.completed_at == ids["due_a2"] and row.course_id == ids["a"] and row.track_id == ids["track"]
        assert row.score_percent == pytest.approx(60.0) and row.evidence["rule"]["min_total_percent"] == 50
        assert _in_force(ids, course_id=None) == []  # course B is not completed: no track completion
        subject = db.session.scalar(select(OutboxMessage.subject).where(OutboxMessage.recipient == learner.email))
        assert subject == f"You completed {course_a.title_en}"  # in the learner's language
        assert db.session.scalar(select(func.count()).select_from(AuditEntry)
                                 .where(AuditEntry.action == "completion.record")) == 1


def test_the_track_follows_its_courses_and_a_regrade_withdraws_both(app: Flask, academy: dict[str, Any]) -> None:
    ids = academy
    with app.app_context():
        learner = db.session.get(User, ids["learner"])
        course_a, course_b = db.session.get(Course, ids["a"]), db.session.get(Course, ids["b"])
        now = ids["due_a2"] + dt.timedelta(days=1)
        first = _graded(ids, "a1", 9.0)
        _graded(ids, "a2", 8.0)
        _graded(ids, "b1", 6.0, at=T0 + dt.timedelta(days=5))
        refresh(db.session, learner, course_a, now=now)
        change = refresh(db.session, learner, course_b, now=now)
        db.session.commit()
        kinds = sorted((r.course_id is None, r.completed_at) for r in change.recorded)
        # Course B completed at its deadline (b1's hidden results released then), and the track with it.
        assert kinds == [(False, ids["due_b1"]), (True, max(ids["due_a2"], ids["due_b1"]))]
        [track_row] = _in_force(ids, course_id=None)
        assert sorted(track_row.evidence["courses"]) == sorted([ids["a"], ids["b"]])
        # Calling it again changes nothing.
        again = refresh(db.session, learner, course_a, now=now)
        assert again.recorded == again.withdrawn == []

        # A regrade drops a1 below the pass mark: course A and the track are withdrawn, with the reason.
        row = db.session.get(Submission, first)
        row.score = row.raw_score = 4.0
        row.cells[0].score = 4.0
        later = now + dt.timedelta(days=1)
        change = refresh(db.session, learner, course_a, now=later, reason="score_changed")
        db.session.commit()
        withdrawn = {r.course_id: r for r in change.withdrawn}
        assert set(withdrawn) == {ids["a"], None}
        assert withdrawn[ids["a"]].withdrawn_reason == "score_changed"
        assert withdrawn[ids["a"]].withdrawn_detail == [
            {"kind": "assignment", "assignment": "01-intro", "need": 60.0, "have": 40.0, "pending": False}]
        assert withdrawn[None].withdrawn_reason == "course_withdrawn"
        assert [r.course_id for r in _in_force(ids)] == [ids["b"]]  # course B stays completed
        subjects = set(db.session.scalars(select(OutboxMessage.subject)
                                          .where(OutboxMessage.recipient == learner.email)))
        assert f"Your completion of {course_a.title_en} was withdrawn" in subjects

        # A better attempt completes it again: a new row, the withdrawn one kept as history.
        _graded(ids, "a1", 8.0, attempt=2, at=later + dt.timedelta(hours=1))
        refresh(db.session, learner, course_a, now=later + dt.timedelta(days=1))
        db.session.commit()
        history = db.session.scalars(select(Completion).where(Completion.course_id == ids["a"])
                                     .order_by(Completion.id)).all()
        assert [r.in_force for r in history] == [False, True]
        assert len(_in_force(ids, course_id=None)) == 1 and db.session.scalar(
            select(func.count()).select_from(Completion).where(Completion.course_id.is_(None))) == 2


def test_recompute_is_idempotent_and_a_stricter_rule_withdraws(app: Flask, academy: dict[str, Any]) -> None:
    ids = academy
    with app.app_context():
        now = ids["due_a2"] + dt.timedelta(days=1)
        _graded(ids, "a1", 7.0)
        _graded(ids, "a2", 7.0)
        db.session.commit()
        first = recompute(db.session, now=now)
        db.session.commit()
        assert (first.learners, first.recorded, first.withdrawn) == (1, 1, 0)
        dates = [r.completed_at for r in _in_force(ids)]
        second = recompute(db.session, now=now + dt.timedelta(days=3))
        db.session.commit()
        assert (second.recorded, second.withdrawn) == (0, 0)
        assert [r.completed_at for r in _in_force(ids)] == dates
        # No mail from a rebuild unless asked.
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0

        before = rule_snapshot(db.session)
        course_a = db.session.get(Course, ids["a"])
        course_a.passing_rule = {**course_a.passing_rule, "min_score_percent": 80}
        db.session.flush()
        report = recompute_changed_rules(db.session, before, now=now)
        db.session.commit()
        assert (report.recorded, report.withdrawn) == (0, 1)
        [row] = db.session.scalars(select(Completion)).all()
        assert row.withdrawn_reason == "rule_changed" and row.withdrawn_detail[0]["need"] == 80.0


def test_a_deadline_passing_completes_held_results(app: Flask, academy: dict[str, Any]) -> None:
    ids = academy
    with app.app_context():
        _graded(ids, "b1", 9.0)
        db.session.commit()
        assert refresh_due(db.session, since=ids["due_b1"] - dt.timedelta(hours=1),
                           now=ids["due_b1"] - dt.timedelta(minutes=1)) == 0
        judged = refresh_due(db.session, since=ids["due_b1"] - dt.timedelta(minutes=1),
                             now=ids["due_b1"] + dt.timedelta(minutes=5))
        db.session.commit()
        assert judged == 1
        [row] = _in_force(ids)
        assert row.course_id == ids["b"] and row.completed_at == ids["due_b1"]


def test_lab_hours_count_when_the_rule_asks_for_them(app: Flask, academy: dict[str, Any]) -> None:
    ids = academy
    with app.app_context():
        learner, course_b = db.session.get(User, ids["learner"]), db.session.get(Course, ids["b"])
        course_b.passing_rule = {"min_score_percent": 60, "min_lab_hours": 1.5}
        _graded(ids, "b1", 9.0)
        start = T0 + dt.timedelta(days=20)
        db.session.add(LabSession(user_id=ids["learner"], course_id=ids["b"], hub_user="h", profile="cpu",
                                  state=LabState.stopped, started_at=start, stopped_at=start + dt.timedelta(hours=1)))
        db.session.flush()
        now = start + dt.timedelta(days=1)
        assert [c.kind for c in course_outcome(db.session, learner, course_b, now=now).failed] == ["lab_hours"]
        db.session.add(LabSession(user_id=ids["learner"], course_id=ids["b"], hub_user="h", profile="cpu",
                                  state=LabState.running, started_at=now - dt.timedelta(hours=2)))
        db.session.flush()
        [row] = refresh(db.session, learner, course_b, now=now).recorded
        assert row.completed_at == now - dt.timedelta(hours=1, minutes=30) and row.lab_hours == 3.0


def test_a_grading_result_from_the_worker_records_the_completion(app: Flask, academy: dict[str, Any]) -> None:
    """The worker's path: a result for an assignment whose hidden results are shown at once."""
    from academy.grading.worker import _finish

    ids = academy
    with app.app_context():
        release = _shown_at_once(ids, "b1")
        submission = Submission(assignment_id=ids["b1"], user_id=ids["learner"], release=release, attempt=1,
                                status=SubmissionStatus.grading, max_score=10.0)
        job = GradingJob(submission=submission, state=JobState.running, worker="w1", attempts=1)
        db.session.add_all([submission, job])
        db.session.commit()
        result = {"status": "graded", "score": 8.0, "max_score": 10.0, "problems": [], "flags": [],
                  "notebooks": [{"name": "n.ipynb", "score": 8.0, "max_score": 10.0,
                                 "cells": [{"grade_id": "g", "score": 8.0, "max_score": 10.0, "error": None}]}]}
        assert _finish(job.id, "w1", 1, result, None, None, {}) == "done"
        [row] = _in_force(ids)
        assert row.course_id == ids["b"] and row.score_percent == pytest.approx(80.0)


def test_one_completion_in_force_per_learner_and_course(app: Flask, academy: dict[str, Any]) -> None:
    """The partial unique index holds even when two writers both think none is recorded yet."""
    ids = academy
    with app.app_context():
        def row() -> Completion:
            return Completion(user_id=ids["learner"], track_id=ids["track"], course_id=ids["a"], completed_at=T0)

        db.session.add(row())
        db.session.commit()
        db.session.add(row())
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
        first = db.session.scalar(select(Completion))
        first.withdrawn_at = T0 + dt.timedelta(days=1)
        db.session.add(row())
        db.session.commit()  # a withdrawn row does not count
        assert db.session.scalar(select(func.count()).select_from(Completion)) == 2


def test_grading_by_hand_in_the_portal_completes_the_course(app: Flask, academy: dict[str, Any], client: Any,
                                                              login_as: Any) -> None:
    from tests.conftest import csrf_token

    ids = academy
    with app.app_context():
        release = _shown_at_once(ids, "b1")
        submission = Submission(assignment_id=ids["b1"], user_id=ids["learner"], release=release, attempt=1,
                                status=SubmissionStatus.graded, score=4.0, raw_score=4.0, max_score=10.0,
                                graded_at=T0, cells=[
                                    CellScore(notebook="n.ipynb", grade_id="code", score=4.0, max_score=5.0),
                                    CellScore(notebook="n.ipynb", grade_id="essay", score=None, max_score=5.0,
                                              manual=True)])
        db.session.add(submission)
        db.session.commit()
        public_id, essay = submission.public_id, submission.cells[1].id
    login_as("admin")
    token = csrf_token(client, "/dashboard")
    saved = client.post(f"/submissions/{public_id}/grade", data={"csrf_token": token, f"points-{essay}": "3"})
    assert saved.status_code == 303
    with app.app_context():
        [row] = _in_force(ids)
        assert row.course_id == ids["b"] and row.score_percent == pytest.approx(70.0)


def test_the_dashboard_shows_the_completion_or_what_is_missing(app: Flask, academy: dict[str, Any],
                                                                client: Any) -> None:
    from tests.conftest import login

    ids = academy
    with app.app_context():
        learner = db.session.get(User, ids["learner"])
        learner.locale = "ko"
        cohort = db.session.get(Cohort, ids["cohort"])
        # Move the cohort so that today's deadlines have passed for course B and not yet for course A.
        now = dt.datetime.now(dt.UTC)
        cohort.starts_at, cohort.ends_at = now - dt.timedelta(days=10), now + dt.timedelta(days=20)
        _graded(ids, "b1", 9.0, at=now - dt.timedelta(days=5))
        db.session.commit()
        refresh(db.session, learner, db.session.get(Course, ids["b"]))
        db.session.commit()
        email = learner.email
    login(client, email)
    html = client.get("/dashboard").get_data(as_text=True)
    assert "data-completed" in html and html.count("data-completed") == 1  # course B
    assert "수료" in html
    # Course A lists what is missing, in words: the required assignment and the total.
    missing = html[html.index("data-missing"):].split("</div>")[0]
    assert "첫 과제" in missing and "60%" in missing and "50%" in missing
    assert "01-intro" not in html  # an assignment is named by its title, never by its id
    assert "data-track-completed" not in html
