"""Labs against the real parts: JupyterHub + configurable-http-proxy + local spawner + the portal over HTTP.

One hub and one portal serve the whole module (starting them costs seconds); each test uses its
own learners.  The GPU inventory is the configured fake ``0,1``; ``python-data`` is switched to the
``gpu`` profile with a 2-hour quota, ``ml-quality`` stays on ``cpu``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from tests.labs.labstack import LabStack, course_instructor, lab_stack, missing_parts, process_env
from tests.support import COURSES, skip_or_fail

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    reason = missing_parts()
    if reason:
        skip_or_fail(reason)
    with lab_stack(tmp_path_factory.mktemp("labs")) as running:
        yield running


def _course_instructor(stack: LabStack) -> tuple[int, requests.Session]:
    """The instructor the sample courses' manifests name (course.toml), signed in to the portal."""
    return course_instructor(stack)


def _lab_rows(stack: LabStack, user_id: int) -> list[Any]:
    from academy.extensions import db
    from academy.labs.models import LabSession

    with stack.app.app_context():
        rows = list(db.session.scalars(select(LabSession).where(LabSession.user_id == user_id)
                                       .order_by(LabSession.id)))
        db.session.expunge_all()
        db.session.remove()
    return rows


def _flash(session: requests.Session, stack: LabStack, path: str) -> str:
    return session.get(f"{stack.portal_url}{path}", timeout=10).text


# -- single sign-on -----------------------------------------------------------------------------------------------

def test_signed_out_visitor_is_sent_to_the_portal_login(stack: LabStack) -> None:
    response = requests.get(f"{stack.hub_url}/hub/login", timeout=30)
    assert response.url.startswith(f"{stack.portal_url}/login"), response.url
    assert "/oauth/authorize" in requests.utils.unquote(response.url)


def test_portal_sign_in_reaches_the_hub_without_a_password_and_admin_only_for_admins(stack: LabStack) -> None:
    learner_id = stack.make_learner("sso-learner@example.kr")
    admin_id = stack.make_learner("sso-admin@example.kr", enroll=False, role="admin")
    for email, user_id, admin in (("sso-learner@example.kr", learner_id, False),
                                  ("sso-admin@example.kr", admin_id, True)):
        session = stack.portal_session(email)
        response = session.get(f"{stack.hub_url}/hub/login", params={"next": "/hub/home"}, timeout=30)
        assert response.status_code == 200
        assert response.url == f"{stack.hub_url}/hub/home", response.url  # landed in the hub, no form
        hub_user = stack.hub_api("GET", f"/users/u{user_id}").json()
        assert hub_user["admin"] is admin, email
        # The hub's cookie is a real session: the hub knows who this is.
        whoami = session.get(f"{stack.hub_url}/hub/api/user", timeout=30,
                             headers={"Referer": f"{stack.hub_url}/hub/home"})
        assert whoami.status_code == 200 and whoami.json()["name"] == f"u{user_id}"


def test_signing_out_of_the_portal_signs_out_of_the_hub(stack: LabStack) -> None:
    from academy.extensions import db
    from academy.oidc.models import OAuthToken

    user_id = stack.make_learner("sso-out@example.kr")
    session = stack.portal_session("sso-out@example.kr")
    landed = session.get(f"{stack.hub_url}/hub/login", params={"next": "/hub/home"}, timeout=30)
    assert landed.url == f"{stack.hub_url}/hub/home"
    # A learner who used the lab: the hub holds an OAuth token and a session for them.
    from academy.labs.models import LabSession, LabState

    with stack.app.app_context():
        db.session.add(LabSession(user_id=user_id, course_id=stack.course_ids["ml-quality"], hub_user=f"u{user_id}",
                                  profile="cpu", state=LabState.stopped))
        db.session.commit()
        db.session.remove()
    token = stack.csrf(session, "/dashboard")
    response = session.post(f"{stack.portal_url}/logout", data={"csrf_token": token}, timeout=30)
    # The browser went through the hub's logout and came back to the portal.
    assert response.url.rstrip("/") == stack.portal_url, response.url
    assert any(r.url.startswith(f"{stack.hub_url}/hub/logout") for r in response.history)
    with stack.app.app_context():
        tokens = list(db.session.scalars(select(OAuthToken).where(OAuthToken.user_id == user_id)))
        assert tokens and all(t.revoked_at is not None for t in tokens)
        db.session.remove()
    assert stack.hub_api("GET", f"/users/u{user_id}/tokens").json()["api_tokens"] == []
    # Back at the hub, the person is a stranger again: sent to the portal's login.
    assert session.get(f"{stack.hub_url}/hub/login", timeout=30).url.startswith(f"{stack.portal_url}/login")


# -- launch, notebooks, submit from the lab ------------------------------------------------------------------------

def test_launch_copies_notebooks_keeps_edits_resets_with_backup_and_submits_from_the_lab(stack: LabStack) -> None:
    from academy.extensions import db
    from academy.grading.models import Submission

    user_id = stack.make_learner("lab-cpu@example.kr")
    hub_user = f"u{user_id}"
    session = stack.portal_session("lab-cpu@example.kr")
    response = stack.open_lab(session, "ml-quality", "01-linear-regression")
    assert response.status_code == 303
    lab_path = response.headers["Location"]
    body = stack.wait_lab(session, lab_path)
    assert body["state"] == "running", body
    folder = "ml-quality/01-linear-regression"
    assert body["url"].startswith(f"{stack.hub_url}/user/{hub_user}/lab/tree/{folder}/")
    notebook_path = body["url"].split("/lab/tree/", 1)[1]
    # The lab runs the CPU profile: no GPU visible.
    assert process_env(stack, hub_user)["CUDA_VISIBLE_DEVICES"] == ""
    # Signed in to the portal, the learner reaches the notebook itself (no second password).
    page = session.get(body["url"], timeout=60)
    assert page.status_code == 200 and page.url == body["url"]

    original = stack.contents(hub_user, notebook_path, params={"content": 1}).json()["content"]
    edited = json.loads(json.dumps(original))
    edited["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "내가 쓴 메모"})
    assert stack.contents(hub_user, notebook_path, "PUT",
                          json={"type": "notebook", "format": "json", "content": edited}).status_code == 200
    # Opening the lab again reuses the running server and never overwrites the learner's edit.
    again = stack.open_lab(session, "ml-quality", "01-linear-regression")
    assert again.headers["Location"] == lab_path
    assert stack.wait_lab(session, lab_path)["state"] == "running"
    kept = stack.contents(hub_user, notebook_path, params={"content": 1}).json()["content"]
    assert kept["cells"][-1]["source"] == "내가 쓴 메모"

    # Submit from the lab: the notebook as saved in the lab goes through preflight and storage.
    assignment_id = stack.assignment_ids["01-linear-regression"]
    token = stack.csrf(session, f"/assignments/{assignment_id}")
    submitted = session.post(f"{stack.portal_url}/labs/assignments/{assignment_id}/submit",
                             data={"csrf_token": token}, allow_redirects=False, timeout=60)
    assert submitted.status_code == 303 and "/submissions/" in submitted.headers["Location"], submitted.text[:300]
    from academy.grading.storage import submission_store

    with stack.app.app_context():
        row = db.session.scalar(select(Submission).where(Submission.user_id == user_id))
        assert row is not None and row.origin == "lab"
        stored = json.loads(submission_store(stack.app.config["ACADEMY_DATA_DIR"]).get(row.files[0].sha256))
        db.session.remove()
    assert stored["cells"][-1]["source"] == "내가 쓴 메모"  # what the lab held, not the original

    # Reset to the original keeps the learner's version as a backup beside it.
    name = notebook_path.rsplit("/", 1)[1]
    token = stack.csrf(session, f"/assignments/{assignment_id}")
    reset = session.post(f"{stack.portal_url}/labs/assignments/{assignment_id}/reset/{name}",
                         data={"csrf_token": token}, allow_redirects=False, timeout=60)
    assert reset.status_code == 303
    listing = stack.contents(hub_user, folder, params={"content": 1}).json()["content"]
    backups = [item["name"] for item in listing if ".backup-" in item["name"]]
    assert len(backups) == 1, listing
    backup = stack.contents(hub_user, f"{folder}/{backups[0]}", params={"content": 1}).json()["content"]
    assert backup["cells"][-1]["source"] == "내가 쓴 메모"
    restored = stack.contents(hub_user, notebook_path, params={"content": 1}).json()["content"]
    assert len(restored["cells"]) == len(original["cells"])

    # Stop: the hub's server goes away, the session records the hub's start and the stop.
    token = stack.csrf(session, lab_path)
    session.post(f"{stack.portal_url}{lab_path}/stop", data={"csrf_token": token}, timeout=60)
    assert not (stack.hub_api("GET", f"/users/{hub_user}").json()["servers"] or {}).get("")
    rows = _lab_rows(stack, user_id)
    assert rows[-1].state.value == "stopped" and rows[-1].started_at is not None and rows[-1].stopped_at is not None
    # Submitting from a lab that is not running is refused with a clear message.
    token = stack.csrf(session, f"/assignments/{assignment_id}")
    refused = session.post(f"{stack.portal_url}/labs/assignments/{assignment_id}/submit",
                           data={"csrf_token": token}, timeout=60)
    assert "실습 환경이 실행 중이 아닙니다" in refused.text or "lab is not running" in refused.text


# -- bad input ----------------------------------------------------------------------------------------------------

def test_refusals_start_nothing(stack: LabStack) -> None:
    from academy.extensions import db
    from academy.labs.models import LabSession, LabState

    stranger = stack.make_learner("lab-stranger@example.kr", enroll=False)
    session = stack.portal_session("lab-stranger@example.kr")
    response = stack.open_lab(session, "ml-quality", "01-linear-regression")
    assert response.status_code == 303 and "/assignments/" in response.headers["Location"]
    assert _lab_rows(stack, stranger) == []

    learner = stack.make_learner("lab-forger@example.kr")
    session = stack.portal_session("lab-forger@example.kr")
    forged = stack.open_lab(session, "ml-quality", "01-linear-regression", profile="gpu")
    assert forged.status_code == 303 and "/labs/" not in forged.headers["Location"]
    page = session.get(f"{stack.portal_url}{forged.headers['Location']}", timeout=30).text
    assert "GPU 실습 환경 (전용 GPU 1개)" in page  # the refused profile named by its title, never its key
    assert "&#39;gpu&#39;" not in page and "'gpu'" not in page
    assert _lab_rows(stack, learner) == []

    # A notebook path that leaves the assignment's folder.
    assignment_id = stack.assignment_ids["01-linear-regression"]
    token = stack.csrf(session, f"/assignments/{assignment_id}")
    for name in ("..", "..%2F..%2Fetc%2Fpasswd", ".hidden.ipynb"):
        bad = session.post(f"{stack.portal_url}/labs/assignments/{assignment_id}/reset/{name}",
                           data={"csrf_token": token}, timeout=30)
        assert bad.status_code in (200, 404), name  # refused page or no such route, never a 500

    # Quota used up: two GPU hours already metered in python-data.
    spent = stack.make_learner("lab-spent@example.kr")
    with stack.app.app_context():
        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)
        db.session.add(LabSession(user_id=spent, course_id=stack.course_ids["python-data"], hub_user=f"u{spent}",
                                  profile="gpu", gpus=1, device="0", state=LabState.stopped, started_at=start,
                                  stopped_at=start + dt.timedelta(hours=2, minutes=1)))
        db.session.commit()
        db.session.remove()
    session = stack.portal_session("lab-spent@example.kr")
    refused = stack.open_lab(session, "python-data", "01-pandas-basics")
    assert refused.status_code == 303 and "/labs/" not in refused.headers["Location"]
    assert len(_lab_rows(stack, spent)) == 1  # only the old one

    # Straight to the hub with options the portal did not sign: refused, nothing runs.
    stack.hub_api("POST", f"/users/u{learner}")
    direct = stack.hub_api("POST", f"/users/u{learner}/server", json={"profile": "gpu", "device": "0"})
    assert direct.status_code >= 400
    assert not (stack.hub_api("GET", f"/users/u{learner}").json()["servers"] or {}).get("")


# -- GPUs: fake inventory of two, fair queue, CPU instead, metering --------------------------------------------------

def test_gpu_queue_with_two_fake_devices(stack: LabStack) -> None:
    from academy import create_app
    from academy.extensions import db
    from academy.labs.models import LabSession
    from academy.labs.queue import waiting_line

    ids = [stack.make_learner(f"gpu{i}@example.kr") for i in range(1, 5)]
    sessions = [stack.portal_session(f"gpu{i}@example.kr") for i in range(1, 5)]
    paths = []
    for session in sessions:
        response = stack.open_lab(session, "python-data", "01-pandas-basics")
        assert response.status_code == 303
        paths.append(response.headers["Location"])
    first = stack.wait_lab(sessions[0], paths[0])
    second = stack.wait_lab(sessions[1], paths[1])
    assert first["state"] == second["state"] == "running"
    devices = {process_env(stack, f"u{ids[i]}")["CUDA_VISIBLE_DEVICES"] for i in (0, 1)}
    assert devices == {"0", "1"}  # one server per device
    third = sessions[2].get(f"{stack.portal_url}{paths[2]}/status", timeout=30).json()
    fourth = sessions[3].get(f"{stack.portal_url}{paths[3]}/status", timeout=30).json()
    assert (third["state"], third["position"]) == ("queued", 1)
    assert (fourth["state"], fourth["position"]) == ("queued", 2)
    assert "2" in fourth["message"]

    # The line lives in the database: a restarted portal sees the same places.
    restarted = create_app({"data_dir": stack.app.config["ACADEMY_SETTINGS"].data_dir,
                            "database_url": stack.app.config["SQLALCHEMY_DATABASE_URI"], "secret_key": "x" * 40,
                            "hub_url": stack.hub_url, "hub_api_token": stack.api_token, "gpu_devices": "0,1"})
    with restarted.app_context():
        waiting = [row.user_id for row in waiting_line(db.session)]
        assert waiting == [ids[2], ids[3]]
        db.session.remove()
        db.engine.dispose()

    # The fourth takes a CPU instead of waiting.
    token = stack.csrf(sessions[3], paths[3])
    moved = sessions[3].post(f"{stack.portal_url}{paths[3]}/cpu", data={"csrf_token": token},
                             allow_redirects=False, timeout=30)
    cpu_path = moved.headers["Location"]
    assert cpu_path != paths[3]
    assert stack.wait_lab(sessions[3], cpu_path)["state"] == "running"
    assert process_env(stack, f"u{ids[3]}")["CUDA_VISIBLE_DEVICES"] == ""

    # The first stops; the head of the line gets the freed device.
    token = stack.csrf(sessions[0], paths[0])
    sessions[0].post(f"{stack.portal_url}{paths[0]}/stop", data={"csrf_token": token}, timeout=60)
    served = stack.wait_lab(sessions[2], paths[2])
    assert served["state"] == "running", served
    assert process_env(stack, f"u{ids[2]}")["CUDA_VISIBLE_DEVICES"] == _lab_rows(stack, ids[2])[-1].device

    # Metering: the stopped GPU session has the hub's start and its stop; admins see the devices.
    stopped = _lab_rows(stack, ids[0])[-1]
    assert stopped.started_at is not None and stopped.stopped_at is not None and stopped.gpu_seconds() > 0
    admin = stack.make_learner("gpu-admin@example.kr", enroll=False, role="admin")
    page = stack.portal_session("gpu-admin@example.kr").get(f"{stack.portal_url}/labs/manage", timeout=30).text
    assert "gpu2" in page and "gpu3" in page and "gpu4" in page
    assert admin
    # An admin stops another learner's lab.
    admin_session = stack.portal_session("gpu-admin@example.kr")
    token = stack.csrf(admin_session, "/labs/manage")
    lab_id = _lab_rows(stack, ids[1])[-1].id
    admin_session.post(f"{stack.portal_url}/labs/{lab_id}/stop", data={"csrf_token": token}, timeout=60)
    with stack.app.app_context():
        row = db.session.get(LabSession, lab_id)
        assert row.state.value == "stopped" and row.stop_reason == "admin"
        db.session.remove()
    for i in (2, 3):
        rows = _lab_rows(stack, ids[i])
        token = stack.csrf(sessions[i], "/dashboard")
        sessions[i].post(f"{stack.portal_url}/labs/{rows[-1].id}/stop", data={"csrf_token": token}, timeout=60)


# -- the hub is down ------------------------------------------------------------------------------------------------

def test_hub_down_fails_cleanly_and_holds_nothing(tmp_path: Path) -> None:
    """A portal configured with a hub that is not running: the learner is told, no GPU is held."""
    from academy import create_app
    from academy.bootstrap import run_init
    from academy.catalog.models import Course
    from academy.catalog.services import list_tracks
    from academy.db import utcnow
    from academy.enrollment.services import create_cohort, request_enrollment
    from academy.extensions import db
    from academy.labs.hubprocess import free_ports
    from academy.labs.models import LabSession
    from academy.users.models import Role
    from academy.users.services import create_user
    from tests.conftest import login

    dead = free_ports(1)[0]
    app = create_app({"TESTING": True, "data_dir": tmp_path, "database_url": f"sqlite:///{tmp_path}/a.sqlite3",
                      "secret_key": "x" * 40, "courses_dir": COURSES,
                      "RATELIMIT_ENABLED": False, "WTF_CSRF_ENABLED": False, "hub_url": f"http://127.0.0.1:{dead}",
                      "gpu_devices": "0"})
    with app.app_context():
        run_init(check_solutions=False)  # the solutions: tests/curriculum
        track = list_tracks(db.session)[0]
        cohort = create_cohort(db.session, track, name="c", starts_at=utcnow(),
                               ends_at=utcnow() + dt.timedelta(days=9), capacity=5, actor=None)
        user = create_user(db.session, "down@example.kr", "lab-offline-2026", Role.learner, name="down")
        user.consent_at = utcnow()
        request_enrollment(db.session, cohort, user)
        course = db.session.scalar(select(Course).where(Course.slug == "python-data"))
        course.lab_profile, course.gpu_hour_quota = "gpu", 5.0
        db.session.commit()
        course_id = course.id
    client = app.test_client()
    assert login(client, "down@example.kr", "lab-offline-2026").status_code == 302
    response = client.post(f"/labs/open/{course_id}")
    assert response.status_code == 303
    status = client.get(response.headers["Location"] + "/status").get_json()  # the launch page's first look
    assert status["state"] == "starting" and status["finished"] is False  # the job has not run yet
    from academy.labs.hub import client_for
    from academy.labs.launch import run_start

    with app.app_context():  # the start_lab job, against the hub that is not there
        settings = app.config["ACADEMY_SETTINGS"]
        lab_id = db.session.scalar(select(LabSession.id))
        assert run_start(db.session, client_for(settings), settings, lab_id) == "failed"
        db.session.remove()
    status = client.get(response.headers["Location"] + "/status").get_json()
    assert status["state"] == "failed" and status["finished"] is True
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "연결할 수 없습니다" in page or "not reachable" in page
    assert "실습 다시 열기" in page or "Open the lab again" in page
    with app.app_context():
        row = db.session.scalar(select(LabSession))
        assert row.state.value == "failed" and row.stop_reason == "hub_down"
        # The GPU granted for the attempt is free again.
        from academy.labs.profiles import configured_profiles
        from academy.labs.queue import free_device

        assert free_device(db.session, settings, configured_profiles(settings)["gpu"]) == "0"
        db.session.remove()
        db.engine.dispose()


def test_a_spawn_that_fails_is_reported_and_leaves_nothing_running(tmp_path: Path) -> None:
    """The hub cannot start the learner's server (here: its Python environment is missing)."""
    reason = missing_parts()
    if reason:
        pytest.skip(reason)
    with lab_stack(tmp_path, gpu_course="python-data",
                   hub_extra_env={"ACADEMY_LAB_ENV": str(tmp_path / "no-such-env")}) as broken:
        user_id = broken.make_learner("spawn-fails@example.kr")
        session = broken.portal_session("spawn-fails@example.kr")
        response = broken.open_lab(session, "python-data", "01-pandas-basics")
        body = broken.wait_lab(session, response.headers["Location"], timeout=60)
        assert body["state"] == "failed"
        assert "시작하지 못했습니다" in body["message"] or "could not be started" in body["message"]
        page = session.get(f"{broken.portal_url}{response.headers['Location']}", timeout=30).text
        assert "실습 다시 열기" in page or "Open the lab again" in page
        row = _lab_rows(broken, user_id)[-1]
        assert row.stop_reason == "spawn_failed" and row.error
        assert not (broken.hub_api("GET", f"/users/u{user_id}").json()["servers"] or {}).get("")
        # The GPU it was granted is free for the next learner.
        from academy.extensions import db
        from academy.labs.profiles import configured_profiles
        from academy.labs.queue import free_device

        with broken.app.app_context():
            settings = broken.app.config["ACADEMY_SETTINGS"]
            assert free_device(db.session, settings, configured_profiles(settings)["gpu"]) == row.device
            db.session.remove()


def test_files_released_beside_the_notebook_reach_the_lab(stack: LabStack) -> None:
    """dl-vision's test cells import academy_checks.py, released next to the notebook: the lab gets it too."""
    # The course's instructor (course.toml) may open its lab; the stack's cohort is of another track.
    user_id, session = _course_instructor(stack)
    response = stack.open_lab(session, "dl-vision", "01-defect-cnn", profile="cpu")
    assert response.status_code == 303
    body = stack.wait_lab(session, response.headers["Location"])
    assert body["state"] == "running", body
    helper = stack.contents(f"u{user_id}", "dl-vision/01-defect-cnn/academy_checks.py", params={"content": 1})
    assert helper.status_code == 200 and "def check_equal" in helper.json()["content"]
    token = stack.csrf(session, response.headers["Location"])
    session.post(f"{stack.portal_url}{response.headers['Location']}/stop", data={"csrf_token": token}, timeout=60)


def test_a_shared_gpu_seat_reaches_the_lab_with_its_share(stack: LabStack) -> None:
    """A gpu-shared lab gets its seat's device and memory share from the hub (hub_config/gpu_share.py)."""
    from academy.catalog.models import Course
    from academy.extensions import db

    with stack.app.app_context():
        course = db.session.scalar(select(Course).where(Course.slug == "python-basics"))
        course.lab_profile = "gpu-shared"
        db.session.commit()
        db.session.remove()
    user_id = stack.make_learner("seat@example.kr")
    session = stack.portal_session("seat@example.kr")
    response = stack.open_lab(session, "python-basics")
    assert response.status_code == 303
    lab_path = response.headers["Location"]
    assert stack.wait_lab(session, lab_path)["state"] == "running"
    environment = process_env(stack, f"u{user_id}")
    assert environment["CUDA_VISIBLE_DEVICES"] in ("0", "1")
    assert (environment["ACADEMY_GPU_MEMORY_MB"], environment["ACADEMY_GPU_SHARE_ENFORCED"]) == ("4096", "soft")
    assert "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT" not in environment  # no MPS configured for this hub
    assert _lab_rows(stack, user_id)[-1].gpu_memory_mb == 4096
    token = stack.csrf(session, lab_path)
    session.post(f"{stack.portal_url}{lab_path}/stop", data={"csrf_token": token}, timeout=60)
    assert _lab_rows(stack, user_id)[-1].state.value == "stopped"
