"""The grading queue end to end: real `academy worker` processes, real nbgrader, real kernels.

* embedded: SQLite and Celery's filesystem broker in the data directory, no server;
* scale path: PostgreSQL and Redis at 127.0.0.1, two workers, one of them SIGKILLed in
  the middle of a job: the job is graded again by the other and recorded once.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from academy.extensions import db
from academy.grading.models import CellScore, GradingJob, JobState, Submission, SubmissionStatus
from tests.support import ROOT, skip_or_fail
from tests.workers import Workers, dispose, portal_app, worker_env

SOURCE = ROOT / "courses" / "python-data" / "source" / "01-pandas-basics" / "production_log.ipynb"
NAME = "production_log.ipynb"

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _setup_course_and_learner(app: Flask) -> tuple[int, int]:
    """Migrate, load courses, release, open a cohort and enroll a learner; returns (assignment, user)."""
    import datetime as dt

    from academy.bootstrap import run_init
    from academy.catalog.models import Assignment, Track
    from academy.db import utcnow
    from academy.enrollment.services import create_cohort, request_enrollment
    from academy.users.models import Role
    from academy.users.services import create_user

    with app.app_context():
        run_init(check_solutions=False)  # the solutions: tests/curriculum
        track = db.session.scalar(db.select(Track).where(Track.slug == "ai-basics"))
        cohort = create_cohort(db.session, track, name="queue test", starts_at=utcnow(),
                               ends_at=utcnow() + dt.timedelta(days=30), capacity=5, actor=None)
        user = create_user(db.session, "queue-learner@example.kr", "queue-pass-123", Role.learner)
        request_enrollment(db.session, cohort, user)
        db.session.commit()
        assignment = db.session.scalar(db.select(Assignment).where(Assignment.slug == "01-pandas-basics"))
        return assignment.id, user.id


def _submit(app: Flask, assignment_id: int, user_id: int, data: bytes) -> tuple[int, int]:
    from academy.catalog.models import Assignment
    from academy.grading.services import submit
    from academy.grading.storage import submission_store
    from academy.users.models import User

    with app.app_context():
        submission, job = submit(db.session, assignment=db.session.get(Assignment, assignment_id),
                                 user=db.session.get(User, user_id), files={NAME: data},
                                 store=submission_store(Path(app.config["ACADEMY_DATA_DIR"])))
        db.session.commit()  # sends the job's message
        return submission.id, job.id


def _wait(app: Flask, predicate: Any, timeout: float, workers: Workers) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            if predicate():
                return
            db.session.remove()
        time.sleep(0.3)
    pytest.fail(f"timed out; worker logs:\n{workers.logs()}")


def _slow_solution(seconds: float) -> bytes:
    """The answer key with a first cell that sleeps, so a worker can be killed mid-job."""
    nb = json.loads(SOURCE.read_bytes())
    nb["cells"].insert(0, {"cell_type": "code", "id": "sleepy", "metadata": {}, "execution_count": None,
                           "outputs": [], "source": f"import time\ntime.sleep({seconds})"})
    return json.dumps(nb).encode()


@pytest.fixture
def redis_url() -> Iterator[str]:
    import redis

    db_number = random.randint(1, 15)
    client = redis.Redis(host="127.0.0.1", port=6379, db=db_number, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis at 127.0.0.1:6379 is not reachable: {type(exc).__name__}")
    client.flushdb()
    yield f"redis://127.0.0.1:6379/{db_number}"
    client.flushdb()
    client.close()


def test_embedded_queue_grades_a_submission(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    database_url = f"sqlite:///{tmp_path / 'academy.sqlite3'}"
    app = portal_app(database_url, data_dir, None)
    assignment_id, user_id = _setup_course_and_learner(app)
    workers = Workers(worker_env(database_url, data_dir, None), tmp_path)
    try:
        workers.start()
        submission_id, _job = _submit(app, assignment_id, user_id, SOURCE.read_bytes())
        _wait(app, lambda: db.session.get(Submission, submission_id).status.finished, 120, workers)
        with app.app_context():
            submission = db.session.get(Submission, submission_id)
            assert submission.status is SubmissionStatus.graded, (submission.problems, workers.logs())
            assert submission.raw_score == submission.max_score - sum(
                c.max_score for c in submission.cells if c.manual
            )
            assert submission.feedback_sha256
    finally:
        workers.stop_all()
        dispose(app)


def test_a_worker_killed_mid_job_loses_nothing_and_the_grade_is_recorded_once(
    tmp_path: Path, empty_pg_database: str, redis_url: str
) -> None:
    empty_database_url = empty_pg_database
    data_dir = tmp_path / "data"
    app = portal_app(empty_database_url, data_dir, redis_url)
    assignment_id, user_id = _setup_course_and_learner(app)
    workers = Workers(worker_env(empty_database_url, data_dir, redis_url), tmp_path)
    try:
        first = workers.start("--no-beat")
        submission_id, job_id = _submit(app, assignment_id, user_id, _slow_solution(6))
        _wait(app, lambda: db.session.get(GradingJob, job_id).state is JobState.running, 60, workers)
        time.sleep(1.5)  # inside the sleeping cell
        workers.kill(first)
        with app.app_context():
            assert db.session.get(GradingJob, job_id).state is JobState.running  # orphaned, lease running out
        workers.start("--beat")  # the survivor also runs the sweeper
        _wait(app, lambda: db.session.get(Submission, submission_id).status.finished, 180, workers)
        with app.app_context():
            job = db.session.get(GradingJob, job_id)
            submission = db.session.get(Submission, submission_id)
            assert job.state is JobState.done and job.attempts == 2, workers.logs()
            assert submission.status is SubmissionStatus.graded, (submission.problems, workers.logs())
            grade_ids = [c.grade_id for c in db.session.scalars(
                db.select(CellScore).where(CellScore.submission_id == submission_id))]
            assert len(grade_ids) == len(set(grade_ids)) > 0, "each cell recorded once"
    finally:
        workers.stop_all()
        dispose(app)
