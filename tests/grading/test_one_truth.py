"""Every page tells a learner the same deadline, score and status, through each change staff can make.

The dashboard, the assignment page (deadline and attempt history), the submission page and its
status JSON are read after each step: submitting, grading (hidden results held), grading a written
answer by hand, moving the deadline, granting an extension, regrading, and the deadline passing.
The grader's result is written with ``record_result`` (the real grader is tested elsewhere); the
course is the shipped one, released by nbgrader, so questions are named from its notebook.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient

from academy.catalog.models import Assignment
from academy.extensions import db
from academy.grading.models import Extension, Submission
from tests.conftest import csrf_token, login
from tests.support import ROOT

SOURCE = ROOT / "courses" / "python-data" / "source" / "01-pandas-basics" / "production_log.ipynb"
NAME = "production_log.ipynb"
SEOUL = ZoneInfo("Asia/Seoul")
INSTRUCTOR = "instructor@demo.academy.kr"  # named in the course manifest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _result(find_bad_days: float) -> dict[str, Any]:
    """A grading of the shipped notebook: every test cell holds hidden tests; the essay waits for a human."""
    passed = find_bad_days == 2.0
    cells = [
        {"grade_id": "test_add_defect_rate", "score": 2.0, "max_score": 2.0, "error": None, "visible_passed": True},
        {"grade_id": "test_summarize_by_line", "score": 3.0, "max_score": 3.0, "error": None, "visible_passed": True},
        {"grade_id": "test_find_bad_days", "score": find_bad_days, "max_score": 2.0, "visible_passed": passed,
         "visible_error": None if passed else "AssertionError: 정렬 순서가 다릅니다",
         "error": None if passed else "AssertionError: 정렬 순서가 다릅니다"},
        {"grade_id": "priority_answer", "score": None, "max_score": 3.0, "error": None, "needs_manual_grading": True},
    ]
    score = 5.0 + find_bad_days
    return {"status": "graded", "score": score, "max_score": 10.0, "problems": [], "flags": [],
            "notebooks": [{"name": NAME.removesuffix(".ipynb"), "score": score, "max_score": 10.0, "cells": cells}]}


def _record(app: Flask, public_id: str, result: dict[str, Any]) -> None:
    from academy.grading.services import record_result
    from academy.grading.storage import feedback_store

    with app.app_context():
        submission = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        digest = feedback_store(Path(app.config["ACADEMY_DATA_DIR"])).put(b"<p>hidden test output</p>")
        record_result(db.session, submission, result, feedback_sha256=digest)
        db.session.commit()


_WHEN = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} KST")


def _facts(html: str) -> tuple[str | None, str | None, str | None]:
    """(standing, deadline, score) as one part of a page shows them; the score as "9.5/10.0" or "~2.5/3.0"."""
    standing = re.search(r'data-standing="(\w+)"', html)
    due = re.search(r"data-due>(.*?)</", html, re.DOTALL)
    score = None
    found = re.search(r'data-score="(final|visible)">(.{0,160})', html, re.DOTALL)
    if found:
        numbers = re.search(r"([\d.]+)\s*/\s*([\d.]+)", re.sub(r"<[^>]+>", "", found.group(2)))
        assert numbers, found.group(0)
        score = ("~" if found.group(1) == "visible" else "") + f"{float(numbers[1]):g}/{float(numbers[2]):g}"
    when = _WHEN.search(due.group(1)) if due else None
    return (standing.group(1) if standing else None, when.group(0) if when else None, score)


def _everywhere(client: FlaskClient, course: dict[str, Any], public_id: str) -> tuple[str, str, str | None]:
    """The facts from every page; asserts that they agree and returns them."""
    assignment_id = course["assignment_id"]
    dashboard = client.get("/dashboard").get_data(as_text=True)
    row = re.search(rf'<tr data-assignment="{assignment_id}">(.*?)</tr>', dashboard, re.DOTALL)
    assert row, "the assignment is not on the dashboard"
    page = client.get(f"/assignments/{assignment_id}").get_data(as_text=True)
    history = re.search(r'<tr data-attempt="1">(.*?)</tr>', page, re.DOTALL)
    submission = client.get(f"/submissions/{public_id}").get_data(as_text=True)
    status = client.get(f"/submissions/{public_id}/status").get_json()
    due = dt.datetime.fromisoformat(status["due_at"]).astimezone(SEOUL).strftime("%Y-%m-%d %H:%M KST")
    score = None if status["score"] is None else f"{status['score']:g}/{status['max_score']:g}"
    if status["held"] and status["attempt"]["visible_max_score"]:
        score = f"~{status['attempt']['visible_score']:g}/{status['attempt']['visible_max_score']:g}"
    feedback = client.get(f"/submissions/{public_id}/feedback")
    facts = {
        "dashboard": _facts(row.group(1)),
        "assignment page": (_facts(page)[0], _facts(page)[1], _facts(history.group(1))[2] if history else None),
        "submission page": _facts(submission),
        "status JSON": (status["standing"], due, score),
    }
    if status["finished"]:
        assert feedback.status_code == 200
        html = feedback.get_data(as_text=True)
        facts["feedback page"] = _facts(html)
        assert "hidden test output" not in html, "nbgrader's file (with hidden output) is for staff only"
    else:
        assert feedback.status_code == 303, "while grading, the feedback page sends the learner to the status"
    assert len(set(facts.values())) == 1, facts
    return facts["status JSON"]


def _kst(when: dt.datetime) -> str:
    return when.astimezone(SEOUL).strftime("%Y-%m-%d %H:%M KST")


def test_every_page_shows_the_same_deadline_score_and_status(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, instructor: FlaskClient
) -> None:
    from academy.db import utcnow
    from academy.enrollment.models import Cohort
    from academy.grading.models import CellScore
    from academy.grading.services import cohort_deadline

    assignment_id = course["assignment_id"]
    with app.app_context():
        cohort = db.session.get(Cohort, course["cohort_id"])
        original = cohort_deadline(db.session.get(Assignment, assignment_id), cohort)
    token = csrf_token(client, f"/assignments/{assignment_id}")
    response = client.post(f"/assignments/{assignment_id}/submit", content_type="multipart/form-data",
                           data={"csrf_token": token, "notebooks": [(io.BytesIO(SOURCE.read_bytes()), NAME)]})
    assert response.status_code == 303
    public_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert _everywhere(client, course, public_id) == ("grading", _kst(original), None)

    # Graded before the deadline: every test cell holds hidden tests, so nothing is shown yet, "passed" least of all.
    _record(app, public_id, _result(find_bad_days=2.0))
    assert _everywhere(client, course, public_id) == ("held", _kst(original), None)
    page = client.get(f"/submissions/{public_id}").get_data(as_text=True)
    assert "문제 1. 불량률 열 추가하기 (2점)" in page and "문제 4. 개선 우선순위 정하기 (서술형, 3점)" in page
    assert "test_add_defect_rate" not in page and "priority_answer" not in page, "no grade ids for the learner"
    assert "강사가 채점" in page or "waiting for your instructor" in page
    assert page.count(_kst(original)) >= 2  # the deadline line and the one sentence about held results

    # The instructor grades the written answer: it is visible at once, the hidden part still is not.
    with app.app_context():
        essay = db.session.scalar(db.select(CellScore.id).where(CellScore.grade_id == "priority_answer"))
    graded = instructor.post(f"/submissions/{public_id}/grade",
                             data={"csrf_token": csrf_token(instructor, f"/submissions/{public_id}"),
                                   f"points-{essay}": "2.5"})
    assert graded.status_code == 303
    staff_page = instructor.get(f"/submissions/{public_id}").get_data(as_text=True)
    assert 'data-score="final"' in staff_page and "test_add_defect_rate" not in staff_page
    assert _everywhere(client, course, public_id) == ("held", _kst(original), "~2.5/3")

    # The deadline moves into the past (the cohort's dates change): the total is released everywhere.
    with app.app_context():
        cohort = db.session.get(Cohort, course["cohort_id"])
        cohort.starts_at = utcnow() - dt.timedelta(days=30)
        assignment = db.session.get(Assignment, assignment_id)
        assignment.due_days = 26
        db.session.commit()
        moved = cohort_deadline(assignment, cohort)
    assert moved < utcnow()
    assert _everywhere(client, course, public_id) == ("passed", _kst(moved), "9.5/10")

    # A personal extension: the new date on every page, and the hidden results wait for it again.
    with app.app_context():
        from academy.users.models import User

        email = db.session.get(User, learner).email
    day = (utcnow() + dt.timedelta(days=40)).astimezone(SEOUL).date()
    granted = instructor.post(f"/assignments/{assignment_id}/extensions",
                              data={"csrf_token": csrf_token(instructor, f"/assignments/{assignment_id}/gradebook"),
                                    "email": email, "due_on": day.isoformat()})
    assert granted.status_code == 303
    extended = f"{day.isoformat()} 23:59 KST"
    assert _everywhere(client, course, public_id) == ("held", extended, "~2.5/3")
    assert "(extended)" in client.get("/dashboard").get_data(as_text=True) or \
        "연장" in client.get("/dashboard").get_data(as_text=True)

    # A regrade: grading everywhere, then the new result (the essay's points kept).
    regraded = instructor.post(f"/assignments/{assignment_id}/regrade",
                               data={"csrf_token": csrf_token(instructor, f"/assignments/{assignment_id}/gradebook"),
                                     "submission": public_id})
    assert regraded.status_code == 303
    assert _everywhere(client, course, public_id) == ("grading", extended, None)
    _record(app, public_id, _result(find_bad_days=0.0))
    assert _everywhere(client, course, public_id) == ("held", extended, "~2.5/3")
    page = client.get(f"/submissions/{public_id}").get_data(as_text=True)
    shown = '<p class="mb-0" data-message>정렬 순서가 다릅니다</p>'
    assert shown in page, "the visible tests' failure is shown before the deadline, in words"

    # The extended deadline passes: 7.5 of 10 is final, and passes the course's 60 % mark.
    with app.app_context():
        extension = db.session.scalar(db.select(Extension))
        extension.due_at = utcnow() - dt.timedelta(minutes=1)
        db.session.commit()
        passed_at = extension.due_at
    assert _everywhere(client, course, public_id) == ("passed", _kst(passed_at), "7.5/10")


def test_the_pass_mark_applies_to_the_final_score_only(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int
) -> None:
    """7 of 10 with the hidden points, 0 of the visible: "passed" appears only once the deadline passed."""
    from academy.db import utcnow
    from academy.enrollment.models import Cohort

    token = csrf_token(client, f"/assignments/{course['assignment_id']}")
    response = client.post(f"/assignments/{course['assignment_id']}/submit", content_type="multipart/form-data",
                           data={"csrf_token": token, "notebooks": [(io.BytesIO(SOURCE.read_bytes()), NAME)]})
    public_id = response.headers["Location"].rsplit("/", 1)[-1]
    _record(app, public_id, _result(find_bad_days=2.0))
    assert "passed" not in re.findall(r'data-standing="(\w+)"', client.get("/dashboard").get_data(as_text=True))
    with app.app_context():
        cohort = db.session.get(Cohort, course["cohort_id"])
        cohort.starts_at = utcnow() - dt.timedelta(days=30)
        db.session.get(Assignment, course["assignment_id"]).due_days = 1
        db.session.commit()
    standing, _due, score = _everywhere(client, course, public_id)
    assert (standing, score) == ("waiting_for_instructor", "7/10")
    assert "강사가 채점" in client.get(f"/submissions/{public_id}").get_data(as_text=True) or \
        "waiting for your instructor" in client.get(f"/submissions/{public_id}").get_data(as_text=True)


def test_someone_elses_submission_is_a_404_and_shows_nothing(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, make_user: Any
) -> None:
    token = csrf_token(client, f"/assignments/{course['assignment_id']}")
    response = client.post(f"/assignments/{course['assignment_id']}/submit", content_type="multipart/form-data",
                           data={"csrf_token": token, "notebooks": [(io.BytesIO(SOURCE.read_bytes()), NAME)]})
    public_id = response.headers["Location"].rsplit("/", 1)[-1]
    _record(app, public_id, _result(find_bad_days=2.0))
    other = app.test_client()
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import request_enrollment
    from academy.users.models import User

    other_id = make_user("learner")
    with app.app_context():
        # Even a classmate in the same cohort.
        request_enrollment(db.session, db.session.get(Cohort, course["cohort_id"]), db.session.get(User, other_id))
        db.session.commit()
        email = db.session.get(User, other_id).email
    assert login(other, email).status_code == 302
    for suffix in ("", "/status", "/feedback"):
        answer = other.get(f"/submissions/{public_id}{suffix}")
        body = answer.get_data(as_text=True)
        assert answer.status_code == 404
        assert "불량률" not in body and "standing" not in body and "AssertionError" not in body
    mine = other.get(f"/assignments/{course['assignment_id']}").get_data(as_text=True)
    assert public_id not in mine and 'data-attempt="1"' not in mine


def test_an_extension_ending_before_the_deadline_is_refused_with_a_message(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, instructor: FlaskClient
) -> None:
    """The gradebook form refuses a date on or before the cohort's deadline; the learner's deadline stays."""
    from academy.enrollment.models import Cohort
    from academy.grading.services import cohort_deadline
    from academy.users.models import User

    assignment_id = course["assignment_id"]
    with app.app_context():
        email = db.session.get(User, learner).email
        cohort = db.session.get(Cohort, course["cohort_id"])
        original = cohort_deadline(db.session.get(Assignment, assignment_id), cohort)
    day = original.astimezone(SEOUL).date() - dt.timedelta(days=1)
    response = instructor.post(f"/assignments/{assignment_id}/extensions", follow_redirects=True,
                               data={"csrf_token": csrf_token(instructor, f"/assignments/{assignment_id}/gradebook"),
                                     "email": email, "due_on": day.isoformat()})
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "alert-danger" in page
    assert "original deadline" in page or "원래 마감" in page
    assert _kst(original) in page, "the message names the deadline the extension must pass"
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Extension)) == 0
    dashboard = client.get("/dashboard").get_data(as_text=True)
    row = re.search(rf'<tr data-assignment="{assignment_id}">(.*?)</tr>', dashboard, re.DOTALL)
    assert row and _facts(row.group(1))[1] == _kst(original)
