"""Celery tasks: grade a submission, and re-send jobs that lost their message or worker.

The tasks are thin: they open an app context and call ``academy.grading.worker``.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

_flask_app: Any = None


def flask_app() -> Any:
    """This worker process's portal app (created on first use, never at import time)."""
    global _flask_app
    if _flask_app is None:
        from academy import create_app

        _flask_app = create_app()
    return _flask_app


def register(celery: Celery) -> None:
    """Register the academy tasks on ``celery``."""

    @celery.task(name="academy.grade", acks_late=True, reject_on_worker_lost=True)
    def grade(job_id: int) -> str:
        """Grade the submission of a job (a no-op when another worker holds or finished it)."""
        from academy.grading.worker import run_job

        with flask_app().app_context():
            return run_job(job_id)

    @celery.task(name="academy.requeue_stale_jobs")
    def requeue_stale_jobs() -> int:
        """Re-send queued jobs whose message seems lost and running jobs whose lease ran out."""
        from academy.grading.worker import requeue_stale

        with flask_app().app_context():
            return requeue_stale()
