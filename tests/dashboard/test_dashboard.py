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


def test_the_dashboard_s_statements_do_not_grow_with_courses_or_tracks(app: Flask, make_cohort: Any,
                                                                       make_user: Any) -> None:
    from sqlalchemy import func, select

    from academy.catalog.models import Course, Track
    from academy.dashboard.services import build_dashboard
    from tests.support import sql_run

    def statements(user_id: int) -> tuple[int, int]:
        with app.app_context(), sql_run(app) as seen:
            rows = build_dashboard(db.session, user_id)
            walked = sum(len(c.assignments) for row in rows for c in row.courses)  # what the page walks
        return len(seen), walked

    small, large = make_user("learner"), make_user("learner")
    _enroll(app, make_cohort(capacity=3), small)
    tracks = [make_cohort(capacity=3), make_cohort(capacity=3)]
    with app.app_context():  # the large learner's two tracks have three courses of two assignments each
        for cohort_id in tracks:
            track = db.session.get(Cohort, cohort_id).track
            for n in (2, 3):
                course = Course(slug=f"{track.slug}-c{n}", track=track, title_ko=f"과정 {n}", title_en=f"Course {n}",
                                source_path="/nonexistent", hours=2.0, position=n)
                db.session.add(course)
                for m in (1, 2):
                    db.session.add(Assignment(course=course, slug=f"0{m}-task", title_ko="과제", title_en="Task",
                                              due_days=7, max_score=10.0, notebooks=["task.ipynb"]))
            db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(Track)) == 3
    for cohort_id in tracks:
        _enroll(app, cohort_id, large)
    one_track, walked_small = statements(small)
    two_tracks, walked_large = statements(large)
    assert (walked_small, walked_large) == (1, 2 * (1 + 2 * 2))
    # Per track: its assignments' attempts, their cells and the extensions; nothing per course or assignment.
    assert two_tracks <= one_track + 3, (one_track, two_tracks)
