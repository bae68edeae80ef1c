"""The ``start_lab`` job with a recording fake hub: the poll reads only the row, the job is safe to retry,
a hub that is down fails the lab with a message, the sweep re-sends a lost start."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask

from tests.labs.fakehub import LABS, FakeHub, course_with_cohorts, enrolled_learner, lab_row, launch_lab


@pytest.mark.app_config(**LABS, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)
def test_the_status_poll_reads_the_row_and_never_calls_the_hub(app: Flask, make_user: Any, make_track: Any,
                                                                make_cohort: Any, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    import requests

    from academy.extensions import db
    from academy.labs.models import LabSession, LabState
    from academy.users.models import User
    from tests.conftest import login

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    learner = enrolled_learner(app, make_user, cohort)
    with app.app_context():
        email = db.session.get(User, learner).email
    lab_id = lab_row(app, learner, course_id, progress=40, progress_step="spawning",
                      requested_at=dt.datetime.now(dt.UTC))
    client = app.test_client()
    assert login(client, email).status_code == 302
    calls: list[str] = []

    def no_hub(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(f"{method} {url}")
        raise AssertionError(f"the status poll called the hub: {method} {url}")

    monkeypatch.setattr(requests.Session, "request", no_hub)
    body = client.get(f"/labs/{lab_id}/status").get_json()
    assert (body["state"], body["progress"], body["finished"]) == ("starting", 40, False)
    assert body["message"] in ("작업 공간을 준비하는 중", "Preparing your workspace")  # from the job's step
    with app.app_context():
        lab = db.session.get(LabSession, lab_id)
        lab.state, lab.notebook_path, lab.progress = LabState.running, "python-data/01/a b.ipynb", 100
        db.session.commit()
    body = client.get(f"/labs/{lab_id}/status").get_json()
    assert body["finished"] is True and body["url"] == f"http://127.0.0.1:9/user/u{learner}/lab/tree/python-data/01/a%20b.ipynb"
    page = client.get(f"/labs/{lab_id}")
    assert page.status_code == 200
    assert calls == []


@pytest.mark.app_config(**LABS)
def test_the_start_job_is_a_no_op_once_the_lab_is_stopped_and_continues_a_start_already_asked(
        app: Flask, make_user: Any, make_track: Any, make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.launch import run_start, stop_lab
    from academy.labs.models import LabSession, LabState

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    learner = enrolled_learner(app, make_user, cohort)
    hub = FakeHub()
    with app.app_context():
        settings = app.config["ACADEMY_SETTINGS"]
        stopped = lab_row(app, learner, course_id)
        stop_lab(db.session, hub, settings, db.session.get(LabSession, stopped), reason="user",  # type: ignore[arg-type]
                 actor=None)
        db.session.commit()
        hub.calls.clear()
        assert run_start(db.session, hub, settings, stopped) == "stopped"  # type: ignore[arg-type]
        assert run_start(db.session, hub, settings, 10_000) == "gone"  # type: ignore[arg-type]
        assert hub.calls == []
        # A start the hub was already asked for (the first job's worker died): the job follows, never asks again.
        other = enrolled_learner(app, make_user, cohort)
        asked = lab_row(app, other, course_id, requested_at=dt.datetime.now(dt.UTC))
        hub.running[f"u{other}"] = {}
        assert run_start(db.session, hub, settings, asked) == "running"  # type: ignore[arg-type]
        assert run_start(db.session, hub, settings, asked) == "running"  # type: ignore[arg-type]  # delivered twice
        assert [c for c in hub.calls if c[0] == "start"] == []
        lab = db.session.get(LabSession, asked)
        assert (lab.state, lab.progress, lab.notebook_path) == (LabState.running, 100, "")


@pytest.mark.app_config(**{**LABS, "gpu_devices": "0"}, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)
def test_a_hub_down_during_the_start_job_fails_the_lab_with_a_message_and_frees_the_gpu(
        app: Flask, make_user: Any, make_track: Any, make_cohort: Any) -> None:
    from academy.extensions import db
    from academy.labs.hub import client_for
    from academy.labs.launch import run_start
    from academy.labs.models import LabSession, LabState
    from academy.users.models import User
    from tests.conftest import login

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    learner, waiting = enrolled_learner(app, make_user, cohort), enrolled_learner(app, make_user, cohort)
    with app.app_context():
        email = db.session.get(User, learner).email
    client = app.test_client()
    assert login(client, email).status_code == 302
    opened = client.post(f"/labs/open/{course_id}")
    lab_path = opened.headers["Location"]
    lab_id = int(lab_path.rsplit("/", 1)[1])
    waiting_id = lab_row(app, waiting, course_id, profile="gpu", gpus=1, state=LabState.queued)
    with app.app_context():
        settings = app.config["ACADEMY_SETTINGS"]
        # The configured hub (127.0.0.1:9) is not there: the real client, the real job.
        assert run_start(db.session, client_for(settings), settings, lab_id) == "failed"
        row = db.session.get(LabSession, lab_id)
        assert (row.stop_reason, row.device) == ("hub_down", "0") and "cannot be reached" in row.error
        assert db.session.get(LabSession, waiting_id).state == LabState.starting  # the next in line got the GPU
    body = client.get(f"{lab_path}/status").get_json()
    assert body["state"] == "failed" and body["finished"] is True
    assert "연결할 수 없습니다" in body["message"] or "not reachable" in body["message"]
    page = client.get(lab_path).get_data(as_text=True)
    assert "실습 다시 열기" in page or "Open the lab again" in page  # the way to retry


@pytest.mark.app_config(**LABS)
def test_the_sweep_resends_a_start_whose_message_was_lost_then_gives_up(
        app: Flask, make_user: Any, make_track: Any, make_cohort: Any,
        sent_jobs: list[tuple[str, tuple[Any, ...]]]) -> None:
    from academy.extensions import db
    from academy.labs.models import LabSession, LabState
    from academy.labs.usage import MAX_START_SENDS, sweep

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    learner = enrolled_learner(app, make_user, cohort)
    now = dt.datetime.now(dt.UTC)
    lost = lab_row(app, learner, course_id, start_sent_at=now - dt.timedelta(minutes=2), start_attempts=1)
    fresh = lab_row(app, enrolled_learner(app, make_user, cohort), course_id, start_sent_at=now, start_attempts=1)
    hub = FakeHub()
    with app.app_context():
        settings = app.config["ACADEMY_SETTINGS"]
        assert sweep(db.session, hub, settings, now=now).resent_starts == 1  # type: ignore[arg-type]
        db.session.commit()
        assert sent_jobs == [("academy.start_lab", (lost,))]  # sent_jobs once committed; the fresh one is left alone
        lab = db.session.get(LabSession, lost)
        assert (lab.state, lab.start_attempts) == (LabState.starting, 2)
        assert db.session.get(LabSession, fresh).start_attempts == 1
        later = now
        for _ in range(MAX_START_SENDS):
            later += dt.timedelta(minutes=2)
            sweep(db.session, hub, settings, now=later)  # type: ignore[arg-type]
            db.session.commit()
        db.session.refresh(lab)
        assert (lab.state, lab.stop_reason) == (LabState.failed, "start_lost")
        assert len([s for s in sent_jobs if s[1] == (lost,)]) == MAX_START_SENDS - 1


@pytest.mark.app_config(**LABS)
def test_a_running_lab_reopened_on_an_assignment_gets_its_notebooks_from_the_job_or_the_sweep(
        app: Flask, make_user: Any, make_track: Any, make_cohort: Any,
        sent_jobs: list[tuple[str, tuple[Any, ...]]]) -> None:
    from academy.catalog.models import Course
    from academy.extensions import db
    from academy.labs.launch import launch, run_start
    from academy.labs.models import LabSession, LabState
    from academy.labs.usage import MAX_START_SENDS, sweep
    from academy.users.models import User

    course_id, (cohort, _other) = course_with_cohorts(app, make_track, make_cohort)
    learner = enrolled_learner(app, make_user, cohort)
    hub = FakeHub()
    lab_id, state, _device = launch_lab(app, hub, learner, course_id, profile="cpu")
    assert state == "running" and sent_jobs == [("academy.start_lab", (lab_id,))]
    with app.app_context():
        settings = app.config["ACADEMY_SETTINGS"]
        again = launch(db.session, hub, settings, user=db.session.get(User, learner),  # type: ignore[arg-type]
                       course=db.session.get(Course, course_id), assignment=None, profile_name="cpu")
        db.session.commit()
        assert (again.id, again.state, again.notebook_path) == (lab_id, LabState.running, None)  # reused
        assert sent_jobs == [("academy.start_lab", (lab_id,))] * 2  # the job again, to copy the notebooks
        assert run_start(db.session, hub, settings, lab_id) == "running"  # type: ignore[arg-type]
        assert [c for c in hub.calls if c[0] == "start"] == [("start", f"u{learner}")]  # one server
        lab = db.session.get(LabSession, lab_id)
        assert lab.notebook_path == ""  # no assignment: the lab's home
        # Reopened, and that job's message is lost: the sweep re-sends it, then opens the home.
        lab.notebook_path, lab.start_attempts = None, 1
        lab.start_sent_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        db.session.commit()
        later = dt.datetime.now(dt.UTC)
        for _ in range(MAX_START_SENDS):
            sweep(db.session, hub, settings, now=later)  # type: ignore[arg-type]
            db.session.commit()
            later += dt.timedelta(minutes=1)
        db.session.refresh(lab)
        assert (lab.state, lab.notebook_path) == (LabState.running, "")
        assert len([s for s in sent_jobs if s[1] == (lab_id,)]) == 2 + MAX_START_SENDS - 1
        assert run_start(db.session, hub, settings, lab_id) == "running"  # type: ignore[arg-type]  # late: no-op
