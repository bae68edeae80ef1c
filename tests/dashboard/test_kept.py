"""Kept dashboards: a reload is a lookup, and any change to what the page shows, by any path, shows at once."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, insert, select, update

from academy import stamps
from academy.catalog.models import Assignment
from academy.dashboard.kept import MAX_AGE, KeptPages
from academy.dashboard.services import build_dashboard, fresh_until
from academy.db import utcnow
from academy.enrollment import services
from academy.enrollment.models import Cohort
from academy.extensions import db
from academy.grading.models import AssignmentRelease, CellScore, Submission, SubmissionStatus
from academy.users.models import User
from tests.support import sql_run


def _enroll(app: Flask, cohort_id: int, user_id: int) -> None:
    with app.app_context():
        services.request_enrollment(db.session, db.session.get(Cohort, cohort_id), db.session.get(User, user_id))
        db.session.commit()


@pytest.fixture
def queries(app: Flask) -> Iterator[list[str]]:
    """The SQL statements run while the test runs."""
    with sql_run(app) as seen:
        yield seen


@pytest.fixture
def enrolled(app: Flask, login_as: Any, make_cohort: Any) -> dict[str, int]:
    """A signed-in learner in a cohort whose assignment shows its results at once."""
    cohort_id = make_cohort(capacity=3)
    user_id = login_as("learner")
    _enroll(app, cohort_id, user_id)
    with app.app_context():
        cohort = db.session.get(Cohort, cohort_id)
        assignment = cohort.track.courses[0].assignments[0]
        assignment.grading = {"hidden_tests": "immediately"}
        release = AssignmentRelease(assignment=assignment, version=1, source_hash="0" * 64, path="/nonexistent")
        db.session.add(release)
        db.session.commit()
        return {"user": user_id, "cohort": cohort_id, "assignment": assignment.id, "release": release.id}


def _graded(ids: dict[str, int], score: float, user_id: int | None = None) -> int:
    row = Submission(assignment_id=ids["assignment"], user_id=user_id or ids["user"], release_id=ids["release"],
                     attempt=1, status=SubmissionStatus.graded, score=score, raw_score=score, max_score=10.0,
                     submitted_at=utcnow(), graded_at=utcnow(),
                     cells=[CellScore(notebook="n.ipynb", grade_id="g", score=score, max_score=10.0)])
    db.session.add(row)
    db.session.commit()
    return row.id


def _standing(client: FlaskClient) -> tuple[str, str | None]:
    html = client.get("/dashboard").get_data(as_text=True)
    status = re.search(r'data-standing="([a-z_]+)"', html)
    score = re.search(r'data-score="final">([^<]+)<', html)
    assert status, "no assignment row on the dashboard"
    return status.group(1), score.group(1) if score else None


def test_a_reload_is_a_lookup_and_every_change_shows_at_once(
    app: Flask, client: FlaskClient, enrolled: dict[str, int], queries: list[str]
) -> None:
    assert _standing(client) == ("not_started", None)
    queries.clear()
    assert _standing(client) == ("not_started", None)
    kept = len(queries)
    # The session's account, the stamps, the open lab and the inbox's unread count: no course, no attempt.
    assert kept <= 5, queries

    with app.app_context():  # graded by the worker (ORM objects)
        submission_id = _graded(enrolled, 9.0)
    assert _standing(client) == ("passed", "9.0 / 10.0")

    with app.app_context():  # an UPDATE statement, not an object: a regrade written in one statement
        db.session.execute(update(Submission).where(Submission.id == submission_id).values(score=3.0))
        db.session.commit()
    assert _standing(client) == ("not_passed", "3.0 / 10.0")

    with app.app_context():  # the catalog: the course's pass mark lowered
        db.session.get(Assignment, enrolled["assignment"]).course.passing_rule = {"min_score_percent": 30}
        db.session.commit()
    assert _standing(client) == ("passed", "3.0 / 10.0")

    with app.app_context():  # a change that rolls back shows nothing, and costs no rebuild
        db.session.execute(update(Submission).where(Submission.id == submission_id).values(score=0.0))
        db.session.rollback()
    queries.clear()
    assert _standing(client) == ("passed", "3.0 / 10.0")
    assert len(queries) == kept


def test_another_learners_grade_or_a_seat_taken_keeps_the_page(
    app: Flask, client: FlaskClient, enrolled: dict[str, int], make_user: Any
) -> None:
    client.get("/dashboard")
    with app.app_context():
        before = stamps.read(db.session, (stamps.CATALOG, stamps.user_scope(enrolled["user"])))
    other = make_user()
    _enroll(app, enrolled["cohort"], other)  # takes a seat: UPDATE cohort SET seats_taken
    with app.app_context():
        _graded(enrolled, 10.0, user_id=other)
        assert stamps.read(db.session, (stamps.CATALOG, stamps.user_scope(enrolled["user"]))) == before
        assert stamps.read(db.session, (stamps.user_scope(other),)) != (None,)


def test_each_way_of_writing_touches_the_owners_scope(app: Flask, enrolled: dict[str, int]) -> None:
    mine = (stamps.user_scope(enrolled["user"]),)
    with app.app_context():
        submission_id = _graded(enrolled, 5.0)
        first = stamps.read(db.session, mine)
        assert first != (None,)
        # A graded cell deleted by statement (a regrade clears them): the submission's learner (on SQLite,
        # which cannot read the owners before the write without risking a lock, every learner).
        sqlite = db.engine.dialect.name == "sqlite"
        catalog = stamps.read(db.session, (stamps.CATALOG,))
        db.session.execute(delete(CellScore).where(CellScore.submission_id == submission_id))
        db.session.commit()
        second = stamps.read(db.session, mine)
        if sqlite:
            assert stamps.read(db.session, (stamps.CATALOG,)) != catalog
        else:
            assert second != first
        # A cell changed as an object (a hand grade) reaches the learner through its submission.
        db.session.add(CellScore(submission_id=submission_id, notebook="n.ipynb", grade_id="w", score=None,
                                 max_score=5.0, manual=True))
        db.session.commit()
        assert stamps.read(db.session, mine) != second
        # A bulk insert of learners' rows (academy synth): every learner's page, through the catalog.
        catalog = stamps.read(db.session, (stamps.CATALOG,))
        db.session.execute(insert(Submission), [dict(
            assignment_id=enrolled["assignment"], user_id=enrolled["user"], release_id=enrolled["release"],
            public_id="bulk-1", attempt=2, status=SubmissionStatus.graded, score=1.0, raw_score=1.0,
            max_score=10.0, submitted_at=utcnow())])
        db.session.commit()
        assert stamps.read(db.session, (stamps.CATALOG,)) != catalog
        # A cohort renamed is a catalog change; its seats are not.
        catalog = stamps.read(db.session, (stamps.CATALOG,))
        db.session.execute(update(Cohort).where(Cohort.id == enrolled["cohort"]).values(seats_taken=2))
        db.session.commit()
        assert stamps.read(db.session, (stamps.CATALOG,)) == catalog
        db.session.get(Cohort, enrolled["cohort"]).seats_taken = 3
        db.session.commit()
        assert stamps.read(db.session, (stamps.CATALOG,)) == catalog
        db.session.get(Cohort, enrolled["cohort"]).name = "renamed"
        db.session.commit()
        assert stamps.read(db.session, (stamps.CATALOG,)) != catalog


def test_a_kept_page_expires_at_the_next_deadline(app: Flask, enrolled: dict[str, int]) -> None:
    now = utcnow()
    with app.app_context():
        rows = build_dashboard(db.session, enrolled["user"], now=now)
        due = rows[0].courses[0].assignments[0].due_at
        assert due > now
        assert fresh_until(rows, now) == due
        rows_after = build_dashboard(db.session, enrolled["user"], now=due + dt.timedelta(seconds=1))
        assert rows_after[0].courses[0].assignments[0].overdue  # what the deadline changes
    pages = KeptPages(size=2)
    pages.put("k", "page", fresh_until(rows, now), now)
    assert pages.get("k", now) == "page"
    assert pages.get("k", min(due, now + MAX_AGE)) is None  # the deadline, or ten minutes at most


def test_a_waitlist_position_is_never_kept(app: Flask, make_cohort: Any, make_user: Any) -> None:
    cohort_id = make_cohort(capacity=1)
    _enroll(app, cohort_id, make_user())
    waiting = make_user()
    _enroll(app, cohort_id, waiting)
    with app.app_context():
        rows = build_dashboard(db.session, waiting)
        assert rows[0].waitlist_position == 1
        assert fresh_until(rows, utcnow()) is None


def test_kept_pages_are_bounded_least_recently_used_first() -> None:
    now = utcnow()
    later = now + dt.timedelta(minutes=5)
    pages = KeptPages(size=2)
    pages.put("a", "A", later, now)
    pages.put("b", "B", later, now)
    assert pages.get("a", now) == "A"  # "b" is now the least recently used
    pages.put("c", "C", later, now)
    assert (pages.get("a", now), pages.get("b", now), pages.get("c", now)) == ("A", None, "C")
    pages.put("d", "D", None, now)  # not to be kept
    assert pages.get("d", now) is None and len(pages) == 2


def test_the_stamp_table_starts_empty_and_is_read_in_order(app: Flask) -> None:
    with app.app_context():
        assert db.session.scalars(select(stamps.ViewStamp)).all() == []
        stamps.touch(db.session, ["user:2", stamps.CATALOG])
        db.session.commit()
        catalog, missing, user = stamps.read(db.session, (stamps.CATALOG, "user:1", "user:2"))
        assert isinstance(catalog, int) and missing is None and isinstance(user, int)
