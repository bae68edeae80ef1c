"""Celery tasks: grade a submission, check and release a new assignment version, deliver mail, and the periodic sweeps.

The worker's side of the queue: ``academy worker`` (and tests that run jobs) call
:func:`worker_celery`; senders never import this module (``academy.jobs`` sends by task name).
The tasks are thin: they open an app context and call one plain function (``academy.grading.worker``,
``academy.mail.worker``, ``academy.labs``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery

from academy.jobs import get_celery

_app_factory: Callable[[], Any] | None = None
_flask_app: Any = None


def worker_celery(app_factory: Callable[[], Any]) -> Celery:
    """The configured queue's Celery app with the academy tasks on it, for a process that runs them.

    ``app_factory`` builds the portal app the tasks run in: once per process, on the first task
    (a Celery pool process builds its own after the fork, never the parent's connections); a
    process that already has its app (a test that set ``_flask_app``) keeps it.
    Call inside an app context or with the settings in the environment, as ``get_celery``.
    """
    global _app_factory
    _app_factory = app_factory
    celery = get_celery()
    if "academy.grade" not in celery.tasks:
        register(celery)
    return celery


def flask_app() -> Any:
    """This worker process's portal app (created on first use, never at import time)."""
    global _flask_app
    if _flask_app is None:
        if _app_factory is None:
            raise RuntimeError("academy.jobs.tasks.worker_celery() names the portal app the tasks run in")
        _flask_app = _app_factory()
    return _flask_app


def register(celery: Celery) -> None:
    """Register the academy tasks on ``celery`` only (``shared=False``: each settings' app has its own)."""
    from celery.signals import worker_init, worker_process_init

    @worker_init.connect(weak=False, dispatch_uid="academy-grading-warm-up")
    def warm_up_grading(**_kwargs: Any) -> None:
        """In the worker's main process, before the pool forks: what each process's first grade would build."""
        import academy.engine.prewarm_feedback  # noqa: F401 - imported for its warm-up

    @worker_process_init.connect(weak=False, dispatch_uid="academy-grading-zygote")
    def start_kernel_zygote(**_kwargs: Any) -> None:
        """In each pool process: launch its kernel zygote before the first job needs it."""
        from academy.engine.kernels import prestart_zygote

        prestart_zygote()

    @celery.task(name="academy.grade", shared=False, acks_late=True, reject_on_worker_lost=True)
    def grade(job_id: int) -> str:
        """Grade the submission of a job (a no-op when another worker holds or finished it)."""
        from academy.grading.worker import run_job

        with flask_app().app_context():
            return run_job(job_id)

    @celery.task(name="academy.release_upload", shared=False, acks_late=True, reject_on_worker_lost=True)
    def release_upload(assignment_id: int, files: dict[str, str], actor_id: int | None) -> int:
        """Release a new assignment version from uploaded source notebooks (by blob digest)."""
        from pathlib import Path

        from academy.catalog.models import Assignment
        from academy.extensions import db
        from academy.grading import releases
        from academy.grading.storage import BlobStore
        from academy.users.models import User

        with flask_app().app_context():
            data_dir = Path(flask_app().config["ACADEMY_DATA_DIR"])
            store = BlobStore(data_dir / "sources")
            assignment = db.session.get(Assignment, assignment_id)
            release = releases.release_upload(db.session, assignment,
                                              {name: store.get(d) for name, d in files.items()},
                                              data_dir,
                                              actor=db.session.get(User, actor_id) if actor_id else None)
            db.session.commit()
            return release.version

    @celery.task(name="academy.check_version", shared=False, acks_late=True, reject_on_worker_lost=True)
    def check_version(token: str) -> str:
        """Check a new assignment version before staff confirm it (academy.teaching.drafts)."""
        from pathlib import Path

        from academy.extensions import db
        from academy.teaching import drafts

        with flask_app().app_context():
            return drafts.run_check(db.session, Path(flask_app().config["ACADEMY_DATA_DIR"]), token)

    @celery.task(name="academy.publish_version", shared=False, acks_late=True, reject_on_worker_lost=True)
    def publish_version(token: str) -> str:
        """Release a checked and confirmed assignment version, regrading if staff chose so."""
        from pathlib import Path

        from academy.extensions import db
        from academy.teaching import drafts

        with flask_app().app_context():
            return drafts.run_publish(db.session, Path(flask_app().config["ACADEMY_DATA_DIR"]), token)

    @celery.task(name="academy.requeue_stale_jobs", shared=False)
    def requeue_stale_jobs() -> int:
        """Re-send queued jobs whose message seems lost and running jobs whose lease ran out."""
        from academy.grading.worker import requeue_stale

        with flask_app().app_context():
            return requeue_stale()

    @celery.task(name="academy.deliver_mail", shared=False)
    def deliver_mail(message_id: int) -> bool:
        """Send one outbox message right after the commit that wrote it (a no-op without SMTP)."""
        from academy.extensions import db
        from academy.mail.worker import deliver

        with flask_app().app_context():
            return deliver(db.session, flask_app().config["ACADEMY_SETTINGS"], message_id)

    @celery.task(name="academy.retry_mail", shared=False)
    def retry_mail() -> int:
        """Try again the outbox messages SMTP did not take, once their wait is over."""
        from academy.extensions import db
        from academy.mail.worker import retry_due

        with flask_app().app_context():
            return retry_due(db.session, flask_app().config["ACADEMY_SETTINGS"])

    @celery.task(name="academy.refresh_completions", shared=False)
    def refresh_completions() -> int:
        """Judge completions again for the learners whose deadline passed in the last hour."""
        import datetime as dt

        from academy.completion.services import refresh_due
        from academy.db import utcnow
        from academy.extensions import db

        with flask_app().app_context():
            now = utcnow()
            judged = refresh_due(db.session, since=now - dt.timedelta(hours=1), now=now)
            db.session.commit()
            return judged

    @celery.task(name="academy.refresh_stats", shared=False)
    def refresh_stats() -> int:
        """Rebuild the statistics' summary tables (academy.stats.refresh); returns the rows written."""
        from academy.extensions import db
        from academy.stats.page import recount

        with flask_app().app_context():
            report = recount(db.session)
            db.session.commit()
            return report.rows

    @celery.task(name="academy.remind_deadlines", shared=False)
    def remind_deadlines() -> int:
        """Tell learners of deadlines in the next 48 hours they have not met (academy.inbox); returns how many."""
        from academy.extensions import db
        from academy.inbox.reminders import remind_deadlines as remind

        with flask_app().app_context():
            told = remind(db.session)
            db.session.commit()
            return told

    @celery.task(name="academy.start_lab", shared=False, acks_late=True, reject_on_worker_lost=True)
    def start_lab(lab_id: int) -> str:
        """Start a lab's server and follow it until ready (academy.labs.launch.run_start)."""
        from academy.extensions import db
        from academy.labs.hub import client_for
        from academy.labs.launch import run_start

        with flask_app().app_context():
            settings = flask_app().config["ACADEMY_SETTINGS"]
            return run_start(db.session, client_for(settings), settings, lab_id)

    @celery.task(name="academy.sweep_labs", shared=False)
    def sweep_labs() -> dict[str, int]:
        """Labs housekeeping (academy.labs.usage.sweep); a no-op when no hub is configured or reachable."""
        import dataclasses

        from academy.extensions import db
        from academy.labs.hub import HubError, client_for
        from academy.labs.usage import sweep

        with flask_app().app_context():
            settings = flask_app().config["ACADEMY_SETTINGS"]
            if not settings.labs_enabled:
                return {}
            try:
                report = sweep(db.session, client_for(settings), settings)
            except HubError:
                db.session.rollback()
                return {}
            db.session.commit()
            return dataclasses.asdict(report)
