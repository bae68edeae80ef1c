"""The learner dashboard: tracks, courses, assignments, deadlines in Asia/Seoul, progress."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from flask.testing import FlaskClient

from academy.catalog.models import Assignment
from academy.dashboard.services import due_at
from academy.enrollment import services
from academy.enrollment.models import Cohort
from academy.extensions import db
from academy.users.models import User

SEOUL = ZoneInfo("Asia/Seoul")


def test_deadline_is_end_of_day_in_seoul_and_capped_at_cohort_end() -> None:
    start = dt.datetime(2026, 3, 2, 0, 0, tzinfo=SEOUL).astimezone(dt.UTC)
    cohort = Cohort(starts_at=start, ends_at=start + dt.timedelta(days=30), capacity=1)
    due = due_at(Assignment(due_days=14), cohort)
    assert due == dt.datetime(2026, 3, 16, 14, 59, tzinfo=dt.UTC)  # 23:59 KST
    assert due_at(Assignment(due_days=90), cohort) == cohort.ends_at
    assert due_at(Assignment(due_days=None), cohort) == cohort.ends_at


def _enroll(app: Flask, cohort_id: int, user_id: int) -> None:
    with app.app_context():
        services.request_enrollment(db.session, db.session.get(Cohort, cohort_id), db.session.get(User, user_id))
        db.session.commit()


def test_enrolled_learner_sees_courses_assignments_and_kst_deadlines(
    app: Flask, client: FlaskClient, login_as: Any, make_cohort: Any
) -> None:
    cohort_id = make_cohort(capacity=3)
    user_id = login_as("learner")
    _enroll(app, cohort_id, user_id)
    html = client.get("/dashboard").get_data(as_text=True)
    assert "트랙 track-1" in html  # the Korean title (Korean is the default)
    assert "첫 과제" in html
    assert re.search(r"\d{4}-\d{2}-\d{2} 23:59 KST", html), "deadline not shown at 23:59 KST"
    assert 'data-progress="0"' in html
    assert 'role="progressbar"' in html


def test_waitlisted_learner_sees_position_but_not_the_material(
    app: Flask, client: FlaskClient, login_as: Any, make_user: Any, make_cohort: Any
) -> None:
    cohort_id = make_cohort(capacity=1)
    _enroll(app, cohort_id, make_user())
    user_id = login_as("learner")
    _enroll(app, cohort_id, user_id)
    html = client.get("/dashboard").get_data(as_text=True)
    assert "status-waitlisted" in html
    assert "첫 과제" not in html


def test_english_titles_when_english_is_chosen(
    app: Flask, client: FlaskClient, login_as: Any, make_cohort: Any
) -> None:
    from tests.conftest import csrf_token

    cohort_id = make_cohort(capacity=3)
    user_id = login_as("learner")
    _enroll(app, cohort_id, user_id)
    client.post("/lang/en", data={"csrf_token": csrf_token(client, "/dashboard"), "next": "/dashboard"})
    html = client.get("/dashboard").get_data(as_text=True)
    assert 'lang="en"' in html
    assert "First task" in html and "Track track-1" in html
    with app.app_context():
        assert db.session.get(User, user_id).locale == "en"


def test_empty_dashboard_points_to_the_catalog(client: FlaskClient, login_as: Any) -> None:
    login_as("learner")
    html = client.get("/dashboard").get_data(as_text=True)
    assert 'href="/tracks"' in html


def test_seed_demo_is_idempotent(app: Flask, make_track: Any) -> None:
    from academy.demo import seed_demo

    make_track()
    first = seed_demo(app)
    second = seed_demo(app)
    assert first == second
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(User)) == 3
        assert db.session.scalar(db.select(db.func.count()).select_from(Cohort)) == 2
