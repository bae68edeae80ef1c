"""Submitting through the portal: access, preflight and restore, storage, attempts, deadlines, bad input."""

from __future__ import annotations

import copy
import datetime as dt
import html
import io
import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from flask import Flask
from flask.testing import FlaskClient

from academy.catalog.models import Assignment, Track
from academy.extensions import db
from academy.grading.models import GradingJob, JobState, Submission, SubmissionStatus
from academy.grading.storage import submission_store
from tests.conftest import csrf_token, login
from tests.support import ROOT

SOURCE = ROOT / "courses" / "python-data" / "source" / "01-pandas-basics" / "production_log.ipynb"
NAME = "production_log.ipynb"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def course(app: Flask, grader_cache: Path, make_cohort: Any) -> dict[str, Any]:
    """The shipped courses loaded, one assignment released, and an open cohort of its track."""
    from academy.catalog.services import load_catalog
    from academy.grading.releases import ensure_release

    with app.app_context():
        load_catalog(db.session, ROOT / "courses")
        assignment = db.session.scalar(db.select(Assignment).where(Assignment.slug == "01-pandas-basics"))
        release = ensure_release(db.session, assignment, Path(app.config["ACADEMY_DATA_DIR"]), cache_dir=grader_cache)
        db.session.commit()
        track_id = db.session.scalar(db.select(Track.id).where(Track.slug == "ai-basics"))
        ids = {"assignment_id": assignment.id, "release_path": release.path}
    ids["cohort_id"] = make_cohort(capacity=10, track_id=track_id)
    return ids


@pytest.fixture
def learner(app: Flask, client: FlaskClient, login_as: Any, course: dict[str, Any]) -> int:
    """A signed-in learner enrolled in the course's cohort."""
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import request_enrollment
    from academy.users.models import User

    user_id = login_as("learner")
    with app.app_context():
        request_enrollment(db.session, db.session.get(Cohort, course["cohort_id"]), db.session.get(User, user_id))
        db.session.commit()
    return user_id


def upload(client: FlaskClient, assignment_id: int, files: dict[str, bytes], **extra: str) -> Any:
    token = csrf_token(client, f"/assignments/{assignment_id}")
    data: dict[str, Any] = {"csrf_token": token, **extra}
    data["notebooks"] = [(io.BytesIO(content), name) for name, content in files.items()]
    return client.post(f"/assignments/{assignment_id}/submit", data=data, content_type="multipart/form-data")


def count(app: Flask, model: Any) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(model)) or 0


def released_bytes(course: dict[str, Any]) -> bytes:
    return (Path(course["release_path"]) / "release" / "01-pandas-basics" / NAME).read_bytes()


def test_enrolled_learner_downloads_the_student_version(client: FlaskClient, course: dict[str, Any],
                                                        learner: int) -> None:
    page = client.get(f"/assignments/{course['assignment_id']}")
    assert page.status_code == 200 and NAME in page.get_data(as_text=True)
    download = client.get(f"/assignments/{course['assignment_id']}/notebooks/{NAME}")
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "application/x-ipynb+json; charset=utf-8"
    body = download.get_data(as_text=True)
    assert "BEGIN SOLUTION" not in body and "BEGIN HIDDEN TESTS" not in body
    assert client.get(f"/assignments/{course['assignment_id']}/notebooks/..%2Fsecret.ipynb").status_code == 404


def test_a_learner_who_is_not_enrolled_sees_nothing(client: FlaskClient, login_as: Any,
                                                    course: dict[str, Any]) -> None:
    login_as("learner")
    assignment_id = course["assignment_id"]
    assert client.get(f"/assignments/{assignment_id}").status_code == 404
    assert client.get(f"/assignments/{assignment_id}/notebooks/{NAME}").status_code == 404


def test_an_accepted_submission_is_stored_recorded_and_queued(app: Flask, client: FlaskClient,
                                                              course: dict[str, Any], learner: int) -> None:
    data = SOURCE.read_bytes()
    response = upload(client, course["assignment_id"], {NAME: data})
    assert response.status_code == 303
    public_id = response.headers["Location"].rsplit("/", 1)[-1]
    with app.app_context():
        submission = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        assert submission.user_id == learner and submission.attempt == 1
        assert submission.status is SubmissionStatus.queued
        [stored] = submission.files
        assert submission_store(Path(app.config["ACADEMY_DATA_DIR"])).get(stored.sha256) == data
        job = db.session.scalar(db.select(GradingJob).where(GradingJob.submission_id == submission.id))
        assert job.state is JobState.queued and job.published_at is not None
    status = client.get(f"/submissions/{public_id}/status").get_json()
    assert (status["status"], status["finished"], status["standing"]) == ("queued", False, "grading")
    page = client.get(f"/submissions/{public_id}").get_data(as_text=True)
    assert "data-status-url" in page


def test_someone_elses_submission_is_a_404(app: Flask, client: FlaskClient, course: dict[str, Any],
                                           learner: int, make_user: Any) -> None:
    response = upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()})
    public_id = response.headers["Location"].rsplit("/", 1)[-1]
    client.post("/logout", data={"csrf_token": csrf_token(client, "/dashboard")})
    from tests.conftest import login

    with app.app_context():
        from academy.users.models import User

        other = db.session.get(User, make_user("learner")).email
    login(client, other)
    for suffix in ("", "/status", "/feedback"):
        assert client.get(f"/submissions/{public_id}{suffix}").status_code == 404


def test_a_deleted_graded_cell_is_caught_and_restored_on_request(app: Flask, client: FlaskClient,
                                                                 course: dict[str, Any], learner: int) -> None:
    nb = nbformat.reads(released_bytes(course).decode(), as_version=4)
    graded = [i for i, c in enumerate(nb.cells) if (c.metadata.get("nbgrader") or {}).get("grade_id")]
    removed = nb.cells.pop(graded[1])
    response = upload(client, course["assignment_id"], {NAME: nbformat.writes(nb).encode()})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert removed.metadata.nbgrader.grade_id in page
    assert count(app, Submission) == 0, "nothing is submitted before the learner decides"
    pending = re.search(r'name="pending" value="([^"]+)"', page).group(1)
    accepted = client.post(f"/assignments/{course['assignment_id']}/submit",
                           data={"csrf_token": csrf_token(client, f"/assignments/{course['assignment_id']}"),
                                 "pending": pending, "restore": "1"})
    assert accepted.status_code == 303
    with app.app_context():
        submission = db.session.scalar(db.select(Submission))
        stored = submission_store(Path(app.config["ACADEMY_DATA_DIR"])).get(submission.files[0].sha256)
        restored = nbformat.reads(stored.decode(), as_version=4)
        ids = [(c.metadata.get("nbgrader") or {}).get("grade_id") for c in restored.cells]
        assert removed.metadata.nbgrader.grade_id in ids


def test_a_forged_pending_token_is_refused(client: FlaskClient, course: dict[str, Any], learner: int) -> None:
    response = client.post(f"/assignments/{course['assignment_id']}/submit",
                           data={"csrf_token": csrf_token(client, f"/assignments/{course['assignment_id']}"),
                                 "pending": "forged.token", "restore": "1"})
    assert response.status_code == 302


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (NAME, b""),
        (NAME, b"this is not json"),
        (NAME, b"\xff\xfe{\x00}\x00"),
        (NAME, json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "metadata": {}}).encode()),
        (NAME, ("[" * 5000 + "]" * 5000).encode()),
        ("other.ipynb", nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])).encode()),
        (NAME, SOURCE.read_bytes().replace(b'"metadata": {', b'"metadata": {"note": "\\ud800", ', 1)),
    ],
    ids=["empty", "not-json", "not-utf8", "nbformat3", "deep-nesting", "not-of-this-assignment", "lone-surrogate"],
)
def test_bad_files_are_refused_with_a_message_and_nothing_is_stored(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, name: str, content: bytes
) -> None:
    response = upload(client, course["assignment_id"], {name: content})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/assignments/{course['assignment_id']}")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "alert-danger" in page
    assert count(app, Submission) == 0 and count(app, GradingJob) == 0


def test_a_lone_surrogate_is_refused_as_not_valid_text(app: Flask, client: FlaskClient, course: dict[str, Any],
                                                       learner: int) -> None:
    """Valid JSON that escapes a lone surrogate (``"\\ud800"``) cannot be stored as text: refused, translated."""
    nb = json.loads(released_bytes(course))
    nb["metadata"]["note"] = "\ud800"
    response = upload(client, course["assignment_id"], {NAME: json.dumps(nb).encode()})
    assert response.status_code == 303 and count(app, Submission) == 0 and count(app, GradingJob) == 0
    page = html.unescape(client.get(response.headers["Location"]).get_data(as_text=True))
    assert f"'{NAME}' is not valid text" in page or f"'{NAME}' 파일은 올바른 텍스트가 아닙니다" in page, page


def test_duplicate_cell_ids_are_refused(app: Flask, client: FlaskClient, course: dict[str, Any],
                                        learner: int) -> None:
    nb = json.loads(released_bytes(course))
    nb["cells"][1]["id"] = nb["cells"][0]["id"]
    response = upload(client, course["assignment_id"], {NAME: json.dumps(nb).encode()})
    assert response.status_code == 303 and count(app, Submission) == 0


@pytest.mark.app_config(MAX_CONTENT_LENGTH=100_000)  # small, so the test client keeps the body in memory
def test_an_oversized_upload_is_refused_before_it_is_read(app: Flask, client: FlaskClient,
                                                          course: dict[str, Any], learner: int) -> None:
    big = b"{" + b" " * (app.config["MAX_CONTENT_LENGTH"] + 1) + b"}"
    response = upload(client, course["assignment_id"], {NAME: big})
    assert response.status_code == 413
    assert count(app, Submission) == 0


def test_attempts_are_limited(app: Flask, client: FlaskClient, course: dict[str, Any], learner: int) -> None:
    with app.app_context():
        assignment = db.session.get(Assignment, course["assignment_id"])
        assignment.grading = {**assignment.grading, "max_attempts": 2}
        db.session.commit()
    for _ in range(2):
        assert upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()}).status_code == 303
    third = upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()})
    assert third.headers["Location"].endswith(f"/assignments/{course['assignment_id']}")
    assert count(app, Submission) == 2
    with app.app_context():
        assert sorted(db.session.scalars(db.select(Submission.attempt))) == [1, 2]


def _move_deadline(app: Flask, course: dict[str, Any], days_ago: float) -> None:
    from academy.db import utcnow
    from academy.enrollment.models import Cohort

    with app.app_context():
        cohort = db.session.get(Cohort, course["cohort_id"])
        cohort.starts_at = utcnow() - dt.timedelta(days=30)
        assignment = db.session.get(Assignment, course["assignment_id"])
        assignment.due_days = 30 - int(days_ago) - 1
        db.session.commit()


def test_late_work_is_refused_or_penalised_by_policy(app: Flask, client: FlaskClient,
                                                     course: dict[str, Any], learner: int) -> None:
    _move_deadline(app, course, days_ago=3)
    with app.app_context():
        assignment = db.session.get(Assignment, course["assignment_id"])
        assignment.grading = {**assignment.grading, "late_policy": "refuse"}
        db.session.commit()
    refused = upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()})
    assert refused.headers["Location"].endswith(f"/assignments/{course['assignment_id']}")
    assert count(app, Submission) == 0
    with app.app_context():
        assignment = db.session.get(Assignment, course["assignment_id"])
        assignment.grading = {**assignment.grading, "late_policy": "penalty", "late_penalty_per_day": 10.0,
                              "late_penalty_cap": 50.0}
        db.session.commit()
    accepted = upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()})
    assert accepted.status_code == 303
    with app.app_context():
        submission = db.session.scalar(db.select(Submission))
        assert submission.late_days >= 3 and submission.penalty_percent == min(10.0 * submission.late_days, 50.0)


def test_an_extension_moves_the_deadline(app: Flask, client: FlaskClient, course: dict[str, Any],
                                         learner: int) -> None:
    from academy.db import utcnow
    from academy.grading.models import Extension

    _move_deadline(app, course, days_ago=3)
    with app.app_context():
        db.session.add(Extension(assignment_id=course["assignment_id"], user_id=learner,
                                 due_at=utcnow() + dt.timedelta(days=2)))
        db.session.commit()
    assert upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()}).status_code == 303
    with app.app_context():
        assert db.session.scalar(db.select(Submission.late_days)) == 0


def test_results_are_recorded_once_and_hidden_tests_wait_for_the_deadline(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int
) -> None:
    from academy.grading.services import record_result

    response = upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()})
    public_id = response.headers["Location"].rsplit("/", 1)[-1]
    result = {"status": "graded", "score": 7.0, "max_score": 10.0, "problems": [], "notebooks": [
        {"name": NAME, "score": 7.0, "max_score": 10.0, "cells": [
            {"grade_id": "visible_one", "score": 4.0, "max_score": 4.0, "error": None},
            {"grade_id": "secret_one", "score": 3.0, "max_score": 6.0, "error": "AssertionError", "hidden": True},
        ]}]}
    with app.app_context():
        submission = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        record_result(db.session, submission, result)
        record_result(db.session, submission, copy.deepcopy(result))  # twice: still one set of scores
        db.session.commit()
        assert len(submission.cells) == 2 and submission.score == 7.0
    page = client.get(f"/submissions/{public_id}").get_data(as_text=True)
    # Grade ids are never shown (these two are not in the notebook: they are numbered); the hidden
    # cell is listed, but its points, its error and the total wait for the deadline.
    assert "visible_one" not in page and "secret_one" not in page
    assert "4.0 / 4.0" in page and "AssertionError" not in page and ">7.0 <" not in page
    assert client.get(f"/submissions/{public_id}/status").get_json()["finished"] is True


def test_problems_are_shown_in_the_learners_words(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int
) -> None:
    """The grader's English problem lines go through ``describe_problem`` on the submission page."""
    from academy.grading.services import record_result

    response = upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()})
    public_id = response.headers["Location"].rsplit("/", 1)[-1]
    raw = "timeout: production_log: cell 'visible_one' ran longer than 30 s"
    result = {"status": "learner_code_failed", "score": 0.0, "max_score": 10.0, "problems": [raw, "odd <b>note</b>"],
              "notebooks": []}
    with app.app_context():
        submission = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        record_result(db.session, submission, result)
        db.session.commit()
        assert submission.problems[0] == raw, "the stored line stays the grader's"
    page = client.get(f"/submissions/{public_id}").get_data(as_text=True)
    assert "production_log" in page and "timeout: production_log" not in page
    assert "odd &lt;b&gt;note&lt;/b&gt;" in page, "unknown lines pass through, escaped"


def test_run_job_grades_in_process_and_a_second_run_is_a_no_op(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int
) -> None:
    from academy.grading.worker import run_job

    response = upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()})
    public_id = response.headers["Location"].rsplit("/", 1)[-1]
    with app.app_context():
        job_id = db.session.scalar(db.select(GradingJob.id))
        assert run_job(job_id) == "done"
        assert run_job(job_id) == "skipped"  # idempotent: a duplicate message changes nothing
        submission = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        assert submission.status is SubmissionStatus.graded
        autograded = [c for c in submission.cells if not c.manual]
        assert autograded and all(c.score == c.max_score for c in autograded)
        assert all(c.hidden for c in autograded), "the sample's test cells all hold hidden tests"
        assert submission.feedback_sha256
        total = f"{submission.score:.1f}"
        # The learner's inbox says it was graded, without the total held until the deadline.
        from academy.inbox.models import InboxMessage

        [told] = db.session.scalars(db.select(InboxMessage).where(InboxMessage.user_id == learner)).all()
        assert told.kind == "score" and told.link == f"/submissions/{public_id}" and total not in told.body
    assert 'data-unread-count>1<' in client.get("/dashboard").get_data(as_text=True)
    page = client.get(f"/submissions/{public_id}").get_data(as_text=True)
    assert "status-graded" in page
    assert "<code>test_add_defect_rate</code>" not in page, "hidden-test results wait for the deadline"
    assert f">{total} <" not in page, "neither does the total, which would give them away"
    feedback = client.get(f"/submissions/{public_id}/feedback")
    assert feedback.status_code == 200 and f">{total} <" not in feedback.get_data(as_text=True)
    assert client.get(f"/submissions/{public_id}/feedback/nbgrader").status_code in (403, 404), "staff only"


def test_a_regrade_that_changes_the_score_tells_the_learner(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, make_user: Any
) -> None:
    from academy.grading.services import record_result, regrade
    from academy.grading.worker import _finish, claim, worker_name
    from academy.mail.models import OutboxMessage
    from academy.users.models import User

    response = upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()})
    public_id = response.headers["Location"].rsplit("/", 1)[-1]
    instructor = make_user("instructor")
    first = {"status": "graded", "score": 4.0, "max_score": 10.0, "problems": [], "notebooks": []}
    fixed = {"status": "graded", "score": 9.0, "max_score": 10.0, "problems": [], "notebooks": []}
    with app.app_context():
        submission = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        record_result(db.session, submission, first)
        [job] = regrade(db.session, [submission], actor=db.session.get(User, instructor))
        db.session.commit()
        attempt = claim(job.id, worker_name())
        assert _finish(job.id, worker_name(), attempt, fixed, None, None) == "done"
        submission = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        assert submission.score == 9.0
        mail = db.session.scalars(db.select(OutboxMessage).where(
            OutboxMessage.recipient == submission.user.email)).all()
        assert any("9" in m.body and "4" in m.body for m in mail)
        from academy.inbox.models import InboxMessage

        kinds = set(db.session.scalars(db.select(InboxMessage.kind).where(InboxMessage.user_id == learner)))
        assert kinds == {"score_changed"}


def test_only_the_course_staff_see_the_gradebook(
    app: Flask, client: FlaskClient, course: dict[str, Any], login_as: Any
) -> None:
    login_as("instructor")  # an instructor, but not of this course
    assert client.get(f"/assignments/{course['assignment_id']}/gradebook").status_code == 403
    client.post("/logout", data={"csrf_token": csrf_token(client, "/dashboard")})
    login_as("instructor", email="instructor@demo.academy.kr")  # named in the course manifest
    assert client.get(f"/assignments/{course['assignment_id']}/gradebook").status_code == 200


def _as_course_instructor(client: FlaskClient, login_as: Any) -> None:
    login_as("instructor", email="instructor@demo.academy.kr")  # named in the course manifest


def test_an_invalid_new_source_version_is_refused_naming_notebook_and_cell(
    app: Flask, client: FlaskClient, course: dict[str, Any], login_as: Any
) -> None:
    from academy.grading.models import AssignmentRelease

    _as_course_instructor(client, login_as)
    nb = json.loads(SOURCE.read_bytes())
    graded = [c for c in nb["cells"] if (c.get("metadata", {}).get("nbgrader") or {}).get("grade_id")]
    graded[1]["metadata"]["nbgrader"]["grade_id"] = graded[0]["metadata"]["nbgrader"]["grade_id"]
    token = csrf_token(client, f"/assignments/{course['assignment_id']}/gradebook")
    response = client.post(f"/assignments/{course['assignment_id']}/versions", content_type="multipart/form-data",
                           data={"csrf_token": token, "notebooks": [(io.BytesIO(json.dumps(nb).encode()), NAME)]})
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert NAME in page and graded[0]["metadata"]["nbgrader"]["grade_id"] in page
    not_a_notebook = client.post(f"/assignments/{course['assignment_id']}/versions",
                                 content_type="multipart/form-data",
                                 data={"csrf_token": token, "notebooks": [(io.BytesIO(b"oops"), NAME)]})
    assert not_a_notebook.status_code == 303
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(AssignmentRelease)) == 1


def test_an_uploaded_version_goes_to_the_publish_checks_and_is_not_released_yet(
    app: Flask, client: FlaskClient, course: dict[str, Any], login_as: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The assignment page's upload is the second way in to publishing: same checks, same confirmation
    (tests/grading/test_publish_flow.py follows a version through them)."""
    sent: list[Any] = []
    monkeypatch.setattr("academy.jobs._send", lambda task, args: sent.append((task, args)))
    _as_course_instructor(client, login_as)
    nb = json.loads(SOURCE.read_bytes())
    nb["cells"].insert(0, {"cell_type": "markdown", "id": "v2note", "metadata": {}, "source": "## 2판"})
    token = csrf_token(client, f"/assignments/{course['assignment_id']}/gradebook")
    response = client.post(f"/assignments/{course['assignment_id']}/versions", content_type="multipart/form-data",
                           data={"csrf_token": token, "notebooks": [(io.BytesIO(json.dumps(nb).encode()), NAME)]})
    assert response.status_code == 303
    assert f"/teach/assignments/{course['assignment_id']}/publish/" in response.headers["Location"]
    [(task, [draft_token])] = sent
    assert task == "academy.check_version" and draft_token in response.headers["Location"]
    with app.app_context():
        from academy.grading.services import current_release

        assert current_release(db.session, db.session.get(Assignment, course["assignment_id"])).version == 1


def test_a_new_source_version_becomes_what_learners_download(
    app: Flask, client: FlaskClient, course: dict[str, Any], login_as: Any, grader_cache: Path
) -> None:
    from academy.grading.releases import release_upload
    from academy.grading.services import current_release

    nb = json.loads(SOURCE.read_bytes())
    nb["cells"].insert(0, {"cell_type": "markdown", "id": "v2note", "metadata": {},
                           "source": "## 2판: 오류를 고쳤습니다"})
    with app.app_context():
        assignment = db.session.get(Assignment, course["assignment_id"])
        release = release_upload(db.session, assignment, {NAME: json.dumps(nb).encode()},
                                 Path(app.config["ACADEMY_DATA_DIR"]), actor=None, cache_dir=grader_cache)
        db.session.commit()
        assert release.version == 2 and current_release(db.session, assignment).id == release.id
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import request_enrollment
    from academy.users.models import User

    user_id = login_as("learner")
    with app.app_context():
        request_enrollment(db.session, db.session.get(Cohort, course["cohort_id"]), db.session.get(User, user_id))
        db.session.commit()
    download = client.get(f"/assignments/{course['assignment_id']}/notebooks/{NAME}").get_data(as_text=True)
    assert "2판: 오류를 고쳤습니다" in download and "BEGIN SOLUTION" not in download


def test_the_course_instructor_grants_an_extension_from_the_gradebook(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, login_as: Any
) -> None:
    from academy.grading.models import Extension
    from academy.users.models import User

    with app.app_context():
        email = db.session.get(User, learner).email
    client.post("/logout", data={"csrf_token": csrf_token(client, "/dashboard")})
    _as_course_instructor(client, login_as)
    token = csrf_token(client, f"/assignments/{course['assignment_id']}/gradebook")
    url = f"/assignments/{course['assignment_id']}/extensions"
    assert client.post(url, data={"csrf_token": token, "email": email, "due_on": "2030-01-31",
                                  "reason": "병가"}).status_code == 303
    assert client.post(url, data={"csrf_token": token, "email": "nobody@example.kr",
                                  "due_on": "2030-01-31"}).status_code == 303
    with app.app_context():
        [extension] = db.session.scalars(db.select(Extension)).all()
        assert extension.user_id == learner and extension.reason == "병가"
        assert extension.due_at == dt.datetime(2030, 1, 31, 14, 59, tzinfo=dt.UTC)  # 23:59 KST


def test_instructor_grades_written_answers_by_hand_and_a_regrade_keeps_them(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, login_as: Any
) -> None:
    from academy.audit.models import AuditEntry
    from academy.grading.models import CellScore
    from academy.grading.services import record_result

    response = upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()})
    public_id = response.headers["Location"].rsplit("/", 1)[-1]
    result = {"status": "graded", "score": 4.0, "max_score": 7.0, "problems": [], "notebooks": [
        {"name": NAME, "score": 4.0, "max_score": 7.0, "cells": [
            {"grade_id": "auto_one", "score": 4.0, "max_score": 4.0, "error": None},
            {"grade_id": "essay", "score": None, "max_score": 3.0, "error": None, "needs_manual_grading": True},
        ]}]}
    with app.app_context():
        submission = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        record_result(db.session, submission, result)
        db.session.commit()
        essay = db.session.scalar(db.select(CellScore.id).where(CellScore.grade_id == "essay"))
        auto = db.session.scalar(db.select(CellScore.id).where(CellScore.grade_id == "auto_one"))
    assert "graded by the instructor" in client.get(f"/submissions/{public_id}").get_data(as_text=True) or \
        "강사가 채점" in client.get(f"/submissions/{public_id}").get_data(as_text=True)
    # A learner cannot give themselves points.
    assert client.post(f"/submissions/{public_id}/grade", data={"csrf_token": csrf_token(client, "/dashboard"),
                                                                f"points-{essay}": "3"}).status_code == 403
    client.post("/logout", data={"csrf_token": csrf_token(client, "/dashboard")})
    login_as("instructor", email="instructor@demo.academy.kr")
    page = client.get(f"/submissions/{public_id}").get_data(as_text=True)
    assert f'name="points-{essay}"' in page and f'name="points-{auto}"' not in page
    token = csrf_token(client, f"/submissions/{public_id}")
    for bad in ({f"points-{essay}": "4"}, {f"points-{essay}": "-1"}, {f"points-{auto}": "1"},
                {f"points-{essay}": "three"}):
        client.post(f"/submissions/{public_id}/grade", data={"csrf_token": token, **bad})
        with app.app_context():
            assert db.session.scalar(db.select(Submission.score).where(Submission.public_id == public_id)) == 4.0
    saved = client.post(f"/submissions/{public_id}/grade", data={"csrf_token": token, f"points-{essay}": "2.5"})
    assert saved.status_code == 303
    with app.app_context():
        submission = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        assert submission.score == 6.5
        assert db.session.scalar(db.select(AuditEntry).where(AuditEntry.action == "submission.grade_by_hand"))
        from academy.inbox.models import InboxMessage

        [told] = db.session.scalars(db.select(InboxMessage).where(InboxMessage.user_id == learner)).all()
        assert told.kind == "score_changed" and "6.5" in told.body and "4" in told.body
        # Grading again (a fixed test) keeps the points read by hand.
        record_result(db.session, submission, copy.deepcopy(result))
        db.session.commit()
        assert submission.score == 6.5
        assert db.session.scalar(db.select(CellScore.score).where(CellScore.grade_id == "essay")) == 2.5


def test_instructor_overrides_an_autograded_question_with_a_reason_and_a_regrade_keeps_it(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, login_as: Any
) -> None:
    from academy.audit.models import AuditEntry
    from academy.grading.models import CellScore
    from academy.grading.services import record_result
    from academy.inbox.models import InboxMessage

    response = upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()})
    public_id = response.headers["Location"].rsplit("/", 1)[-1]
    result = {"status": "graded", "score": 1.0, "max_score": 7.0, "problems": [], "notebooks": [
        {"name": NAME, "score": 1.0, "max_score": 7.0, "cells": [
            {"grade_id": "auto_one", "score": 1.0, "max_score": 4.0, "error": None},
            {"grade_id": "auto_two", "score": 0.0, "max_score": 3.0, "error": None},
        ]}]}
    with app.app_context():
        submission = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        record_result(db.session, submission, result)
        db.session.commit()
        auto = db.session.scalar(db.select(CellScore.id).where(CellScore.grade_id == "auto_one"))
    # A learner cannot override their own score.
    url = f"/submissions/{public_id}/override"
    assert client.post(url, data={"csrf_token": csrf_token(client, "/dashboard"), "cell": auto, "points": "4",
                                  "reason": "x"}).status_code == 403
    client.post("/logout", data={"csrf_token": csrf_token(client, "/dashboard")})
    login_as("instructor", email="instructor@demo.academy.kr")
    page = client.get(f"/submissions/{public_id}").get_data(as_text=True)
    assert f'action="{url}"' in page
    token = csrf_token(client, f"/submissions/{public_id}")
    # No reason, blank reason, above the maximum, below zero, not a number: refused, nothing changes.
    for bad in ({"points": "3"}, {"points": "3", "reason": "   "}, {"points": "5", "reason": "r"},
                {"points": "-1", "reason": "r"}, {"points": "three", "reason": "r"},
                {"points": "3", "reason": "r" * 501}):
        assert client.post(url, data={"csrf_token": token, "cell": auto, **bad}).status_code == 303
        with app.app_context():
            assert db.session.scalar(db.select(Submission.score).where(Submission.public_id == public_id)) == 1.0
    saved = client.post(url, data={"csrf_token": token, "cell": auto, "points": "3.5",
                                   "reason": "파일 경로만 달랐고 답은 맞습니다"})
    assert saved.status_code == 303
    with app.app_context():
        submission = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        assert submission.score == 3.5
        cell = db.session.get(CellScore, auto)
        assert cell.overridden and cell.auto_score == 1.0 and cell.score == 3.5
        entry = db.session.scalar(db.select(AuditEntry).where(AuditEntry.action == "submission.override"))
        assert entry is not None and entry.data["reason"] == "파일 경로만 달랐고 답은 맞습니다"
        [told] = db.session.scalars(db.select(InboxMessage).where(InboxMessage.user_id == learner)).all()
        assert told.kind == "score_changed" and "파일 경로만 달랐고" in told.body and "3.5" in told.body
        # The grader runs again (a fixed test): the override holds, the rest follows the new result.
        again = copy.deepcopy(result)
        again["score"] = 3.0
        again["notebooks"][0]["cells"][1]["score"] = 2.0
        record_result(db.session, submission, again)
        db.session.commit()
        assert submission.score == 5.5
        cell = db.session.scalar(db.select(CellScore).where(CellScore.grade_id == "auto_one"))
        assert cell.overridden and cell.score == 3.5 and cell.auto_score == 1.0
    # The learner sees that the instructor changed it, and why.
    client.post("/logout", data={"csrf_token": csrf_token(client, "/dashboard")})
    with app.app_context():
        from academy.users.models import User

        email = db.session.get(User, learner).email
    assert login(client, email).status_code == 302
    page = client.get(f"/submissions/{public_id}").get_data(as_text=True)
    assert "파일 경로만 달랐고" in page


def test_a_flagged_score_is_confirmed_or_rejected_with_a_reason_and_a_regrade_keeps_the_decision(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, login_as: Any
) -> None:
    from academy.grading.services import record_result
    from academy.grading.standing import flag_unreviewed
    from academy.inbox.models import InboxMessage

    response = upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()})
    public_id = response.headers["Location"].rsplit("/", 1)[-1]
    result = {"status": "graded", "score": 4.0, "max_score": 4.0, "problems": [],
              "flags": ["The notebook reads the hidden tests."], "notebooks": [
                  {"name": NAME, "score": 4.0, "max_score": 4.0, "cells": [
                      {"grade_id": "auto_one", "score": 4.0, "max_score": 4.0, "error": None}]}]}
    with app.app_context():
        submission = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        record_result(db.session, submission, result)
        db.session.commit()
        assert submission.flagged and flag_unreviewed(submission)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/dashboard")})
    login_as("instructor", email="instructor@demo.academy.kr")
    url = f"/submissions/{public_id}/flag"
    token = csrf_token(client, f"/submissions/{public_id}")
    for bad in ({"decision": "rejected"}, {"decision": "maybe", "reason": "r"}):
        client.post(url, data={"csrf_token": token, **bad})
        with app.app_context():
            row = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
            assert row.flag_review is None and row.score == 4.0
    assert client.post(url, data={"csrf_token": token, "decision": "rejected",
                                  "reason": "숨은 테스트 파일을 읽었습니다"}).status_code == 303
    with app.app_context():
        row = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        assert row.flag_review == "rejected" and row.score == 0.0 and not flag_unreviewed(row)
        [told] = db.session.scalars(db.select(InboxMessage).where(InboxMessage.user_id == learner)).all()
        assert "숨은 테스트 파일을 읽었습니다" in told.body
        record_result(db.session, row, copy.deepcopy(result))  # a regrade does not bring the score back
        db.session.commit()
        assert row.score == 0.0 and row.flag_review == "rejected"
    assert client.post(url, data={"csrf_token": token, "decision": "confirmed",
                                  "reason": "다시 보니 정상 풀이입니다"}).status_code == 303
    with app.app_context():
        row = db.session.scalar(db.select(Submission).where(Submission.public_id == public_id))
        assert row.flag_review == "confirmed" and row.score == 4.0


def test_the_grading_queue_shows_the_answer_beside_the_model_and_moves_on_after_each_decision(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, login_as: Any, make_user: Any
) -> None:
    from academy.grading.services import record_result

    notebook = json.loads(SOURCE.read_bytes())
    for cell in notebook["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "priority_answer":
            cell["source"] = "라인 C를 먼저 개선하겠습니다. <script>alert(1)</script>"
    written = upload(client, course["assignment_id"], {NAME: json.dumps(notebook).encode()})
    flagged = upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()})
    ids = [r.headers["Location"].rsplit("/", 1)[-1] for r in (written, flagged)]
    cells = [{"grade_id": "test_add_defect_rate", "score": 2.0, "max_score": 2.0, "error": None}]
    with app.app_context():
        first, second = (db.session.scalar(db.select(Submission).where(Submission.public_id == i)) for i in ids)
        record_result(db.session, first, {"status": "graded", "score": 2.0, "max_score": 5.0, "problems": [],
                                          "notebooks": [{"name": NAME, "score": 2.0, "max_score": 5.0, "cells": [
                                              *cells, {"grade_id": "priority_answer", "score": None,
                                                       "max_score": 3.0, "error": None,
                                                       "needs_manual_grading": True}]}]})
        record_result(db.session, second, {"status": "graded", "score": 2.0, "max_score": 2.0, "problems": [],
                                           "flags": ["The notebook reads the hidden tests."],
                                           "notebooks": [{"name": NAME, "score": 2.0, "max_score": 2.0,
                                                          "cells": cells}]})
        db.session.commit()
        essay = next(c.id for c in first.cells if c.grade_id == "priority_answer")
    assert client.get("/teach/queue").status_code == 403  # a learner has no queue
    client.post("/logout", data={"csrf_token": csrf_token(client, "/dashboard")})
    login_as("instructor", email="instructor@demo.academy.kr")
    assert "/teach/queue" in client.get("/teach").get_data(as_text=True)

    page = client.get("/teach/queue").get_data(as_text=True)
    assert 'data-queue="2"' in page and f'data-queue-item="{ids[0]}"' in page and 'data-queue-kind="written"' in page
    assert "라인 C를 먼저 개선하겠습니다" in page and "<script>alert(1)" not in page  # the answer, sanitised
    assert "(예시 답안)" in page and "문제 4" in page  # the model answer and the question beside it
    assert f'name="points-{essay}"' in page and "autofocus" in page and "data-queue-next" in page
    token = csrf_token(client, "/teach/queue")
    here = re.search(r'name="next" value="([^"]+)"', page).group(1)
    for bad in ("4", "-1", "three"):  # refused, and the same answer is shown again
        answer = client.post(f"/submissions/{ids[0]}/grade", data={"csrf_token": token, "next": html.unescape(here),
                                                                   f"points-{essay}": bad}, follow_redirects=True)
        assert f'data-queue-item="{ids[0]}"' in answer.get_data(as_text=True)
    saved = client.post(f"/submissions/{ids[0]}/grade", data={"csrf_token": token, "next": html.unescape(here),
                                                              f"points-{essay}": "2.5", f"comment-{essay}": "좋아요"})
    assert saved.status_code == 303 and "/teach/queue" in saved.headers["Location"]
    page = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert 'data-queue="1"' in page and 'data-queue-kind="flagged"' in page and f'data-queue-item="{ids[1]}"' in page
    assert "The notebook reads the hidden tests." in page
    decided = client.post(f"/submissions/{ids[1]}/flag", data={"csrf_token": token, "next": html.unescape(here),
                                                                "decision": "confirmed", "reason": "정상 풀이"})
    assert 'data-queue="0"' in client.get(decided.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        first, second = (db.session.scalar(db.select(Submission).where(Submission.public_id == i)) for i in ids)
        assert first.score == 4.5 and second.flag_review == "confirmed"
        course_id = first.assignment.course_id
    other = app.test_client()
    make_user("instructor", email="stranger-teacher@example.kr")
    assert login(other, "stranger-teacher@example.kr").status_code == 302
    assert other.get(f"/teach/queue?course={course_id}").status_code == 404
