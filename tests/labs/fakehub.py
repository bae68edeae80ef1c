"""The labs tests' fake hub and the steps they share: a GPU course with cohorts, a learner, a launch, a lab row.

``FakeHub`` records what the portal asks of the hub (its real behaviour is covered by
``test_integration.py`` against a real JupyterHub).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import select

LABS = {"hub_url": "http://127.0.0.1:9", "hub_api_token": "h" * 40, "hub_client_secret": "c" * 40,
        "gpu_devices": "0,1"}


class FakeHub:
    """Records what the portal asks of the hub; servers are ready as soon as they are asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.running: dict[str, dict[str, Any]] = {}

    def ensure_user(self, name: str, **_: Any) -> dict[str, Any]:
        self.calls.append(("ensure_user", name))
        return {"name": name}

    def start(self, name: str, options: dict[str, Any]) -> Any:
        from academy.labs.hub import StartResult

        self.calls.append(("start", name))
        self.running[name] = options
        return StartResult.spawning

    def stop(self, name: str) -> None:
        self.calls.append(("stop", name))
        self.running.pop(name, None)

    def server(self, name: str) -> Any:
        from academy.labs.hub import ServerState

        running = name in self.running
        return ServerState(running, running, None, None, None, self.running.get(name, {}), None)

    def progress(self, name: str, **_: Any) -> list[dict[str, Any]]:
        return [{"progress": 40, "message": "Spawning server..."}] if name in self.running else []

    def running_servers(self) -> set[str]:
        return set(self.running)



def course_with_cohorts(app: Flask, make_track: Any, make_cohort: Any, *, cohorts: int = 2) -> tuple[int, list[int]]:
    from academy.catalog.models import Course, Track
    from academy.extensions import db

    track_id = make_track(instructors=("teacher@example.kr",))
    cohort_ids = [make_cohort(capacity=20, track_id=track_id) for _ in range(cohorts)]
    with app.app_context():
        course = db.session.scalar(select(Course).where(Course.track_id == db.session.get(Track, track_id).id))
        course.lab_profile, course.gpu_hour_quota = "gpu", 1.0
        db.session.commit()
        return course.id, cohort_ids


def enrolled_learner(app: Flask, make_user: Any, cohort_id: int) -> Any:
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import request_enrollment
    from academy.extensions import db
    from academy.users.models import User

    user_id = make_user("learner")
    with app.app_context():
        request_enrollment(db.session, db.session.get(Cohort, cohort_id), db.session.get(User, user_id))
        db.session.commit()
    return user_id


def launch_lab(app: Flask, hub: FakeHub, user_id: int, course_id: int, profile: str | None = None) -> Any:
    from academy.catalog.models import Course
    from academy.extensions import db
    from academy.labs.launch import launch, run_start
    from academy.users.models import User

    with app.app_context():
        settings = app.config["ACADEMY_SETTINGS"]
        lab = launch(db.session, hub, settings,  # type: ignore[arg-type]
                     user=db.session.get(User, user_id), course=db.session.get(Course, course_id),
                     assignment=None, profile_name=profile)
        db.session.commit()  # the view's commit queues the start_lab job
        assert f"u{user_id}" not in hub.running  # the click is answered before the hub is asked
        if lab.state.value == "starting":
            run_start(db.session, hub, settings, lab.id)  # type: ignore[arg-type]  # the job
        db.session.refresh(lab)
        return lab.id, lab.state.value, lab.device


def lab_row(app: Flask, user_id: int, course_id: int, **fields: Any) -> int:
    from academy.extensions import db
    from academy.labs.models import LabSession, LabState

    values: dict[str, Any] = {"hub_user": f"u{user_id}", "profile": "cpu", "gpus": 0, "state": LabState.starting,
                              **fields}
    with app.app_context():
        lab = LabSession(user_id=user_id, course_id=course_id, **values)
        db.session.add(lab)
        db.session.commit()
        return lab.id
