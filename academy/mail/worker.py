"""The mail delivery jobs: one message right after its commit, and the periodic retry.

These are the bodies of the Celery tasks ``academy.deliver_mail`` and
``academy.retry_mail`` (``academy.jobs.tasks``); like the grading worker they commit.
A try is claimed (its attempt counted) and committed before SMTP is spoken to, so two
workers never send the same try, and a worker that dies mid-send leaves the message to
the retry sweep.  A refusal (say 550) or an unreachable server leaves the message in
the outbox with its error, retried with a doubling wait until ``MAX_ATTEMPTS``; after
that it stays on the outbox page for the admin.  Nothing is ever deleted.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from academy.config import Settings
from academy.db import utcnow
from academy.mail.models import OutboxMessage
from academy.mail.services import MAX_ATTEMPTS, retry_wait, send_over_smtp

log = logging.getLogger(__name__)

RETRY_WINDOW = dt.timedelta(days=2)  # older unsent mail (say, from before SMTP was configured) stays in the outbox


def deliver(session: Session, settings: Settings, message_id: int, *, now: dt.datetime | None = None) -> bool:
    """The first try at sending a message, right after the commit that wrote it; True when sent.

    A no-op without SMTP, and for a message already sent or tried (retries are the sweep's).
    """
    if not settings.smtp_host:
        return False
    message = session.get(OutboxMessage, message_id)
    if message is None or message.sent_at is not None or message.attempts:
        return False
    return _attempt(session, settings, message, now or utcnow())


def retry_due(session: Session, settings: Settings, *, now: dt.datetime | None = None, limit: int = 100) -> int:
    """Try again the unsent messages whose wait is over; returns how many were sent."""
    if not settings.smtp_host:
        return 0
    now = now or utcnow()
    due = session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.sent_at.is_(None), OutboxMessage.next_attempt_at <= now,
            OutboxMessage.attempts < MAX_ATTEMPTS, OutboxMessage.created_at >= now - RETRY_WINDOW,
        ).order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(limit)
    ).all()
    session.commit()
    return sum(_attempt(session, settings, message, now) for message in due)


def _attempt(session: Session, settings: Settings, message: OutboxMessage, now: dt.datetime) -> bool:
    attempt = message.attempts + 1
    claimed = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message.id, OutboxMessage.attempts == message.attempts,
               OutboxMessage.sent_at.is_(None))
        .values(attempts=attempt, next_attempt_at=now + retry_wait(attempt))
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # another worker took this try
        session.rollback()
        return False
    session.commit()
    session.refresh(message)
    try:
        send_over_smtp(settings, message)
    except (OSError, smtplib.SMTPException) as exc:
        message.error = f"{type(exc).__name__}: {exc}"
        if attempt >= MAX_ATTEMPTS:
            message.next_attempt_at = None
        session.commit()
        log.warning("mail %s: try %d of %d failed: %s", message.id, attempt, MAX_ATTEMPTS, message.error)
        return False
    message.sent_at = utcnow()
    message.error = None
    message.next_attempt_at = None
    session.commit()
    return True
