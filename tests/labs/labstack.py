"""A real portal (Werkzeug thread), a real job worker (Celery, in a thread) and a real JupyterHub +
configurable-http-proxy on free loopback ports.

Used by the lab integration tests, the browser test and bench/labs.py.  The portal serves over
HTTP because the hub talks to it (OpenID Connect token and userinfo, start/stop events).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support import ROOT

CHP = ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
LAB_SINGLEUSER = ROOT / ".venv-lab" / "bin" / "jupyterhub-singleuser"
PASSWORD = "lab-pass-2026"


def missing_parts() -> str | None:
    """Why a lab stack cannot run here (None when it can)."""
    if not CHP.exists():
        return f"{CHP} is missing (make proxy installs configurable-http-proxy from npm)"
    if not LAB_SINGLEUSER.exists():
        return f"{LAB_SINGLEUSER} is missing (make lab-env builds the learners' environment)"
    return None


@dataclass
class LabStack:
    app: Any
    portal_url: str
    hub_url: str
    api_token: str
    hub: Any
    cohort_id: int
    course_ids: dict[str, int]
    assignment_ids: dict[str, int]
    users: dict[str, int] = field(default_factory=dict)

    def make_learner(self, email: str, *, enroll: bool = True, role: str = "learner") -> int:
        from academy.db import utcnow
        from academy.enrollment.models import Cohort
        from academy.enrollment.services import request_enrollment
        from academy.extensions import db
        from academy.users.models import Role
        from academy.users.services import create_user

        with self.app.app_context():
            user = create_user(db.session, email, PASSWORD, Role(role), name=email.split("@")[0])
            user.consent_at = utcnow()
            if enroll:
                request_enrollment(db.session, db.session.get(Cohort, self.cohort_id), user)
            db.session.commit()
            self.users[email] = user.id
            user_id = user.id
            db.session.remove()
        return user_id

    def portal_session(self, email: str) -> requests.Session:
        """A browser-like session signed in to the portal."""
        session = requests.Session()
        page = session.get(f"{self.portal_url}/login", timeout=10)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, "login page has a CSRF token"
        response = session.post(f"{self.portal_url}/login", data={"csrf_token": token.group(1), "email": email,
                                                                 "password": PASSWORD}, allow_redirects=False,
                                timeout=10)
        assert response.status_code == 302, response.text[:500]
        return session

    def csrf(self, session: requests.Session, path: str) -> str:
        page = session.get(f"{self.portal_url}{path}", timeout=10)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, f"{path} has a CSRF token"
        return token.group(1)

    def open_lab(self, session: requests.Session, course: str, assignment: str | None = None,
                 profile: str | None = None) -> requests.Response:
        path = f"/assignments/{self.assignment_ids[assignment]}" if assignment else "/dashboard"
        data = {"csrf_token": self.csrf(session, path)}
        if assignment:
            data["assignment_id"] = str(self.assignment_ids[assignment])
        if profile:
            data["profile"] = profile
        return session.post(f"{self.portal_url}/labs/open/{self.course_ids[course]}", data=data,
                            allow_redirects=False, timeout=30)

    def wait_lab(self, session: requests.Session, lab_path: str, *, timeout: float = 120,
                 until: tuple[str, ...] = ("running", "failed", "stopped", "cancelled")) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = session.get(f"{self.portal_url}{lab_path}/status", timeout=30).json()
            if body["state"] in until:
                return body
            time.sleep(0.2)
        raise AssertionError(f"lab did not reach {until} in {timeout} s: {body}")

    def hub_api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.hub_url}/hub/api{path}",
                                headers={"Authorization": f"token {self.api_token}"}, timeout=30, **kwargs)

    def contents(self, hub_user: str, path: str, method: str = "GET", **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.hub_url}/user/{hub_user}/api/contents/{path}",
                                headers={"Authorization": f"token {self.api_token}"}, timeout=30, **kwargs)


def _stop_servers(hub_url: str, api_token: str, timeout: float = 30.0) -> None:
    """Stop every learner's server through the hub before the hub itself, so none outlives the test."""
    headers = {"Authorization": f"token {api_token}"}
    try:
        users = requests.get(f"{hub_url}/hub/api/users", headers=headers, timeout=10).json()
        running = [u["name"] for u in users if (u.get("servers") or {}).get("")]
        for name in running:
            requests.delete(f"{hub_url}/hub/api/users/{name}/server", headers=headers, timeout=30)
        deadline = time.monotonic() + timeout
        while running and time.monotonic() < deadline:
            users = requests.get(f"{hub_url}/hub/api/users", headers=headers, timeout=10).json()
            running = [u["name"] for u in users if (u.get("servers") or {}).get("")]
            time.sleep(0.2)
    except (requests.RequestException, ValueError):
        pass  # the hub is gone already: its own shutdown stops the servers it still knows


@contextmanager
def job_worker(app: Any, *, concurrency: int = 4, jobs: tuple[str, ...] = ("academy.start_lab",)) -> Iterator[Any]:
    """A Celery worker in a thread running the portal's ``academy.start_lab`` jobs with ``app`` as its portal
    app, the way ``academy worker`` runs them in production.

    Stopped through its own ``stop()``, not Celery's test helper, whose shutdown sets a process-wide flag
    that would stop every other worker of the process too (a test may run a second stack inside one).
    """
    from celery.contrib.testing.worker import TestWorkController, setup_app_for_worker
    from celery.utils.nodenames import anon_nodename

    from academy.jobs import tasks

    with app.app_context():
        celery = tasks.worker_celery(lambda: app)
    setup_app_for_worker(celery, "WARNING", None)
    # Only ``jobs`` (the lab job by default): a submission from the lab is queued for grading as in production,
    # but grading it here would run nbclient in this process (its tests run a real `academy worker`,
    # tests/web/test_browser.py).  The publish checks grade in a subprocess of their own.
    for name in [n for n in celery.tasks if n.startswith("academy.") and n not in jobs]:
        celery.tasks.unregister(name)
    worker = TestWorkController(app=celery, concurrency=concurrency, hostname=anon_nodename(), pool="threads",
                                loglevel="WARNING", logfile=None, ready_callback=None, without_heartbeat=True,
                                without_mingle=True, without_gossip=True)
    previous, tasks._flask_app = tasks._flask_app, app
    thread = threading.Thread(target=worker.start, name="academy-lab-jobs", daemon=True)
    thread.start()
    try:
        worker.ensure_started()
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=60)
        tasks._flask_app = previous


@contextmanager
def lab_stack(tmp_path: Path, *, gpu_devices: str | None = "0,1", hub_extra_env: dict[str, str] | None = None,
              gpu_course: str | None = "python-data", gpu_quota: float = 2.0,
              jobs: tuple[str, ...] = ("academy.start_lab",)) -> Iterator[LabStack]:
    """Portal + hub. ``gpu_course``: a sample course switched to the ``gpu`` profile for the test; ``jobs``: the
    portal's jobs the stack's worker runs (none: no worker in the stack; the test runs a real `academy worker`)."""
    from werkzeug.serving import make_server

    from academy import create_app
    from academy.bootstrap import run_init
    from academy.catalog.models import Assignment, Course
    from academy.catalog.services import list_tracks
    from academy.db import utcnow
    from academy.enrollment.services import create_cohort
    from academy.extensions import db
    from academy.labs.hubprocess import free_ports, start_hub

    hub_port = free_ports(1)[0]
    hub_url = f"http://127.0.0.1:{hub_port}"
    api_token, client_secret = "t" * 48, "s" * 48
    app = create_app({
        "data_dir": tmp_path, "database_url": f"sqlite:///{tmp_path}/academy.sqlite3", "secret_key": "x" * 40,
        "courses_dir": ROOT / "courses", "RATELIMIT_ENABLED": False, "hub_url": hub_url,
        "hub_api_token": api_token, "hub_client_secret": client_secret, "gpu_devices": gpu_devices,
    })
    with app.app_context():
        run_init(check_solutions=False)  # the solutions: tests/curriculum
        track = list_tracks(db.session)[0]
        start = utcnow().replace(microsecond=0)
        cohort = create_cohort(db.session, track, name="2026년 1기", starts_at=start,
                               ends_at=start + dt.timedelta(days=60), capacity=60, actor=None)
        if gpu_course:
            course = db.session.scalar(db.select(Course).where(Course.slug == gpu_course))
            course.lab_profile, course.gpu_hour_quota = "gpu", gpu_quota
        db.session.commit()
        cohort_id = cohort.id
        course_ids = {c.slug: c.id for c in db.session.scalars(db.select(Course))}
        assignment_ids = {a.slug: a.id for a in db.session.scalars(db.select(Assignment))}
        db.session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    portal_url = f"http://127.0.0.1:{server.server_port}"
    app.config["ACADEMY_SETTINGS"].base_url = portal_url
    thread = threading.Thread(target=server.serve_forever, name="academy-lab-portal", daemon=True)
    thread.start()
    hub = None
    try:
        hub = start_hub(data_dir=tmp_path, hub_url=hub_url, portal_url=portal_url, api_token=api_token,
                        client_secret=client_secret, extra_env=hub_extra_env)
        with job_worker(app, jobs=jobs) if jobs else contextlib.nullcontext():
            yield LabStack(app=app, portal_url=portal_url, hub_url=hub_url, api_token=api_token, hub=hub,
                           cohort_id=cohort_id, course_ids=course_ids, assignment_ids=assignment_ids)
    finally:
        if hub is not None:
            _stop_servers(hub_url, api_token)
            hub.stop()
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with app.app_context():
            db.engine.dispose()


def course_instructor(stack: LabStack) -> tuple[int, requests.Session]:
    """The instructor the sample courses' manifests name (course.toml), signed in to the portal."""
    email = "instructor@demo.academy.kr"
    user_id = stack.users.get(email) or stack.make_learner(email, enroll=False, role="instructor")
    return user_id, stack.portal_session(email)


def process_env(stack: LabStack, hub_user: str) -> dict[str, str]:
    """The environment of a learner's running jupyterhub-singleuser process of ``stack``, read from /proc.  Matched
    by the stack's portal too: stacks in other test processes have hub users of the same names (``u<id>``)."""
    import os

    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"jupyterhub-singleuser" not in cmdline:
            continue
        env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
        if env.get("JUPYTERHUB_USER") == hub_user and env.get("ACADEMY_PORTAL_URL") == stack.portal_url:
            return env
    raise AssertionError(f"no running server process for {hub_user}")
