"""Course staff's authoring lab against the real parts: JupyterHub + configurable-http-proxy + local spawner, the
portal over HTTP, and the publish checks run by the stack's job worker on the real grader.

A stack of its own: its worker runs the publish jobs beside the lab job (tests/labs/test_integration.py's runs
the lab job only).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
import requests

from tests.labs.labstack import LabStack, course_instructor, lab_stack, missing_parts, process_env
from tests.support import skip_or_fail

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    reason = missing_parts()
    if reason:
        skip_or_fail(reason)
    with lab_stack(tmp_path_factory.mktemp("authoring"), gpu_course=None,
                   jobs=("academy.start_lab", "academy.check_version", "academy.publish_version")) as running:
        yield running


def _publish_from_lab(stack: LabStack, session: requests.Session, assignment_id: int,
                      until: tuple[str, ...]) -> tuple[str, str]:
    """"Check the version saved in my lab" on the publish page; waits for the check job: (draft page, state)."""
    path = f"/teach/assignments/{assignment_id}/publish"
    sent = session.post(f"{stack.portal_url}{path}", data={"csrf_token": stack.csrf(session, path), "source": "lab"},
                        allow_redirects=False, timeout=60)
    assert sent.status_code == 303 and f"{path}/" in sent.headers["Location"], sent.text[:300]
    draft = sent.headers["Location"].replace(stack.portal_url, "")
    return draft, _wait_draft(stack, session, draft, until)


def _wait_draft(stack: LabStack, session: requests.Session, draft: str, until: tuple[str, ...],
                timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = session.get(f"{stack.portal_url}{draft}/status", timeout=30).json()["status"]
        if state in until:
            return state
        time.sleep(0.3)
    raise AssertionError(f"the draft did not reach {until} in {timeout} s: {state}")


def test_authoring_lab_edit_publish_and_learners_get_the_new_version(stack: LabStack) -> None:
    """Course staff open the authoring lab (source notebooks, nbgrader's Create Assignment toolbar), edit a source
    notebook through the contents API as JupyterLab saves it, publish it from the portal, and learners get it; a
    version whose solution fails a hidden test is refused naming the cell, and nothing is released."""
    from academy.catalog.models import Assignment
    from academy.extensions import db
    from academy.grading.services import current_release, released_notebook

    user_id, session = course_instructor(stack)
    hub_user = f"u{user_id}"
    assignment_id = stack.assignment_ids["01-pandas-basics"]
    publish = f"/teach/assignments/{assignment_id}/publish"
    assert 'data-authoring-lab="closed"' in session.get(f"{stack.portal_url}{publish}", timeout=30).text
    opened = session.post(f"{stack.portal_url}/labs/open/{stack.course_ids['python-data']}",
                          data={"csrf_token": stack.csrf(session, publish), "profile": "authoring",
                                "assignment_id": str(assignment_id)}, allow_redirects=False, timeout=30)
    assert opened.status_code == 303, opened.text[:300]
    body = stack.wait_lab(session, opened.headers["Location"])
    assert body["state"] == "running", body
    source = "python-data/source/01-pandas-basics/production_log.ipynb"
    assert body["url"] == f"{stack.hub_url}/user/{hub_user}/lab/tree/{source}"
    # The CPU-sized authoring profile, with nbgrader's authoring tools and nothing else of nbgrader.
    env = process_env(stack, hub_user)
    assert env["ACADEMY_LAB_ROLE"] == "authoring" and env["CUDA_VISIBLE_DEVICES"] == ""
    page = session.get(body["url"], timeout=60)
    assert page.status_code == 200
    config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                  page.text, re.S).group(1))
    assert "@jupyter/nbgrader" in [e["name"] for e in config["federated_extensions"]]
    assert {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:assignment-list",
            "@jupyter/nbgrader:menu"} <= set(config["disabledExtensions"])
    assert "@jupyter/nbgrader:create-assignment" not in config["disabledExtensions"]
    # The source notebook is there with its solutions and hidden tests.
    notebook = stack.contents(hub_user, source, params={"content": 1}).json()["content"]
    text = json.dumps(notebook)
    assert "BEGIN SOLUTION" in text and "BEGIN HIDDEN TESTS" in text
    assert 'data-authoring-lab="running"' in session.get(f"{stack.portal_url}{publish}", timeout=30).text

    # Edit as JupyterLab saves it, publish from the lab, confirm: learners get the new version.
    notebook["cells"].insert(0, {"cell_type": "markdown", "id": "note-v2", "metadata": {},
                                 "source": "## 2판 안내: 불량률 정의를 고쳤습니다"})
    saved = stack.contents(hub_user, source, "PUT", json={"type": "notebook", "format": "json", "content": notebook})
    assert saved.status_code == 200
    draft, state = _publish_from_lab(stack, session, assignment_id, ("ready", "refused", "failed"))
    assert state == "ready", session.get(f"{stack.portal_url}{draft}", timeout=30).text[-3000:]
    confirm = session.post(f"{stack.portal_url}{draft}", data={"csrf_token": stack.csrf(session, draft),
                                                               "regrade": "none"}, allow_redirects=False, timeout=30)
    assert confirm.status_code == 303
    assert _wait_draft(stack, session, draft, ("released", "failed")) == "released"
    learner_id = stack.make_learner("authoring-learner@example.kr")
    learner = stack.portal_session("authoring-learner@example.kr")
    download = learner.get(f"{stack.portal_url}/assignments/{assignment_id}/notebooks/production_log.ipynb",
                           timeout=30)
    text = download.content.decode("utf-8")  # the file as saved, not requests' guess at its encoding
    assert download.status_code == 200 and "2판 안내" in text and "BEGIN SOLUTION" not in text
    with stack.app.app_context():
        release = current_release(db.session, db.session.get(Assignment, assignment_id))
        version = release.version
        assert "2판 안내" in released_notebook(release, "production_log.ipynb").decode()
        db.session.remove()
    assert learner_id and version >= 2

    # A solution that fails a hidden test is refused naming the cell; nothing is released.
    cell = next(c for c in notebook["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == "add_defect_rate")
    cell["source"] = ("def add_defect_rate(df):\n    ### BEGIN SOLUTION\n    result = df.copy()\n"
                      "    result['defect_rate'] = result['defects'] / result['produced']\n    return result\n"
                      "    ### END SOLUTION\n")
    stack.contents(hub_user, source, "PUT", json={"type": "notebook", "format": "json", "content": notebook})
    draft, state = _publish_from_lab(stack, session, assignment_id, ("ready", "refused", "failed"))
    assert state == "refused"
    page = session.get(f"{stack.portal_url}{draft}", timeout=30).text
    assert 'data-cell="test_add_defect_rate"' in page and "production_log.ipynb" in page
    with stack.app.app_context():
        assert current_release(db.session, db.session.get(Assignment, assignment_id)).version == version
        db.session.remove()
    token = stack.csrf(session, opened.headers["Location"])
    session.post(f"{stack.portal_url}{opened.headers['Location']}/stop", data={"csrf_token": token}, timeout=60)


def test_only_course_staff_open_the_authoring_lab(stack: LabStack) -> None:
    learner_id = stack.make_learner("not-staff@example.kr")
    session = stack.portal_session("not-staff@example.kr")
    refused = stack.open_lab(session, "python-data", "01-pandas-basics", profile="authoring")
    assert refused.status_code == 303 and "/labs/" not in refused.headers["Location"]
    from sqlalchemy import func, select

    from academy.extensions import db
    from academy.labs.models import LabSession

    with stack.app.app_context():
        assert db.session.scalar(select(func.count()).where(LabSession.user_id == learner_id)) == 0
        db.session.remove()
