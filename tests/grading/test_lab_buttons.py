"""The assignment page's lab buttons: a GPU course offers the CPU beside its lab, as its refusals promise."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from academy.catalog.models import Assignment
from academy.extensions import db
from academy.labs.models import LabSession
from tests.conftest import csrf_token
from tests.labs.fakehub import LABS

CPU_BUTTON = "CPU로 열기"


def _set_profile(app: Flask, assignment_id: int, profile: str) -> None:
    with app.app_context():
        db.session.get(Assignment, assignment_id).course.lab_profile = profile
        db.session.commit()


@pytest.mark.app_config(**{**LABS, "gpu_devices": "0:NVIDIA T4 (small):2048"})
def test_a_gpu_course_offers_the_cpu_beside_its_lab(app: Flask, client: FlaskClient, course: dict[str, Any],
                                                    learner: int) -> None:
    page = f"/assignments/{course['assignment_id']}"
    assert CPU_BUTTON not in client.get(page).get_data(as_text=True)  # a CPU course: one button
    _set_profile(app, course["assignment_id"], "gpu-shared")
    assert CPU_BUTTON in client.get(page).get_data(as_text=True)

    # A seat of 4,096 MiB fits on no device here (2,048 MiB): refused, nothing queued, the CPU offered.
    data = {"csrf_token": csrf_token(client, page), "assignment_id": course["assignment_id"]}
    refused = client.post(f"/labs/open/{db_course(app, course)}", data=data, follow_redirects=True)
    text = refused.get_data(as_text=True)
    assert "CPU 실습 환경을 열 수 있습니다" in text and CPU_BUTTON in text
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(LabSession.id))) == 0
    opened = client.post(f"/labs/open/{db_course(app, course)}", data={**data, "profile": "cpu"})
    assert opened.status_code == 303 and "/labs/" in opened.headers["Location"]
    with app.app_context():
        lab = db.session.scalar(db.select(LabSession))
        assert (lab.profile, lab.gpus, lab.device) == ("cpu", 0, None)


def db_course(app: Flask, course: dict[str, Any]) -> int:
    with app.app_context():
        return db.session.get(Assignment, course["assignment_id"]).course_id


@pytest.mark.app_config(**{**LABS, "gpu_devices": "0:NVIDIA H100:81559"})
def test_a_used_up_cohort_budget_refuses_the_gpu_and_offers_the_cpu(app: Flask, client: FlaskClient,
                                                                    course: dict[str, Any], learner: int) -> None:
    import datetime as dt

    from academy.enrollment.models import Cohort

    _set_profile(app, course["assignment_id"], "gpu")
    page = f"/assignments/{course['assignment_id']}"
    assert "data-gpu-budget-out" not in client.get(page).get_data(as_text=True)
    now = dt.datetime.now(dt.UTC)
    with app.app_context():
        cohort = db.session.get(Cohort, course["cohort_id"])
        cohort.gpu_budget_hours = 1.0
        name = cohort.name
        db.session.add(LabSession(user_id=learner, course_id=db_course(app, course), cohort_id=cohort.id,
                                  hub_user=f"u{learner}", profile="gpu", gpus=1, state="stopped",
                                  started_at=now - dt.timedelta(hours=2), stopped_at=now - dt.timedelta(hours=1)))
        db.session.commit()
    text = client.get(page).get_data(as_text=True)
    assert "data-gpu-budget-out" in text and name in text and CPU_BUTTON in text

    data = {"csrf_token": csrf_token(client, page), "assignment_id": course["assignment_id"]}
    refused = client.post(f"/labs/open/{db_course(app, course)}", data=data, follow_redirects=True)
    text = refused.get_data(as_text=True)
    assert 'alert-danger' in text and name in text and CPU_BUTTON in text
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(LabSession.id))) == 1  # nothing new recorded
    opened = client.post(f"/labs/open/{db_course(app, course)}", data={**data, "profile": "cpu"})
    assert opened.status_code == 303 and "/labs/" in opened.headers["Location"]  # the CPU is never refused
