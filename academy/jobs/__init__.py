"""The job queue seam: Celery, with an embedded broker by default.

* Embedded (``ACADEMY_BROKER_URL`` unset): Celery's filesystem transport in the data
  directory — no server to install; ``academy worker`` runs the workers and the
  periodic sweeper on this machine.
* Scale path: ``ACADEMY_BROKER_URL=redis://...`` or ``amqp://...`` — the same tasks on
  any number of worker machines.

Work is queued one way: ``enqueue_after_commit(session, task, *args)``, from the service
that writes the rows the task reads; the message leaves when that transaction commits.

A database row is the truth about a job, not the message: a grading worker claims a
``GradingJob`` with a lease and records the result only while it still holds it; a mail
try is claimed on its ``OutboxMessage`` before SMTP is spoken to.  Periodic sweeps (the
beat) re-send grading jobs whose message was lost or whose worker died, and retry mail
SMTP did not take.  So a lost message or a SIGKILLed worker delays a grade or a mail but
never loses one, and never records it twice.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, scoped_session

log = logging.getLogger(__name__)

_apps: dict[tuple[str | None, str, float], Celery] = {}

SWEEP_SECONDS = 15.0


# The embedded broker: kombu's filesystem transport with whole messages (see academy.jobs.fstransport).
TRANSPORT_ALIASES.setdefault("academyfs", "academy.jobs.fstransport:Transport")


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
            # Mail: try again the messages SMTP did not take (or whose delivery message was lost).
            "retry-mail": {"task": "academy.retry_mail", "schedule": 60.0},
            # Completions: results held until a deadline are final once it passes; judge those learners.
            "refresh-completions": {"task": "academy.refresh_completions", "schedule": 600.0},
            # Statistics: rebuild the summary tables the admin's charts read.
            "refresh-stats": {"task": "academy.refresh_stats", "schedule": 600.0},
            # Inbox: remind learners of deadlines in the next 48 hours they have not met.
            "remind-deadlines": {"task": "academy.remind_deadlines", "schedule": 600.0},
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
        # kombu's filesystem transport, with messages written whole (academy.jobs.fstransport)
        config["broker_url"] = "academyfs://"
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
    """The Celery app for the current settings (the app context's, else the environment's), for sending.

    Tasks are sent by name; the worker's side registers them (``academy.jobs.tasks.worker_celery``).
    """
    from flask import current_app, has_app_context

    from academy.config import Settings

    settings = current_app.config["ACADEMY_SETTINGS"] if has_app_context() else Settings.from_env()
    key = (settings.broker_url, str(settings.data_dir), settings.sweep_seconds)
    app = _apps.get(key)
    if app is None:
        app = Celery("academy")
        app.conf.update(celery_config(settings.broker_url, settings.data_dir, settings.sweep_seconds))
        _apps[key] = app
    return app


def _send(task: str, args: tuple[Any, ...]) -> None:
    get_celery().send_task(task, args=list(args), queue="academy")


_PENDING = "academy.jobs.pending"


def enqueue_after_commit(session: Session | scoped_session[Session], task: str, *args: Any) -> None:
    """Queue ``task(*args)`` to be sent once ``session``'s transaction commits (never if it rolls back).

    The one way to queue work from a service, view or job: a worker that picks the message
    up always finds the rows the transaction wrote.

    * Messages are sent when the outermost transaction commits, in the order they were
      queued.  Releasing a savepoint (``begin_nested``) sends nothing; rolling one back
      drops only what was queued inside it; rolling back or closing the whole transaction
      drops everything.
    * The same task with the same arguments is sent once per transaction (tasks are
      idempotent by the ids they carry; a regrade of many submissions queues each once).
    * Arguments must be JSON values (they travel in the message).
    * A broker that is down is logged, not raised: the commit already happened, and each
      task's periodic sweep re-sends work whose message was lost.

    ``session`` may be Flask-SQLAlchemy's scoped ``db.session``: its ``info`` is that of the
    session in use.
    """
    if isinstance(session, scoped_session):
        session = session()
    if not session.in_transaction():
        session.begin()  # so that a rollback or close before any SQL still drops this work
    pending: dict[tuple[str, str], tuple[str, tuple[Any, ...], SessionTransaction | None]]
    pending = session.info.setdefault(_PENDING, {})
    key = (task, json.dumps(args, sort_keys=True))
    if key not in pending:
        pending[key] = (task, args, session.get_nested_transaction())


def _within(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: its messages wait for the outer commit
        return
    for task, args, _transaction in session.info.pop(_PENDING, {}).values():
        try:
            _send(task, args)
        except Exception:  # noqa: BLE001 - the broker is an outside system; the sweeper re-sends
            log.exception("could not send %s%r; the periodic sweep will retry", task, args)


@event.listens_for(Session, "after_soft_rollback")
def _drop_savepoint(session: Session, previous_transaction: SessionTransaction) -> None:
    pending = session.info.get(_PENDING)
    if pending and previous_transaction.nested:
        for key, (_task, _args, transaction) in list(pending.items()):
            if _within(transaction, previous_transaction):
                del pending[key]


@event.listens_for(Session, "after_transaction_end")
def _drop_uncommitted(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # after a commit they were sent; after a rollback or close, dropped
        session.info.pop(_PENDING, None)


def default_concurrency() -> int:
    """One grading worker per core."""
    return max(os.cpu_count() or 1, 1)
