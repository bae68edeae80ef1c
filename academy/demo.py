"""``academy demo``: the whole platform on 127.0.0.1 with sample content and demo accounts.

How a stop reaches it (``make demo`` runs ``.venv/bin/academy demo`` as make's child, without a shell):

* Ctrl-C and a closed terminal: the terminal sends SIGINT / SIGHUP to its foreground process group, make and
  the demo; make waits for the demo, which stops everything it started (``run_demo``).
* A service manager: SIGTERM to make (GNU make passes SIGTERM on to the demo) or to every process of the
  service (the demo then stops what is left).  ``kill <pid of make>`` is SIGTERM, so it works too.
* ``kill -INT`` / ``kill -HUP`` sent to make alone are not passed on: make waits for the demo, which keeps
  running.  Signal the demo (or make with SIGTERM) instead.
* make killed outright (SIGKILL): the kernel tells the demo (``PR_SET_PDEATHSIG``), which stops.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from flask import Flask
from sqlalchemy import select

from academy.db import utcnow
from academy.processes import become_subreaper, free_port, reap_orphans, stop_all_children, stop_with_parent

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from academy.labs.hubprocess import HubProcess

DEMO_ACCOUNTS = (
    ("learner@demo.academy.kr", "learner", "김학습", "study-gumi-2026"),
    ("instructor@demo.academy.kr", "instructor", "이강사", "teach-pohang-2026"),
    ("admin@demo.academy.kr", "admin", "박관리", "manage-andong-2026"),
)
DEMO_COMPANY = ("새마을정밀(주)", "124-81-00998")
DEMO_OPEN_COHORT = "2026 겨울 1기"
DEMO_APPROVAL_COHORT = "2027 봄 (승인제)"
#: The synthetic academy behind the admin's statistics (``academy synth --learners 300 --seed 1``).
DEMO_SYNTH_LEARNERS = 300
DEMO_SYNTH_SEED = 1


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
                create_cohort(db.session, track, name=DEMO_OPEN_COHORT, starts_at=today,
                              ends_at=today + dt.timedelta(days=56), capacity=30, actor=None)
                create_cohort(db.session, track, name=DEMO_APPROVAL_COHORT, starts_at=today + dt.timedelta(days=60),
                              ends_at=today + dt.timedelta(days=116), capacity=20, requires_approval=True,
                              actor=None)
        db.session.flush()
        # The demo learner is in every track's open cohort, so "Open lab" and submitting work at once
        # (the demo's own cohort: the synthetic academy's cohorts are full of other learners).
        from academy.enrollment.models import ACTIVE_STATUSES, Enrollment
        from academy.enrollment.services import request_enrollment

        learner = find_user_by_email(db.session, DEMO_ACCOUNTS[0][0])
        for cohort in db.session.scalars(select(Cohort).where(Cohort.requires_approval.is_(False),
                                                              Cohort.name == DEMO_OPEN_COHORT)):
            if db.session.scalar(select(Enrollment.id).where(Enrollment.user_id == learner.id,
                                                            Enrollment.track_id == cohort.track_id,
                                                            Enrollment.status.in_(ACTIVE_STATUSES))) is None:
                request_enrollment(db.session, cohort, learner)
        db.session.commit()
    return [(email, role, password) for email, role, _name, password in DEMO_ACCOUNTS]


def seed_synthetic(app: Flask) -> str:
    """Load a small synthetic academy once (``academy synth``), so the admin's statistics have figures.

    Returns the one-line summary (``already there`` after the first start).
    """
    from academy.certificates.services import Issuer
    from academy.errors import AcademyError
    from academy.extensions import db
    from academy.synth import synthesize

    with app.app_context():
        try:
            report = synthesize(db.session, learners=DEMO_SYNTH_LEARNERS, seed=DEMO_SYNTH_SEED,
                                issuer=Issuer.from_app())
        except AcademyError as exc:  # another seed's academy is there: the demo runs with that one
            db.session.rollback()
            return f"no synthetic academy loaded: {exc}"
        seed_gpu_budgets(db.session)
        db.session.commit()
        return report.summary()


def seed_gpu_budgets(session: Session) -> None:
    """Give the synthetic companies with the most GPU hours this year a GPU-hour budget, so the admins' GPU
    budgets page shows one well within its budget, one close to its end and one used up."""
    from sqlalchemy import func

    from academy.labs.budgets import company_period, set_budget, use_of
    from academy.labs.models import LabSession
    from academy.users.models import Company, User

    now = utcnow()
    start, _end = company_period(now)
    top = session.execute(
        select(User.company_id).join(LabSession, LabSession.user_id == User.id)
        .where(LabSession.gpus > 0, LabSession.started_at >= start, User.company_id.is_not(None))
        .group_by(User.company_id).order_by(func.count().desc(), User.company_id).limit(3)).scalars().all()
    for company_id, share in zip(top, (1.6, 1.05, 0.9), strict=False):
        company = session.get(Company, company_id)
        used = use_of(session, company, now).used
        set_budget(session, company, max(round(used * share, 1), 1.0), actor=None, below_used_ok=True, now=now)


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


class StopRequest:
    """Signals that stop the demo: SIGINT (Ctrl-C), SIGTERM (a service manager, ``kill``), SIGHUP (its terminal
    closed).  The first asks for a clean stop, a second one (Ctrl-C twice) to stop at once.

    While the demo starts, the first signal interrupts the start (``DemoStopped`` in the main thread); once
    it serves, signals only set events, so the stop itself is never interrupted half-way.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.hurry = threading.Event()
        self.wake = threading.Event()  # a stop signal, or a child process ended (SIGCHLD)
        self.signum: int | None = None
        self.interrupt = True

    def install(self) -> None:
        """Handle the stop signals (main thread only)."""
        for signum in self.SIGNALS:
            signal.signal(signum, self._handle)

    def watch_children(self) -> None:
        """Wake the main thread whenever a child process ends (SIGCHLD), to collect orphans it adopted."""
        signal.signal(signal.SIGCHLD, lambda _signum, _frame: self.wake.set())

    def _handle(self, signum: int, _frame: object) -> None:
        self.wake.set()
        if self.signum is None:
            self.signum = signum
            self.requested.set()
            if self.interrupt:
                raise DemoStopped(signum)
        else:
            self.hurry.set()


class DemoStopped(BaseException):
    """A stop signal arrived while the demo was starting (a BaseException, like KeyboardInterrupt)."""


#: Seconds the hub, its lab servers and the worker get to stop on their own before what is left is killed.
STOP_GRACE = 5.0


def run_demo(app: Flask, *, host: str = "127.0.0.1", port: int = 5000, check_solutions: bool = True) -> None:
    """Initialise the database, seed demo data, start a grading worker and the hub and serve until stopped.

    Ctrl-C, SIGTERM or SIGHUP stop everything the demo started (the portal, the worker, the hub with its
    proxy, culler, lab servers and their kernels) within about ``STOP_GRACE`` seconds, a second Ctrl-C at
    once; the demo then ends by that signal, as a shell or service manager expects.  Run by ``make``, the
    demo also stops when make ends (killed by a signal make does not pass on).
    """
    from werkzeug.serving import make_server

    from academy.bootstrap import run_init

    stop = StopRequest()
    stop.install()
    # Lab servers and kernels are the hub's and Jupyter's children, in sessions of their own: as a subreaper
    # the demo still finds each one whose parent ended, and stops it (academy/processes.py).
    become_subreaper()
    if os.environ.get("MAKELEVEL"):
        stop_with_parent(signal.SIGTERM)
    started: list[subprocess.Popen[bytes]] = []  # the worker and the hub: each stops what it started
    server = None
    serving: threading.Thread | None = None
    try:
        with app.app_context():
            if check_solutions:
                click.echo("Checking and loading the courses (grading each assignment's solution the first time; "
                           "a minute or two) ...")
            else:
                click.echo("Loading the courses (solutions not checked) ...")
            summary = run_init(check_solutions=check_solutions)
        accounts = seed_demo(app)
        synthetic = seed_synthetic(app)
        port = free_port(host, port)
        url = f"http://{host}:{port}/"
        # The OpenID Connect issuer and mailed links: the address served here, unless ACADEMY_BASE_URL names
        # the public one (a proxy in front of the demo).
        if not os.environ.get("ACADEMY_BASE_URL"):
            app.config["ACADEMY_SETTINGS"].base_url = url.rstrip("/")
        click.echo("")
        click.echo("AI 새마을 아카데미 demo / AI Saemaul Academy demo")
        click.echo(f"  courses: {summary}")
        for line in summary.problems():
            click.echo(f"    ! {line}")
        click.echo(f"  statistics: {synthetic}")
        click.echo(f"  portal:  {url}")
        click.echo("  accounts (email / password):")
        for email, role, password in accounts:
            click.echo(f"    {role:<10} {email:<30} {password}")
        click.echo("  grading: one worker per core, embedded queue (academy worker)")
        hub = start_lab_hub(app, host)
        if hub is not None:
            started.append(hub.process)
            click.echo(f"  labs:    JupyterHub {app.config['ACADEMY_SETTINGS'].hub_url}/ (sign-in through the portal)")
        click.echo("  Ctrl-C stops everything.")
        click.echo("")
        started.append(start_worker(app))
        server = make_server(host, port, app, threaded=True)
        # The portal serves from a thread and keeps serving while the hub stops (the hub reports each lab's
        # stop to it); the main thread only waits for a stop signal.
        serving = threading.Thread(target=server.serve_forever, name="academy-demo-portal", daemon=True)
        serving.start()
        stop.interrupt = False
        stop.watch_children()
        while not stop.requested.is_set():
            stop.wake.wait()
            stop.wake.clear()
            reap_orphans(keep=[proc.pid for proc in started])
    except DemoStopped:
        pass
    finally:
        stop.interrupt = False
        _stop_everything(stop, started)
        if server is not None:
            if serving is not None:
                server.shutdown()
            server.server_close()
    if stop.signum is not None:
        # End by the signal received, as a well-behaved program does: the shell or make that ran the demo
        # then knows it was interrupted (exit status 128 + the signal's number).
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(stop.signum, signal.SIG_DFL)
        os.kill(os.getpid(), stop.signum)


def _stop_everything(stop: StopRequest, leaders: list[subprocess.Popen[bytes]]) -> None:
    """Stop the worker and the hub with all they started; what is left after ``STOP_GRACE`` s is killed."""
    if not leaders and stop.signum is None:
        return  # the start failed before anything ran: its error says why
    began = time.monotonic()
    click.echo("")
    click.echo("모두 멈추는 중입니다 (Ctrl-C를 한 번 더 누르면 바로 멈춥니다) / "
               "stopping everything (Ctrl-C again: at once)")
    result = stop_all_children(leaders, grace=STOP_GRACE, hurry=stop.hurry)
    for pid, command in result.killed:
        click.echo(f"  강제 종료 / killed: {pid} {command}", err=True)
    for ref in result.left:
        click.echo(f"  아직 실행 중 / still running: {ref.pid} {ref.command()}", err=True)
    click.echo(f"멈췄습니다 / stopped ({time.monotonic() - began:.1f} s)")
