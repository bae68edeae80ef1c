"""Publishing a new version through the portal: send it for checking, read the outcome, confirm, released.

The jobs are the real Celery tasks run in this process (the worker's code path), on the real grader.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from academy.catalog.models import Assignment
from academy.extensions import db
from tests.conftest import csrf_token
from tests.support import ROOT

SOURCE = json.loads((ROOT / "courses" / "python-data" / "source" / "01-pandas-basics" / "production_log.ipynb")
                    .read_bytes())
NAME = "production_log.ipynb"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
#: The checks grade notebooks for seconds and read or write the database the same way on either engine: the
#: whole flow (releases, regrading) runs on both, the refusals on SQLite only.
SQLITE_ONLY = pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)


@pytest.fixture
def jobs(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """The job messages the portal sends (instead of a broker); ``run`` runs one as the worker would."""
    from academy.jobs import tasks

    sent: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr("academy.jobs._send", lambda task, args: sent.append((task, tuple(args))))
    monkeypatch.setattr(tasks, "_flask_app", app)
    return sent


def _run(app: Flask, sent: list[tuple[str, tuple[Any, ...]]], task: str) -> Any:
    from academy.jobs import tasks

    [(name, args)] = [(n, a) for n, a in sent if n == task]
    sent.clear()
    with app.app_context():
        celery = tasks.worker_celery(lambda: app)
    return celery.tasks[name](*args)


def _says(response: Any, ko: str, en: str) -> bool:
    """The page says it, in whichever language the portal answered."""
    page = response.get_data(as_text=True)
    return ko in page or en in page


def _cell(notebook: dict[str, Any], grade_id: str) -> dict[str, Any]:
    return next(c for c in notebook["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def _send(client: FlaskClient, assignment_id: int, notebook: dict[str, Any] | bytes) -> Any:
    data = notebook if isinstance(notebook, bytes) else json.dumps(notebook, ensure_ascii=False).encode()
    token = csrf_token(client, f"/teach/assignments/{assignment_id}/publish")
    return client.post(f"/teach/assignments/{assignment_id}/publish", content_type="multipart/form-data",
                       data={"csrf_token": token, "notebooks": [(io.BytesIO(data), NAME)]})


def _versions(app: Flask, assignment_id: int) -> list[int]:
    from academy.grading.models import AssignmentRelease

    with app.app_context():
        return sorted(db.session.scalars(db.select(AssignmentRelease.version)
                                         .where(AssignmentRelease.assignment_id == assignment_id)))


def _add_graded_attempt(app: Flask, assignment_id: int, user_id: int) -> int:
    from academy.grading.models import Submission, SubmissionStatus
    from academy.grading.services import current_release

    with app.app_context():
        assignment = db.session.get(Assignment, assignment_id)
        now = dt.datetime.now(dt.UTC)
        row = Submission(assignment_id=assignment_id, user_id=user_id, release_id=current_release(
            db.session, assignment).id, attempt=1, submitted_at=now, status=SubmissionStatus.graded,
            raw_score=4.0, score=4.0, max_score=10.0, graded_at=now)
        db.session.add(row)
        db.session.commit()
        return row.id


def test_a_version_is_checked_confirmed_and_released_with_the_regrade_chosen(
    app: Flask, instructor: FlaskClient, course: dict[str, Any], learner: int, jobs: list[Any],
) -> None:
    from academy.grading.models import GradingJob, Submission, SubmissionStatus

    attempt_id = _add_graded_attempt(app, course["assignment_id"], learner)
    client = instructor  # signed in as the instructor the course manifest names
    aid = course["assignment_id"]
    page = client.get(f"/teach/assignments/{aid}/publish").get_data(as_text=True)
    assert "data-drafts" in page and 'data-version="1"' in page

    new = copy.deepcopy(SOURCE)
    new["cells"].insert(0, {"cell_type": "markdown", "id": "v2note", "metadata": {}, "source": "## 2판"})
    _cell(new, "test_find_bad_days")["metadata"]["nbgrader"]["points"] = 4
    response = _send(client, aid, new)
    assert response.status_code == 303 and "/publish/" in response.headers["Location"]
    draft_url = response.headers["Location"]
    assert 'data-draft-state="checking"' in client.get(draft_url).get_data(as_text=True)
    assert client.get(draft_url + "/status").get_json() == {"status": "checking", "finished": False}
    assert _versions(app, aid) == [1]  # nothing released by sending it

    assert _run(app, jobs, "academy.check_version") == "ready"
    page = client.get(draft_url).get_data(as_text=True)
    assert 'data-draft-state="ready"' in page and 'data-change="points"' in page
    assert "test_find_bad_days" in page and 'data-release-version="2"' in page
    assert _versions(app, aid) == [1]  # checked, still not released

    confirm = client.post(draft_url, data={"csrf_token": csrf_token(client, draft_url), "regrade": "all"})
    assert confirm.status_code == 303
    assert _run(app, jobs, "academy.publish_version") == "released"
    assert _versions(app, aid) == [1, 2]
    page = client.get(draft_url).get_data(as_text=True)
    assert 'data-draft-state="released"' in page and 'data-released-version="2"' in page
    with app.app_context():
        submission = db.session.get(Submission, attempt_id)
        assert submission.release.version == 2 and submission.status == SubmissionStatus.queued
        assert db.session.scalar(db.select(GradingJob.reason).where(GradingJob.submission_id == attempt_id)) \
            == "regrade"
    assert [task for task, _args in jobs] == ["academy.grade"]

    # Confirming it again changes nothing.
    again = client.post(draft_url, data={"csrf_token": csrf_token(client, draft_url), "regrade": "none"},
                        follow_redirects=True)
    assert _says(again, "배포할 수 없습니다", "cannot be released")
    assert _versions(app, aid) == [1, 2] and jobs == [("academy.grade", jobs[0][1])]


@SQLITE_ONLY
def test_a_solution_that_fails_a_hidden_test_is_refused_naming_the_cell_and_nothing_is_released(
    app: Flask, client: FlaskClient, course: dict[str, Any], login_as: Any, jobs: list[Any],
) -> None:
    login_as("instructor", email="instructor@demo.academy.kr")
    aid = course["assignment_id"]
    broken = copy.deepcopy(SOURCE)
    _cell(broken, "add_defect_rate")["source"] = (
        "def add_defect_rate(df):\n    ### BEGIN SOLUTION\n    result = df.copy()\n"
        "    result['defect_rate'] = result['defects'] / result['produced']\n    return result\n"
        "    ### END SOLUTION\n")  # divides by zero where nothing was produced: a hidden test catches it
    draft_url = _send(client, aid, broken).headers["Location"]
    assert _run(app, jobs, "academy.check_version") == "refused"
    page = client.get(draft_url).get_data(as_text=True)
    assert 'data-draft-state="refused"' in page and NAME in page
    assert 'data-cell="test_add_defect_rate"' in page and 'data-problem="solution_not_full"' in page
    assert "data-release-version" not in page
    refused = client.post(draft_url, data={"csrf_token": csrf_token(client, draft_url), "regrade": "none"},
                          follow_redirects=True)
    assert _says(refused, "배포할 수 없습니다", "cannot be released")
    assert jobs == [] and _versions(app, aid) == [1]


@SQLITE_ONLY
def test_a_draft_checked_against_an_older_release_must_be_checked_again(
    app: Flask, client: FlaskClient, course: dict[str, Any], login_as: Any, jobs: list[Any], grader_cache: Path,
) -> None:
    from academy.grading.releases import release_upload

    login_as("instructor", email="instructor@demo.academy.kr")
    aid = course["assignment_id"]
    new = copy.deepcopy(SOURCE)
    new["cells"].insert(0, {"cell_type": "markdown", "id": "v2note", "metadata": {}, "source": "## 2판"})
    draft_url = _send(client, aid, new).headers["Location"]
    assert _run(app, jobs, "academy.check_version") == "ready"
    other = copy.deepcopy(SOURCE)
    other["cells"].insert(0, {"cell_type": "markdown", "id": "v2other", "metadata": {}, "source": "## 다른 2판"})
    with app.app_context():  # a colleague released another version meanwhile
        release_upload(db.session, db.session.get(Assignment, aid), {NAME: json.dumps(other).encode()},
                       Path(app.config["ACADEMY_DATA_DIR"]), actor=None, cache_dir=grader_cache)
        db.session.commit()
    answer = client.post(draft_url, data={"csrf_token": csrf_token(client, draft_url), "regrade": "none"},
                         follow_redirects=True)
    assert _says(answer, "다시 검사해", "Check it again")
    assert jobs == [] and _versions(app, aid) == [1, 2]


@pytest.mark.parametrize("spoil, named", [
    ("duplicate", "test_add_defect_rate"),
    ("no_points", "test_add_defect_rate"),
    ("not_a_notebook", NAME),
])
def test_a_malformed_source_is_refused_at_once_and_nothing_is_kept(
    app: Flask, client: FlaskClient, course: dict[str, Any], login_as: Any, jobs: list[Any],
    spoil: str, named: str,
) -> None:
    login_as("instructor", email="instructor@demo.academy.kr")
    aid = course["assignment_id"]
    notebook: dict[str, Any] | bytes = copy.deepcopy(SOURCE)
    if spoil == "duplicate":
        _cell(notebook, "test_summarize_by_line")["metadata"]["nbgrader"]["grade_id"] = "test_add_defect_rate"
    elif spoil == "no_points":
        del _cell(notebook, "test_add_defect_rate")["metadata"]["nbgrader"]["points"]
    else:
        notebook = b"{not json"
    response = _send(client, aid, notebook)
    assert response.headers["Location"].endswith(f"/teach/assignments/{aid}/publish")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert named in page and "data-no-drafts" in page
    assert jobs == [] and _versions(app, aid) == [1]


@SQLITE_ONLY
def test_unbalanced_solution_markers_are_refused_naming_the_cell(
    app: Flask, client: FlaskClient, course: dict[str, Any], login_as: Any, jobs: list[Any],
) -> None:
    login_as("instructor", email="instructor@demo.academy.kr")
    aid = course["assignment_id"]
    spoilt = copy.deepcopy(SOURCE)
    _cell(spoilt, "add_defect_rate")["source"] = "def add_defect_rate(df):\n    ### BEGIN SOLUTION\n    return df\n"
    draft_url = _send(client, aid, spoilt).headers["Location"]
    assert _run(app, jobs, "academy.check_version") == "refused"
    page = client.get(draft_url).get_data(as_text=True)
    assert 'data-problem="markers"' in page and 'data-cell="add_defect_rate"' in page
    assert _versions(app, aid) == [1]


def test_another_courses_instructor_cannot_see_or_publish(
    app: Flask, client: FlaskClient, course: dict[str, Any], login_as: Any, jobs: list[Any],
) -> None:
    login_as("instructor", email="someone.else@demo.academy.kr")
    aid = course["assignment_id"]
    assert client.get(f"/teach/assignments/{aid}/publish").status_code == 404
    token = csrf_token(client, "/teach")
    response = client.post(f"/teach/assignments/{aid}/publish", content_type="multipart/form-data",
                           data={"csrf_token": token, "notebooks": [(io.BytesIO(json.dumps(SOURCE).encode()), NAME)]})
    assert response.status_code == 404 and jobs == []


@SQLITE_ONLY
def test_a_check_whose_job_was_lost_can_be_sent_again_but_not_while_it_may_still_run(
    app: Flask, client: FlaskClient, course: dict[str, Any], login_as: Any, jobs: list[Any],
) -> None:
    from academy.teaching import drafts

    login_as("instructor", email="instructor@demo.academy.kr")
    aid = course["assignment_id"]
    draft_url = _send(client, aid, copy.deepcopy(SOURCE)).headers["Location"]
    jobs.clear()  # the broker lost the message
    token = draft_url.rsplit("/", 1)[1]
    early = client.post(f"{draft_url}/retry", data={"csrf_token": csrf_token(client, draft_url)},
                        follow_redirects=True)
    assert _says(early, "잠시 기다린", "still being worked on") and jobs == []
    store, _blobs = drafts.stores(Path(app.config["ACADEMY_DATA_DIR"]))
    draft = store.load(token)
    draft.created_at = (dt.datetime.now(dt.UTC) - drafts.STALLED_AFTER - dt.timedelta(seconds=1)).isoformat()
    store.save(draft)
    assert "data-stalled" in client.get(draft_url).get_data(as_text=True)
    client.post(f"{draft_url}/retry", data={"csrf_token": csrf_token(client, draft_url)})
    assert [task for task, _args in jobs] == ["academy.check_version"]
    assert _run(app, jobs, "academy.check_version") == "ready"
