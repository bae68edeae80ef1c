"""Queueing mail in the outbox and delivering it by SMTP when configured.

A message is written to the outbox in the caller's transaction; delivery happens
after the commit (``deliver_pending``), so a rolled-back action never sends mail.
Without SMTP the outbox is the delivery: an admin reads it on the outbox page.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session

from academy.config import Settings
from academy.db import utcnow
from academy.mail.models import OutboxMessage


def queue_mail(session: Session, recipient: str, subject: str, body: str) -> OutboxMessage:
    """Add a message to the outbox (flushed with the caller's transaction)."""
    message = OutboxMessage(recipient=recipient, subject=subject, body=body)
    session.add(message)
    return message


def deliver_pending(session: Session, settings: Settings, limit: int = 50) -> int:
    """Send unsent outbox messages over SMTP; returns how many were sent.

    Does nothing when no SMTP host is configured. A failure is recorded on the
    message and the rest go on; the caller commits.
    """
    if not settings.smtp_host:
        return 0
    pending = session.scalars(
        select(OutboxMessage).where(OutboxMessage.sent_at.is_(None)).order_by(OutboxMessage.id).limit(limit)
    ).all()
    sent = 0
    for message in pending:
        mail = EmailMessage()
        mail["From"] = settings.mail_sender
        mail["To"] = message.recipient
        mail["Subject"] = message.subject
        mail.set_content(message.body)
        try:
            with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
                if settings.smtp_starttls:
                    smtp.starttls()
                if settings.smtp_user:
                    smtp.login(settings.smtp_user, settings.smtp_password or "")
                smtp.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            message.error = f"{type(exc).__name__}: {exc}"
            continue
        message.sent_at = utcnow()
        message.error = None
        sent += 1
    return sent
