"""Queueing mail in the outbox; the delivery job sends it by SMTP when configured.

A message is written to the outbox in the caller's transaction, and its delivery job
(``academy.deliver_mail``, ``academy.mail.worker``) is queued through
``academy.jobs.enqueue_after_commit``: it is sent right after the commit, and a
rolled-back action never sends mail.  Without SMTP the outbox is the delivery: an admin
reads it on the outbox page.
"""

from __future__ import annotations

import datetime as dt
import smtplib
from email.message import EmailMessage

from sqlalchemy.orm import Session

from academy.config import Settings
from academy.db import utcnow
from academy.mail.models import OutboxMessage

MAX_ATTEMPTS = 8  # tries at SMTP before a message is left to the admin
FIRST_RETRY = dt.timedelta(minutes=1)  # then doubling: 1, 2, 4 ... minutes
LONGEST_WAIT = dt.timedelta(hours=6)


def queue_mail(session: Session, recipient: str, subject: str, body: str) -> OutboxMessage:
    """Add a message to the outbox and queue its delivery for when the caller commits (flushes only)."""
    from academy.jobs import enqueue_after_commit

    now = utcnow()
    # Due for the retry sweep a little later, in case the delivery job's message is lost.
    message = OutboxMessage(recipient=recipient, subject=subject, body=body, created_at=now,
                            next_attempt_at=now + FIRST_RETRY)
    session.add(message)
    session.flush()
    enqueue_after_commit(session, "academy.deliver_mail", message.id)
    return message


def retry_wait(attempts: int) -> dt.timedelta:
    """How long after its ``attempts``-th failed try a message is tried again."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_WAIT)


def send_over_smtp(settings: Settings, message: OutboxMessage) -> None:
    """Hand ``message`` to the configured SMTP server; raises OSError or SMTPException when it is not taken."""
    mail = EmailMessage()
    mail["From"] = settings.mail_sender
    mail["To"] = message.recipient
    mail["Subject"] = message.subject
    mail.set_content(message.body)
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        smtp.send_message(mail)
