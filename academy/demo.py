"""``academy demo``: the whole platform on 127.0.0.1 with sample content and demo accounts."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from flask import Flask
from sqlalchemy import select

from academy.db import utcnow
from academy.processes import free_port, stop_process

if TYPE_CHECKING:
    from academy.labs.hubprocess import HubProcess

DEMO_ACCOUNTS = (
    ("learner@demo.academy.kr", "learner", "김학습", "study-gumi-2026"),
    ("instructor@demo.academy.kr", "instructor", "이강사", "teach-pohang-2026"),
    ("admin@demo.academy.kr", "admin", "박관리", "manage-andong-2026"),
)
DEMO_COMPANY = ("새마을정밀(주)", "124-81-00998")


def seed_demo(app: Flask) -> list[tuple[str, str, str]]:
    """Create demo accounts and open cohorts (idempotent); returns (email, role, password)."""
    from academy.catalog.models import Track
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import create_cohort
    from academy.extensions import db
    from academy.users.models import Role
    from academy.users.services import create_user, find_user_by_email, get_or_create_company

    with app.app_context():
        company = get_or_create_company(db.session, *DEMO_COMPANY)
        for email, role, name, password in DEMO_ACCOUNTS:
            if find_user_by_email(db.session, email) is None:
                user = create_user(db.session, email, password, Role(role), name=name)
                user.company = company
                user.region = "gumi"
                user.industry = "auto_parts"
                user.job_role = "production" if role == "learner" else "rnd"
                user.consent_at = utcnow()
        today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        for track in db.session.scalars(select(Track).where(Track.active.is_(True))):
            if db.session.scalar(select(Cohort.id).where(Cohort.track_id == track.id)) is None:
                create_cohort(db.session, track, name="2026 겨울 1기", starts_at=today,
                              ends_at=today + dt.timedelta(days=56), capacity=30, actor=None)
                create_cohort(db.session, track, name="2027 봄 (승인제)", starts_at=today + dt.timedelta(days=60),
                              ends_at=today + dt.timedelta(days=116), capacity=20, requires_approval=True,
                              actor=None)
        db.session.flush()
        # The demo learner is in every track's open cohort, so "Open lab" and submitting work at once.
        from academy.enrollment.models import Enrollment
        from academy.enrollment.services import request_enrollment

        learner = find_user_by_email(db.session, DEMO_ACCOUNTS[0][0])
        for cohort in db.session.scalars(select(Cohort).where(Cohort.requires_approval.is_(False))):
            if db.session.scalar(select(Enrollment.id).where(Enrollment.user_id == learner.id,
                                                            Enrollment.cohort_id == cohort.id)) is None:
                request_enrollment(db.session, cohort, learner)
        db.session.commit()
    return [(email, role, password) for email, role, _name, password in DEMO_ACCOUNTS]


def start_lab_hub(app: Flask, host: str, preferred_port: int = 8000) -> HubProcess | None:
    """Start the local JupyterHub for the demo unless ``ACADEMY_HUB_URL`` names one already running.

    Returns the hub process (None when an external hub is used).  Without configurable-http-proxy
    or the learners' environment, the demo runs without labs and says so.
    """
    from academy.labs.hubprocess import HubStartError, start_hub

    settings = app.config["ACADEMY_SETTINGS"]
    if settings.hub_url:
        return None
    root = Path(__file__).resolve().parent.parent
    if not (root / "node_modules" / ".bin" / "configurable-http-proxy").exists():
        click.echo("  labs: off (configurable-http-proxy missing: run `make proxy`)")
        return None
    hub_url = f"http://{host}:{free_port(host, preferred_port)}"
    try:
        hub = start_hub(data_dir=settings.data_dir, hub_url=hub_url, portal_url=settings.base_url,
                        api_token=settings.resolved_hub_secret("api_token"),
                        client_secret=settings.resolved_hub_secret("client_secret"))
    except HubStartError as exc:
        click.echo(f"  labs: off (JupyterHub did not start: {str(exc).splitlines()[0]})")
        return None
    settings.hub_url = hub_url
    return hub


def start_worker(app: Flask) -> subprocess.Popen[bytes]:
    """Start `academy worker` for the demo's data directory, in its own process group."""
    settings = app.config["ACADEMY_SETTINGS"]
    env = dict(os.environ)
    env["ACADEMY_DATA_DIR"] = str(settings.data_dir)
    env["ACADEMY_DATABASE_URL"] = settings.resolved_database_url()
    env["ACADEMY_SECRET_KEY"] = app.config["SECRET_KEY"]
    env["ACADEMY_COURSES_DIR"] = str(settings.courses_dir)
    env["ACADEMY_BASE_URL"] = settings.base_url  # links in the mail the worker sends point at this portal
    if settings.hub_url:  # the worker's periodic lab sweep talks to the same hub
        env["ACADEMY_HUB_URL"] = settings.hub_url
    # nbgrader runs `alembic` by name: make this environment's scripts findable.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.Popen([sys.executable, "-m", "academy.cli", "worker", "--loglevel", "warning"],
                            env=env, start_new_session=True)


def run_demo(app: Flask, *, host: str = "127.0.0.1", port: int = 5000) -> None:
    """Initialise the database, seed demo data, start a grading worker and serve until Ctrl-C."""
    from werkzeug.serving import run_simple

    from academy.bootstrap import run_init

    with app.app_context():
        summary = run_init()
    accounts = seed_demo(app)
    port = free_port(host, port)
    url = f"http://{host}:{port}/"
    # The OpenID Connect issuer and mailed links: the address served here, unless ACADEMY_BASE_URL names
    # the public one (a proxy in front of the demo).
    if not os.environ.get("ACADEMY_BASE_URL"):
        app.config["ACADEMY_SETTINGS"].base_url = url.rstrip("/")
    click.echo("")
    click.echo("AI 새마을 아카데미 demo / AI Saemaul Academy demo")
    click.echo(f"  courses: {summary}")
    click.echo(f"  portal:  {url}")
    click.echo("  accounts (email / password):")
    for email, role, password in accounts:
        click.echo(f"    {role:<10} {email:<30} {password}")
    click.echo("  grading: one worker per core, embedded queue (academy worker)")
    hub = start_lab_hub(app, host)
    if hub is not None:
        click.echo(f"  labs:    JupyterHub {app.config['ACADEMY_SETTINGS'].hub_url}/ (sign-in through the portal)")
    click.echo("  Ctrl-C stops everything.")
    click.echo("")
    worker = start_worker(app)
    # SIGTERM (a service manager, `timeout`) stops everything too, like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_args: sys.exit(0))
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
    finally:
        stop_process(worker)
        if hub is not None:
            hub.stop()
