"""Shared fixtures of the grading tests: the shipped pandas assignment released, a learner, its instructor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from academy.catalog.models import Assignment, Track
from academy.extensions import db
from tests.conftest import PASSWORD, login
from tests.support import ROOT

INSTRUCTOR = "instructor@demo.academy.kr"  # named in the course manifest


@pytest.fixture(scope="session")
def grader_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nbgrader's generated releases, shared by the tests of this run."""
    return tmp_path_factory.mktemp("grader-cache")


@pytest.fixture
def course(app: Flask, grader_cache: Path, make_cohort: Any) -> dict[str, Any]:
    """The shipped courses loaded, the pandas assignment released, and an open cohort of its track."""
    from academy.catalog.services import load_catalog
    from academy.grading.releases import ensure_release

    with app.app_context():
        load_catalog(db.session, ROOT / "courses")
        assignment = db.session.scalar(db.select(Assignment).where(Assignment.slug == "01-pandas-basics"))
        ensure_release(db.session, assignment, Path(app.config["ACADEMY_DATA_DIR"]), cache_dir=grader_cache)
        db.session.commit()
        track_id = db.session.scalar(db.select(Track.id).where(Track.slug == "ai-basics"))
        assignment_id = assignment.id
    return {"assignment_id": assignment_id, "cohort_id": make_cohort(capacity=10, track_id=track_id)}


@pytest.fixture
def learner(app: Flask, login_as: Any, course: dict[str, Any]) -> int:
    """The test client signed in as a learner enrolled in the course's cohort."""
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import request_enrollment
    from academy.users.models import User

    user_id = login_as("learner")
    with app.app_context():
        request_enrollment(db.session, db.session.get(Cohort, course["cohort_id"]), db.session.get(User, user_id))
        db.session.commit()
    return user_id


@pytest.fixture
def instructor(app: Flask, make_user: Any) -> FlaskClient:
    """A second client, signed in as the course's instructor."""
    make_user("instructor", email=INSTRUCTOR)
    other = app.test_client()
    assert login(other, INSTRUCTOR, PASSWORD).status_code == 302
    return other
