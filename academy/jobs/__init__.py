"""The job queue seam: Celery, with an embedded broker by default.

* Embedded (``ACADEMY_BROKER_URL`` unset): Celery's filesystem transport in the data
  directory — no server to install; ``academy worker`` runs the workers and the
  periodic sweeper on this machine.
* Scale path: ``ACADEMY_BROKER_URL=redis://...`` or ``amqp://...`` — the same tasks on
  any number of worker machines.

The database row (``GradingJob``) is the truth about a job, not the message: a worker
claims a job with a lease, records the result only while it still holds it, and the
sweeper re-sends jobs whose message was lost or whose worker died.  So a lost message
or a SIGKILLed worker delays a grade but never loses one, and never records it twice.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_apps: dict[tuple[str | None, str, float], Celery] = {}

SWEEP_SECONDS = 15.0


def celery_config(broker_url: str | None, data_dir: Path, sweep_seconds: float = SWEEP_SECONDS) -> dict[str, Any]:
    """Celery settings for the embedded filesystem broker or a real one."""
    config: dict[str, Any] = {
        "task_acks_late": True,  # a task is acknowledged after it ran, not when received
        "task_reject_on_worker_lost": True,  # a worker child killed mid-task puts it back
        "worker_prefetch_multiplier": 1,  # grading is long: take one job at a time
        "task_ignore_result": True,  # results live in the database
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": "academy",
        "beat_schedule": {
            "requeue-stale-grading-jobs": {"task": "academy.requeue_stale_jobs", "schedule": sweep_seconds},
            # Labs: reconcile with the hub, warn and stop over GPU quota, expire abandoned queue places.
            "sweep-labs": {"task": "academy.sweep_labs", "schedule": 60.0},
        },
    }
    config["beat_schedule_filename"] = str(Path(data_dir) / "celerybeat-schedule")
    if broker_url:
        config["broker_url"] = broker_url
        # Redis: an unacknowledged message goes back to the queue after this long.
        config["broker_transport_options"] = {"visibility_timeout": 900}
    else:
        queue_dir = Path(data_dir) / "queue"
        for sub in ("messages", "processed", "control"):
            (queue_dir / sub).mkdir(parents=True, exist_ok=True)
        config["broker_url"] = "filesystem://"
        config["broker_transport_options"] = {
            "data_folder_in": str(queue_dir / "messages"),
            "data_folder_out": str(queue_dir / "messages"),
            "processed_folder": str(queue_dir / "processed"),
            "control_folder": str(queue_dir / "control"),
            "store_processed": False,
            "polling_interval": 0.1,
        }
    return config


def get_celery() -> Celery:
    """The Celery app for the current settings: the app context's, else the environment's."""
    from flask import current_app, has_app_context

    from academy.config import Settings

    settings = current_app.config["ACADEMY_SETTINGS"] if has_app_context() else Settings.from_env()
    key = (settings.broker_url, str(settings.data_dir), settings.sweep_seconds)
    app = _apps.get(key)
    if app is None:
        app = Celery("academy")
        app.conf.update(celery_config(settings.broker_url, settings.data_dir, settings.sweep_seconds))
        from academy.jobs import tasks

        tasks.register(app)
        _apps[key] = app
    return app


def enqueue(task: str, *args: Any) -> None:
    """Send a task message now. Prefer ``enqueue_after_commit``; this is for work whose rows are committed."""
    get_celery().send_task(task, args=list(args), queue="academy")


_PENDING = "academy.jobs.pending"


def enqueue_after_commit(session: Session, task: str, *args: Any) -> None:
    """Queue ``task(*args)`` to be sent once ``session``'s transaction commits (never if it rolls back).

    The one way to queue work from a service or view: a worker that picks the message up
    always finds the rows the transaction wrote.  A broker that is down when the message is
    sent is logged, not raised: the commit already happened, and each task's periodic sweep
    re-sends work whose message was lost.
    """
    pending: list[tuple[str, tuple[Any, ...]]] = session.info.setdefault(_PENDING, [])
    if (task, args) not in pending:
        pending.append((task, args))


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    for task, args in session.info.pop(_PENDING, []):
        try:
            enqueue(task, *args)
        except Exception:  # noqa: BLE001 - the broker is an outside system; the sweeper re-sends
            log.exception("could not send %s%r; the periodic sweep will retry", task, args)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def enqueue_grading(job_id: int) -> None:
    """Send the message for a grading job (call after the commit that created it)."""
    enqueue("academy.grade", job_id)


def default_concurrency() -> int:
    """One grading worker per core."""
    return max(os.cpu_count() or 1, 1)
