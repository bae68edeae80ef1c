"""Uploads are taken for the assignment's notebooks by their content, not their file names.

The notebooks are the shipped courses' real nbgrader releases: ``production_log.ipynb``
(python-data, 01-pandas-basics) and ``sensor_cleaning.ipynb`` (02-sensor-cleaning).  The
two-notebook assignment is 01-pandas-basics given a second version, released by nbgrader
through ``release_upload``, that holds both notebooks.
"""

from __future__ import annotations

import copy
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
from academy.grading.models import GradingJob, Submission
from academy.grading.storage import submission_store
from tests.conftest import csrf_token
from tests.labs.fakehub import LABS, FakeHub
from tests.support import COURSES

LOG = "production_log.ipynb"
SENSOR = "sensor_cleaning.ipynb"
LOG_TITLE = "과제 1. pandas로 생산 일지 다루기"
SENSOR_TITLE = "과제 2. 센서 데이터 정제와 시간대별 요약"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def course(app: Flask, grader_cache: Path, make_cohort: Any) -> dict[str, Any]:
    """The shipped courses loaded, both python-data assignments released, an open cohort of their track."""
    from academy.catalog.services import load_catalog
    from academy.grading.releases import ensure_release

    with app.app_context():
        load_catalog(db.session, COURSES)
        ids: dict[str, Any] = {}
        for key, slug in (("log", "01-pandas-basics"), ("sensor", "02-sensor-cleaning")):
            assignment = db.session.scalar(db.select(Assignment).where(Assignment.slug == slug))
            release = ensure_release(db.session, assignment, Path(app.config["ACADEMY_DATA_DIR"]),
                                     cache_dir=grader_cache)
            ids[f"{key}_id"] = assignment.id
            ids[f"{key}_release"] = Path(release.path) / "release" / slug
        db.session.commit()
        track_id = db.session.scalar(db.select(Track.id).where(Track.slug == "ai-basics"))
    ids["cohort_id"] = make_cohort(capacity=10, track_id=track_id)
    return ids


@pytest.fixture
def two_notebooks(app: Flask, course: dict[str, Any], grader_cache: Path) -> int:
    """01-pandas-basics with a second version holding both notebooks; returns its id."""
    from academy.grading.releases import release_upload

    source = (COURSES / "python-data" / "source" / "02-sensor-cleaning" / SENSOR).read_bytes()
    with app.app_context():
        assignment = db.session.get(Assignment, course["log_id"])
        release_upload(db.session, assignment, {SENSOR: source}, Path(app.config["ACADEMY_DATA_DIR"]),
                       actor=None, cache_dir=grader_cache)
        assignment.notebooks = [LOG, SENSOR]
        db.session.commit()
    return course["log_id"]


@pytest.fixture
def learner(app: Flask, login_as: Any, course: dict[str, Any]) -> int:
    """A signed-in learner (reading English) enrolled in the course's cohort."""
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import request_enrollment
    from academy.users.models import User

    user_id = login_as("learner", locale="en")
    with app.app_context():
        request_enrollment(db.session, db.session.get(Cohort, course["cohort_id"]), db.session.get(User, user_id))
        db.session.commit()
    return user_id


def released(course: dict[str, Any], name: str) -> bytes:
    folder = course["log_release"] if name == LOG else course["sensor_release"]
    return (folder / name).read_bytes()


def upload(client: FlaskClient, assignment_id: int, files: dict[str, bytes], **extra: str) -> Any:
    data: dict[str, Any] = {"csrf_token": csrf_token(client, f"/assignments/{assignment_id}"), **extra}
    data["notebooks"] = [(io.BytesIO(content), name) for name, content in files.items()]
    return client.post(f"/assignments/{assignment_id}/submit", data=data, content_type="multipart/form-data")


def flashed(client: FlaskClient, response: Any) -> str:
    """The page the answer redirects to, unescaped (its flashed message included)."""
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return html.unescape(client.get(response.headers["Location"]).get_data(as_text=True))


def stored_files(app: Flask) -> dict[str, bytes]:
    """The one submission's files, by stored name."""
    with app.app_context():
        [submission] = db.session.scalars(db.select(Submission)).all()
        store = submission_store(Path(app.config["ACADEMY_DATA_DIR"]))
        return {f.name: store.get(f.sha256) for f in submission.files}


def nothing_stored(app: Flask) -> bool:
    with app.app_context():
        rows = db.session.scalar(db.select(db.func.count()).select_from(Submission)) or 0
        jobs = db.session.scalar(db.select(db.func.count()).select_from(GradingJob)) or 0
    blobs = [p for p in (Path(app.config["ACADEMY_DATA_DIR"]) / "submissions").rglob("*") if p.is_file()]
    return rows == 0 and jobs == 0 and not blobs


def grade_ids(data: bytes) -> list[str]:
    nb = json.loads(data)
    return [(c["metadata"].get("nbgrader") or {}).get("grade_id") for c in nb["cells"]]


def without_graded_cell(data: bytes, index: int = 1) -> tuple[bytes, str]:
    """The notebook with its ``index``-th answer or test cell deleted, and that cell's grade id."""
    nb = nbformat.reads(data.decode(), as_version=4)
    graded = [i for i, c in enumerate(nb.cells)
              if (c.metadata.get("nbgrader") or {}).get("solution") or (c.metadata.get("nbgrader") or {}).get("grade")]
    removed = nb.cells.pop(graded[index])
    return nbformat.writes(nb).encode(), removed.metadata.nbgrader.grade_id


def both_in_one(course: dict[str, Any]) -> bytes:
    """One notebook holding every cell of both notebooks (the second's cell ids made unique)."""
    first = json.loads(released(course, LOG))
    second = json.loads(released(course, SENSOR))
    for cell in second["cells"]:
        cell["id"] = f"s2-{cell['id']}"
    first["cells"] += second["cells"]
    return json.dumps(first, ensure_ascii=False).encode()


# -- through the portal ------------------------------------------------------------------------------------------------


def test_a_browser_renamed_download_is_accepted_and_stored_under_the_notebooks_name(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int
) -> None:
    data = released(course, LOG)
    page = flashed(client, upload(client, course["log_id"], {"production_log (1).ipynb": data}))
    assert "Grading has started" in page
    assert "production_log (1).ipynb → production_log.ipynb" in page
    assert stored_files(app) == {LOG: data}


def test_a_file_keeping_its_name_is_accepted_without_a_rename_note(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int
) -> None:
    page = flashed(client, upload(client, course["log_id"], {LOG: released(course, LOG)}))
    assert "Grading has started" in page and "Files taken as" not in page
    assert list(stored_files(app)) == [LOG]


def test_two_swapped_notebooks_are_taken_by_their_content(
    app: Flask, client: FlaskClient, two_notebooks: int, course: dict[str, Any], learner: int
) -> None:
    log, sensor = released(course, LOG), released(course, SENSOR)
    page = flashed(client, upload(client, two_notebooks, {LOG: sensor, SENSOR: log}))
    assert f"{LOG} → {SENSOR} (recognised by its content" in page
    assert f"{SENSOR} → {LOG} (recognised by its content" in page
    assert stored_files(app) == {LOG: log, SENSOR: sensor}


def test_a_notebook_of_another_assignment_is_refused_and_nothing_is_stored(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int
) -> None:
    page = flashed(client, upload(client, course["log_id"], {LOG: released(course, SENSOR)}))
    assert f"'{LOG}' is not a notebook of this assignment" in page
    assert f"Expected: {LOG_TITLE} ({LOG})" in page
    assert nothing_stored(app)


def test_a_blank_notebook_is_refused_and_nothing_is_stored(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int
) -> None:
    blank = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])).encode()
    page = flashed(client, upload(client, course["log_id"], {"production_log (2).ipynb": blank}))
    assert "'production_log (2).ipynb' is not a notebook of this assignment" in page
    assert nothing_stored(app)


def test_a_file_holding_two_notebooks_is_refused_as_ambiguous(
    app: Flask, client: FlaskClient, two_notebooks: int, course: dict[str, Any], learner: int
) -> None:
    page = flashed(client, upload(client, two_notebooks, {"together.ipynb": both_in_one(course),
                                                          SENSOR: released(course, SENSOR)}))
    assert "'together.ipynb' holds the cells of several notebooks" in page
    assert f"{LOG_TITLE} ({LOG})" in page and f"{SENSOR_TITLE} ({SENSOR})" in page
    assert nothing_stored(app)


def test_two_files_of_one_notebook_are_refused_naming_both(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int
) -> None:
    data = released(course, LOG)
    page = flashed(client, upload(client, course["log_id"], {LOG: data, "production_log (1).ipynb": data}))
    assert f"'production_log (1).ipynb' and '{LOG}' are both the notebook {LOG_TITLE} ({LOG})" in page
    assert nothing_stored(app)


def test_a_missing_notebook_is_asked_for_by_its_title(
    app: Flask, client: FlaskClient, two_notebooks: int, course: dict[str, Any], learner: int
) -> None:
    page = flashed(client, upload(client, two_notebooks, {"mine.ipynb": released(course, LOG)}))
    assert f"Also submit: {SENSOR_TITLE} ({SENSOR})" in page
    assert nothing_stored(app)


def test_a_renamed_file_with_a_deleted_cell_is_matched_and_restored_on_request(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int
) -> None:
    data, removed = without_graded_cell(released(course, LOG))
    response = upload(client, course["log_id"], {"production_log (1).ipynb": data})
    assert response.status_code == 422
    page = html.unescape(response.get_data(as_text=True))
    assert "production_log (1).ipynb → production_log.ipynb" in page and LOG_TITLE in page
    with app.app_context():
        assert db.session.scalar(db.select(Submission)) is None, "nothing is submitted before the learner decides"
    pending = re.search(r'name="pending" value="([^"]+)"', page).group(1)
    accepted = client.post(f"/assignments/{course['log_id']}/submit",
                           data={"csrf_token": csrf_token(client, f"/assignments/{course['log_id']}"),
                                 "pending": pending, "restore": "1"})
    assert "production_log (1).ipynb → production_log.ipynb" in flashed(client, accepted)
    [(name, stored)] = stored_files(app).items()
    assert name == LOG and removed in grade_ids(stored)


def test_swapped_files_with_a_deleted_cell_are_restored_from_the_notebook_they_hold(
    app: Flask, client: FlaskClient, two_notebooks: int, course: dict[str, Any], learner: int
) -> None:
    log, removed = without_graded_cell(released(course, LOG), index=2)
    response = upload(client, two_notebooks, {SENSOR: log, LOG: released(course, SENSOR)})
    assert response.status_code == 422
    page = html.unescape(response.get_data(as_text=True))
    assert f"{SENSOR} → {LOG} (recognised by its content" in page
    pending = re.search(r'name="pending" value="([^"]+)"', page).group(1)
    accepted = client.post(f"/assignments/{two_notebooks}/submit",
                           data={"csrf_token": csrf_token(client, f"/assignments/{two_notebooks}"),
                                 "pending": pending, "restore": "1"})
    flashed(client, accepted)
    files = stored_files(app)
    assert sorted(files) == [LOG, SENSOR]
    assert grade_ids(files[LOG]) == grade_ids(released(course, LOG)), "put back from the log, not the sensor"
    assert json.loads(files[SENSOR]) == json.loads(released(course, SENSOR)) and removed in grade_ids(files[LOG])


def test_a_non_utf8_renamed_file_is_refused_naming_it(
    app: Flask, client: FlaskClient, course: dict[str, Any], learner: int
) -> None:
    page = flashed(client, upload(client, course["log_id"], {"production_log (1).ipynb": b"\xff\xfe{\x00}\x00"}))
    assert "'production_log (1).ipynb' is not valid text" in page
    assert nothing_stored(app)


# -- the services ------------------------------------------------------------------------------------------------------


def test_submit_stores_a_renamed_file_under_the_released_name(
    app: Flask, course: dict[str, Any], make_user: Any
) -> None:
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import request_enrollment
    from academy.grading.services import current_release, preflight, submit
    from academy.users.models import User

    user_id = make_user("learner")
    data = released(course, LOG)
    with app.app_context():
        user = db.session.get(User, user_id)
        request_enrollment(db.session, db.session.get(Cohort, course["cohort_id"]), user)
        assignment = db.session.get(Assignment, course["log_id"])
        [report] = preflight(current_release(db.session, assignment), {"log (1).ipynb": data}).reports
        assert (report.name, report.received_as, report.title, report.renamed) == (LOG, "log (1).ipynb",
                                                                                   LOG_TITLE, True)
        submission, _job = submit(db.session, assignment=assignment, user=user, files={"log (1).ipynb": data},
                                  store=submission_store(Path(app.config["ACADEMY_DATA_DIR"])))
        db.session.commit()
        assert [f.name for f in submission.files] == [LOG]


def test_matching_weighs_the_instructors_text_not_shared_plain_ids(course: dict[str, Any], app: Flask) -> None:
    """Both shipped notebooks use ``intro``, ``setup`` and ``q1_text``: those alone match nothing."""
    from academy.engine.validation import load_notebook
    from academy.errors import ValidationFailed
    from academy.grading.matching import match_files

    log = load_notebook(released(course, LOG), LOG)
    sensor = load_notebook(released(course, SENSOR), SENSOR)
    shared = copy.deepcopy(sensor)
    shared.cells = [c for c in shared.cells
                    if (c.metadata.get("nbgrader") or {}).get("grade_id") in {"intro", "setup", "q1_text"}]
    with app.test_request_context():
        with pytest.raises(ValidationFailed, match=re.escape(f"{LOG_TITLE} ({LOG})")):
            match_files({"x.ipynb": shared}, {LOG: log})
        [match] = match_files({SENSOR: log, LOG: sensor}, {LOG: log, SENSOR: sensor})[:1]
        assert (match.notebook, match.received_as, match.by_content) == (LOG, SENSOR, True)


# -- "Submit from my lab" ----------------------------------------------------------------------------------------------


class LabWithFiles(FakeHub):
    """A running lab whose workspace holds ``files`` (by notebook name), read through the contents API."""

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__()
        self.files = files

    def server(self, name: str) -> Any:
        self.running.setdefault(name, {})
        return super().server(name)

    def get_file(self, _user: str, path: str) -> dict[str, Any] | None:
        data = self.files.get(path.rsplit("/", 1)[-1])
        return None if data is None else {"type": "notebook", "content": json.loads(data)}


def submit_from_lab(client: FlaskClient, monkeypatch: pytest.MonkeyPatch, assignment_id: int,
                    files: dict[str, bytes]) -> Any:
    monkeypatch.setattr("academy.labs.views._client", lambda: LabWithFiles(files))
    token = csrf_token(client, f"/assignments/{assignment_id}")
    return client.post(f"/labs/assignments/{assignment_id}/submit", data={"csrf_token": token})


@pytest.mark.app_config(**LABS)
def test_submit_from_the_lab_goes_through_the_same_matching(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, course: dict[str, Any], learner: int
) -> None:
    nb = json.loads(released(course, LOG))
    nb["cells"].append({"cell_type": "markdown", "id": "note", "metadata": {}, "source": "내가 쓴 메모"})
    page = flashed(client, submit_from_lab(client, monkeypatch, course["log_id"], {LOG: json.dumps(nb).encode()}))
    assert "Grading has started" in page and "Files taken as" not in page
    [(name, stored)] = stored_files(app).items()
    assert name == LOG and json.loads(stored)["cells"][-1]["source"] == "내가 쓴 메모"
    with app.app_context():
        assert db.session.scalar(db.select(Submission.origin)) == "lab"


@pytest.mark.app_config(**LABS)
def test_notebooks_swapped_in_the_lab_are_taken_by_their_content(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, two_notebooks: int, course: dict[str, Any],
    learner: int
) -> None:
    log, sensor = released(course, LOG), released(course, SENSOR)
    page = flashed(client, submit_from_lab(client, monkeypatch, two_notebooks, {LOG: sensor, SENSOR: log}))
    assert f"{SENSOR} → {LOG} (recognised by its content" in page
    assert {name: json.loads(data) for name, data in stored_files(app).items()} == {
        LOG: json.loads(log), SENSOR: json.loads(sensor)}


def test_two_files_of_one_name_from_two_folders_are_both_kept_and_matched(
    app: Flask, client: FlaskClient, two_notebooks: int, course: dict[str, Any], learner: int
) -> None:
    """The browser sends both files under one name: neither is dropped, their content decides."""
    data: dict[str, Any] = {"csrf_token": csrf_token(client, f"/assignments/{two_notebooks}"),
                            "notebooks": [(io.BytesIO(released(course, SENSOR)), "week1/notebook.ipynb"),
                                          (io.BytesIO(released(course, LOG)), "week2/notebook.ipynb")]}
    response = client.post(f"/assignments/{two_notebooks}/submit", data=data, content_type="multipart/form-data")
    flashed(client, response)
    assert stored_files(app) == {LOG: released(course, LOG), SENSOR: released(course, SENSOR)}
