"""The grading worker and GPU seats (issue 17, part 3): a GPU course's job grades with a seat that is counted while
it runs, renewed by the heartbeat and given back however grading ends; without one it grades on the CPU and the
submission's problems say why.  The grading itself is replaced by a stand-in that records what it was given (the
sandbox's side is tested in ``tests/engine/test_gpu_grading.py``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from academy.catalog.models import Assignment
from academy.extensions import db
from academy.grading.models import GradingJob, Submission
from academy.labs.models import GpuGradingHold
from tests.engine.test_gpu_grading import stand_in_devices
from tests.grading.test_submissions import NAME, SOURCE, upload
from tests.labs.fakehub import LABS
from tests.labs.test_seats import H200, configure

GRADED = {"status": "graded", "score": 1.0, "max_score": 12.0, "notebooks": [], "problems": [], "flags": []}


def gpu_course(app: Flask, tmp_path: Path, course: dict[str, Any], devices: str,
               monkeypatch: pytest.MonkeyPatch) -> None:
    """The pandas assignment's course graded with a GPU, on ``devices`` with stand-in device files."""
    settings = configure(app, tmp_path, devices)
    settings.gpu_device_root = str(stand_in_devices(tmp_path / "dev", ("nvidia0", "nvidia1", "nvidiactl",
                                                                       "nvidia-uvm")))
    monkeypatch.setattr("academy.grading.gpu.gpu_refusal", lambda policy=None: None)  # a memory cgroup here
    with app.app_context():
        db.session.get(Assignment, course["assignment_id"]).course.grading_profile = "gpu"
        db.session.commit()


def submit(app: Flask, client: FlaskClient, course: dict[str, Any]) -> int:
    assert upload(client, course["assignment_id"], {NAME: SOURCE.read_bytes()}).status_code in (302, 303)
    with app.app_context():
        return db.session.scalar(select(GradingJob.id).order_by(GradingJob.id.desc()))


def holds() -> list[tuple[str, int, Any]]:
    """The GPU seats held now, as another transaction sees them."""
    db.session.commit()
    return [(h.device, h.grading_job_id, h.expires_at) for h in db.session.scalars(select(GpuGradingHold))]


@pytest.mark.app_config(**LABS, ACADEMY_JOB_LEASE_SECONDS=2)
def test_a_gpu_job_holds_its_seat_while_it_grades_and_gives_it_back(
        app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from academy.grading.worker import run_job

    gpu_course(app, tmp_path, course, f"0:NVIDIA H200:{H200},1:NVIDIA H200:{H200}", monkeypatch)
    job_id = submit(app, client, course)
    seen: dict[str, Any] = {}

    def grade(submission: Submission, policy: Any = None) -> tuple[dict, None, dict]:
        seen["policy"], seen["before"] = policy, holds()
        time.sleep(1.5)  # the heartbeat beats every 2/3 s and moves the seat on with the lease
        seen["after"] = holds()
        return dict(GRADED), None, {}

    monkeypatch.setattr("academy.grading.worker._grade", grade)
    with app.app_context():
        assert run_job(job_id) == "done"
        grant = seen["policy"].gpu
        assert (grant.device, grant.visible) == ("0", "0")
        assert [src.rsplit("/", 1)[-1] for src, _dest in grant.nodes] == ["nvidia0", "nvidiactl", "nvidia-uvm"]
        assert [h[:2] for h in seen["before"]] == [("0", job_id)], "counted as a seat while it grades"
        assert seen["after"][0][2] > seen["before"][0][2], "renewed by the heartbeat"
        assert holds() == [], "given back"
        assert db.session.get(GradingJob, job_id).submission.problems == []


@pytest.mark.app_config(**LABS)
def test_a_gpu_job_without_a_gpu_grades_on_the_cpu_and_says_so(
        app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from academy.grading.worker import run_job

    gpu_course(app, tmp_path, course, "none", monkeypatch)
    job_id = submit(app, client, course)
    seen: dict[str, Any] = {}

    def grade(submission: Submission, policy: Any = None) -> tuple[dict, None, dict]:
        seen["policy"] = policy
        return {**GRADED, "problems": ["production_log: not submitted (0 points)"]}, None, {}

    monkeypatch.setattr("academy.grading.worker._grade", grade)
    with app.app_context():
        assert run_job(job_id) == "done"
        assert seen["policy"] is None, "the usual CPU sandbox"
        assert db.session.get(GradingJob, job_id).submission.problems == [
            "graded on the CPU, not a GPU: no GPU on this grader", "production_log: not submitted (0 points)"]


@pytest.mark.app_config(**LABS)
def test_a_seat_is_given_back_when_grading_fails(
        app: Flask, client: FlaskClient, course: dict[str, Any], learner: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from academy.grading.worker import run_job

    gpu_course(app, tmp_path, course, f"0:NVIDIA H200:{H200}", monkeypatch)
    job_id = submit(app, client, course)
    seen: dict[str, Any] = {}

    def grade(submission: Submission, policy: Any = None) -> tuple[dict, None, dict]:
        seen["holds"] = holds()
        raise RuntimeError("nbgrader broke")

    monkeypatch.setattr("academy.grading.worker._grade", grade)
    with app.app_context():
        assert run_job(job_id) == "queued"  # tried again later
        assert len(seen["holds"]) == 1 and holds() == []
