"""Labs logic on both databases, with the hub replaced by a recording fake (its real behaviour is
covered by test_integration.py): profiles, inventory, the fair queue, quotas, events."""

from __future__ import annotations

import datetime as dt
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from academy.errors import AcademyError
from academy.labs import gpu
from academy.labs.profiles import load_profiles
from tests.labs.fakehub import LABS, FakeHub, course_with_cohorts, enrolled_learner, launch_lab
from tests.support import ROOT

# -- profiles and inventory ---------------------------------------------------------------------------------------

def test_shipped_profiles_load_and_cpu_is_the_fallback() -> None:
    profiles = load_profiles(ROOT / "hub_config" / "profiles.toml")
    assert {"cpu", "gpu", "gpu-shared"} <= set(profiles)
    assert not profiles["cpu"].uses_gpu and profiles["gpu"].gpus == 1 and not profiles["gpu"].shared
    assert profiles["gpu-shared"].shared and profiles["gpu-shared"].per_device > 1


@pytest.mark.parametrize("text, complaint", [
    ("[profiles.gpu]\ngpus = 1\n", "'cpu' is required"),
    ("[profiles.cpu]\ngpus = 0\n[profiles.x]\ngpus = 2\nshared = true\n", "shared profile has gpus = 1"),
    ("[profiles.cpu\n", "cannot read"),
])
def test_bad_profiles_file_is_refused_with_the_reason(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(text)
    with pytest.raises(AcademyError, match=complaint):
        load_profiles(path)


def test_configured_inventory_parses_and_refuses_nonsense() -> None:
    assert [d.index for d in gpu.parse_configured("0,1")] == ["0", "1"]
    named = gpu.parse_configured("0:NVIDIA A100 80GB, 3:NVIDIA L40S")
    assert [(d.index, d.name, d.source) for d in named] == [("0", "NVIDIA A100 80GB", "configured"),
                                                            ("3", "NVIDIA L40S", "configured")]
    assert gpu.parse_configured("none") == []
    for bad in ("0,0", "0;1", ",", "../1"):
        with pytest.raises(ValueError):
            gpu.parse_configured(bad)


def test_nvml_absent_or_broken_degrades_to_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    assert gpu.inventory(None) == []
    broken = types.SimpleNamespace(nvmlInit=lambda: (_ for _ in ()).throw(RuntimeError("Driver Not Loaded")),
                                   nvmlShutdown=lambda: None)
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    assert gpu.inventory(None) == []


def test_nvml_devices_are_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i, nvmlDeviceGetName=lambda h: b"NVIDIA H100",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=80 * 1024**3),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    devices = gpu.inventory(None)
    assert [(d.index, d.name, d.memory_mb, d.source) for d in devices] == [
        ("0", "NVIDIA H100", 81920, "nvml"), ("1", "NVIDIA H100", 81920, "nvml")]
    assert gpu.inventory("none") == []  # the configured list wins over NVML


# -- the fair queue, devices, quotas ------------------------------------------------------------------------------

@pytest.mark.app_config(**LABS)
def test_two_devices_then_a_fair_line_where_cohorts_take_turns(app: Flask, make_user: Any, make_track: Any,
                                                              make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.launch import grant, run_start, stop_lab
    from academy.labs.models import LabSession
    from academy.labs.queue import place_in_line, waiting_line

    course_id, (cohort_a, cohort_b) = course_with_cohorts(app, make_track, make_cohort)
    hub = FakeHub()
    a = [enrolled_learner(app, make_user, cohort_a) for _ in range(4)]
    b = enrolled_learner(app, make_user, cohort_b)
    results = [launch_lab(app, hub, user, course_id) for user in (*a, b)]
    assert [r[1] for r in results] == ["running", "running", "queued", "queued", "queued"]
    assert {results[0][2], results[1][2]} == {"0", "1"}
    with app.app_context():
        settings = app.config["ACADEMY_SETTINGS"]
        line = [row.user_id for row in waiting_line(db.session)]
        # cohort B's first waiter goes before cohort A's second waiter, although B arrived last
        assert line == [a[2], b, a[3]]
        lab_b = db.session.get(LabSession, results[4][0])
        assert place_in_line(db.session, lab_b) == 2
        # Freeing a device serves the head of the line: it is starting, and its job starts it.
        first = db.session.get(LabSession, results[0][0])
        stop_lab(db.session, hub, settings, first, reason="user", actor=None)  # type: ignore[arg-type]
        db.session.commit()
        served = db.session.get(LabSession, results[2][0])
        assert served.state.value == "starting" and served.device == first.device
        assert run_start(db.session, hub, settings, served.id) == "running"  # type: ignore[arg-type]
        # The grant sent to the hub names that device, signed for that person and session.
        options = hub.running[served.hub_user]
        assert options["device"] == served.device and options["profile"] == "gpu"
        assert options["grant"] == grant(settings, served.hub_user, "gpu", served.device, served.id)


@pytest.mark.app_config(**{**LABS, "gpu_devices": "0"})
def test_shared_profile_packs_one_device_and_never_with_an_exclusive_holder(app: Flask, make_user: Any,
                                                                          make_track: Any, make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.models import LabSession, LabState
    from academy.labs.profiles import configured_profiles
    from academy.labs.queue import free_device

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    with app.app_context():
        settings = app.config["ACADEMY_SETTINGS"]
        profiles = configured_profiles(settings)
        users = [enrolled_learner(app, make_user, cohort) for _ in range(6)]
        for user_id in users[:4]:
            db.session.add(LabSession(user_id=user_id, course_id=course_id, hub_user=f"u{user_id}",
                                      profile="gpu-shared", gpus=1, device="0", state=LabState.running))
        db.session.commit()
        assert free_device(db.session, settings, profiles["gpu-shared"]) is None  # 4 per device
        assert free_device(db.session, settings, profiles["gpu"]) is None
        db.session.execute(LabSession.__table__.delete())
        db.session.add(LabSession(user_id=users[4], course_id=course_id, hub_user="x", profile="gpu", gpus=1,
                                  device="0", state=LabState.running))
        db.session.commit()
        assert free_device(db.session, settings, profiles["gpu-shared"]) is None


@pytest.mark.app_config(**LABS)
def test_refusals_leave_no_trace_and_never_reach_the_hub(app: Flask, make_user: Any, make_track: Any,
                                                         make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs import LabRefused
    from academy.labs.models import LabSession, LabState

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    hub = FakeHub()
    stranger = make_user("learner")
    with pytest.raises(LabRefused):
        launch_lab(app, hub, stranger, course_id)
    learner = enrolled_learner(app, make_user, cohort)
    with pytest.raises(LabRefused, match="사용할 수 없습니다") as refused:  # a key is never repeated back
        launch_lab(app, hub, learner, course_id, profile="gpu-max")
    assert "gpu-max" not in str(refused.value)
    with app.app_context():
        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
        db.session.add(LabSession(user_id=learner, course_id=course_id, hub_user=f"u{learner}", profile="gpu",
                                  gpus=1, device="1", state=LabState.stopped, started_at=start,
                                  stopped_at=start + dt.timedelta(minutes=61)))
        db.session.commit()
    with pytest.raises(LabRefused):
        launch_lab(app, hub, learner, course_id)
    assert hub.calls == []
    with app.app_context():
        assert db.session.scalar(select(func.count(LabSession.id))) == 1
    # CPU stays open to the learner whose GPU hours are used up.
    assert launch_lab(app, hub, learner, course_id, profile="cpu")[1] == "running"


@pytest.mark.app_config(**{**LABS, "lab_quota_warning_minutes": 10})
def test_sweep_warns_before_the_quota_ends_then_stops(app: Flask, make_user: Any, make_track: Any,
                                                      make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.models import LabSession, LabState
    from academy.labs.reports import gpu_usage_by_company, gpu_usage_by_course
    from academy.labs.usage import sweep
    from academy.mail.models import OutboxMessage

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    learner = enrolled_learner(app, make_user, cohort)
    hub = FakeHub()
    hub.running[f"u{learner}"] = {}
    now = dt.datetime.now(dt.UTC)
    with app.app_context():
        settings = app.config["ACADEMY_SETTINGS"]
        lab = LabSession(user_id=learner, course_id=course_id, hub_user=f"u{learner}", profile="gpu", gpus=1,
                         device="0", state=LabState.running, started_at=now - dt.timedelta(minutes=55))
        db.session.add(lab)
        db.session.commit()
        report = sweep(db.session, hub, settings, now=now)  # type: ignore[arg-type]
        db.session.commit()
        assert (report.warned, report.stopped_quota) == (1, 0)
        assert db.session.scalar(select(func.count(OutboxMessage.id))) == 1
        assert sweep(db.session, hub, settings, now=now).warned == 0  # type: ignore[arg-type]  # warned once
        later = sweep(db.session, hub, settings, now=now + dt.timedelta(minutes=6))  # type: ignore[arg-type]
        db.session.commit()
        assert later.stopped_quota == 1
        db.session.refresh(lab)
        assert lab.state == LabState.stopped and lab.stop_reason == "quota"
        assert ("stop", f"u{learner}") in hub.calls
        # The admins' reports count that hour for the course and for the learner's company.
        (course_usage,) = gpu_usage_by_course(db.session)
        assert course_usage.course.id == course_id and 0.99 < course_usage.gpu_hours < 1.02
        (company_usage,) = gpu_usage_by_company(db.session)
        assert company_usage.learners == 1 and 0.99 < company_usage.gpu_hours < 1.02


@pytest.mark.app_config(**LABS)
def test_hub_events_need_the_hub_token_and_close_the_session(app: Flask, make_user: Any, make_track: Any,
                                                             make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.models import LabSession, LabState

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    learner = enrolled_learner(app, make_user, cohort)
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    with app.app_context():
        lab = LabSession(user_id=learner, course_id=course_id, hub_user=f"u{learner}", profile="gpu", gpus=1,
                         device="0", state=LabState.running, started_at=started)
        db.session.add(lab)
        db.session.commit()
        lab_id = lab.id
    client = app.test_client()
    event = {"event": "stop", "user": f"u{learner}", "server": "", "time": dt.datetime.now(dt.UTC).isoformat()}
    assert client.post("/labs/hub-events", json=event).status_code == 401
    assert client.post("/labs/hub-events", json=event, headers={"Authorization": "token wrong"}).status_code == 403
    assert client.post("/labs/hub-events", data="[", headers={"Authorization": "token " + "h" * 40,
                                                              "Content-Type": "application/json"}).status_code == 400
    response = client.post("/labs/hub-events", json=event, headers={"Authorization": "token " + "h" * 40})
    assert response.status_code == 200 and response.get_json() == {"recorded": True}
    with app.app_context():
        row = db.session.get(LabSession, lab_id)
        assert row.state == LabState.stopped and row.stop_reason == "hub"
        assert 29 * 60 < row.gpu_seconds() < 31 * 60


@pytest.mark.parametrize("name", ["..", "../x.ipynb", "a/b.ipynb", ".secret.ipynb", "a\\b.ipynb", ""])
def test_notebook_paths_cannot_leave_the_assignment_folder(name: str) -> None:
    from academy.labs import LabRefused
    from academy.labs.notebooks import workspace_path

    assignment = types.SimpleNamespace(slug="01-intro", course=types.SimpleNamespace(slug="python-data"))
    with pytest.raises(LabRefused):
        workspace_path(assignment, name)  # type: ignore[arg-type]
    assert workspace_path(assignment, "intro.ipynb") == "python-data/01-intro/intro.ipynb"  # type: ignore[arg-type]


@pytest.mark.app_config(**{**LABS, "gpu_devices": "none"})
def test_without_any_gpu_a_gpu_course_starts_on_the_cpu(app: Flask, make_user: Any, make_track: Any,
                                                        make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.models import LabSession

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    hub = FakeHub()
    learner = enrolled_learner(app, make_user, cohort)
    lab_id, state, device = launch_lab(app, hub, learner, course_id)
    assert (state, device) == ("running", None)
    assert hub.running[f"u{learner}"]["device"] == ""  # the hub sets CUDA_VISIBLE_DEVICES=""
    with app.app_context():
        assert db.session.get(LabSession, lab_id).gpus == 0  # not metered as GPU time


@pytest.mark.app_config(**{**LABS, "gpu_devices": "cluster"})
def test_on_a_cluster_the_cluster_picks_the_gpu(app: Flask, make_user: Any, make_track: Any,
                                                make_cohort: Any) -> None:
    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    hub = FakeHub()
    learners = [enrolled_learner(app, make_user, cohort) for _ in range(3)]
    assert [launch_lab(app, hub, user, course_id)[1] for user in learners] == ["running"] * 3
    assert {hub.running[f"u{user}"]["device"] for user in learners} == {""}


@pytest.mark.app_config(**LABS)
def test_a_late_hub_event_keeps_who_stopped_the_lab_and_the_sweep_stops_orphans(
        app: Flask, make_user: Any, make_track: Any, make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.launch import stop_lab
    from academy.labs.models import LabSession, LabState
    from academy.labs.usage import record_hub_event, sweep

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    learner = enrolled_learner(app, make_user, cohort)
    hub = FakeHub()
    lab_id, state, _device = launch_lab(app, hub, learner, course_id)
    assert state == "running"
    with app.app_context():
        settings = app.config["ACADEMY_SETTINGS"]
        lab = db.session.get(LabSession, lab_id)
        lab.started_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        db.session.commit()
        stop_lab(db.session, hub, settings, lab, reason="admin", actor=None)  # type: ignore[arg-type]
        db.session.commit()
        event = {"event": "stop", "user": lab.hub_user, "time": dt.datetime.now(dt.UTC).isoformat()}
        assert record_hub_event(db.session, settings, event) is False
        db.session.commit()
        db.session.refresh(lab)
        assert (lab.state, lab.stop_reason) == (LabState.stopped, "admin")
        # A server the hub still runs for nobody's open session is stopped by the sweep.
        hub.running["u999"] = {}
        report = sweep(db.session, hub, settings)  # type: ignore[arg-type]
        assert report.stopped_orphans == 1 and "u999" not in hub.running


@pytest.mark.app_config(**LABS, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)
def test_instructors_see_and_stop_only_their_own_learners_labs(app: Flask, make_user: Any, make_track: Any,
                                                               make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.models import LabSession, LabState
    from tests.conftest import login

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    learner = enrolled_learner(app, make_user, cohort)
    with app.app_context():
        from academy.users.models import User

        named = db.session.get(User, learner)
        named.name = "실습중학습자"
        lab = LabSession(user_id=learner, course_id=course_id, hub_user=f"u{learner}", profile="gpu", gpus=1,
                         device="0", state=LabState.running, started_at=dt.datetime.now(dt.UTC))
        db.session.add(lab)
        db.session.commit()
        lab_id = lab.id
    make_user("instructor", email="teacher@example.kr")
    make_user("instructor", email="someone-else@example.kr")
    other = app.test_client()
    assert login(other, "someone-else@example.kr").status_code == 302
    assert "실습중학습자" not in other.get("/labs/manage").get_data(as_text=True)
    assert other.post(f"/labs/{lab_id}/stop").status_code == 404
    teacher = app.test_client()
    assert login(teacher, "teacher@example.kr").status_code == 302
    seen = teacher.get("/labs/manage").get_data(as_text=True)
    assert "실습중학습자" in seen
    assert "<td>장치 0</td>" in seen  # instructors get no GPU table: the device by its number, in words
    assert teacher.post(f"/labs/{lab_id}/stop").status_code == 303  # the hub is unreachable here: still closed
    with app.app_context():
        row = db.session.get(LabSession, lab_id)
        assert (row.state, row.stop_reason) == (LabState.stopped, "instructor")

