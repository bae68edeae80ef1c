"""Telling a user something: a message in their inbox, and the same by mail unless they turned that kind off.

Callers write the subject and body in the recipient's language (``flask_babel.force_locale``
with the recipient's locale), as the mail they replace did.  Mail goes through the outbox
(``academy.mail.services.queue_mail``): sent by SMTP when it is configured, kept on the
admin's outbox page when it is not.  Everything is written in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import current_app, has_app_context
from flask_babel import gettext as _
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from academy.audit.services import record
from academy.db import utcnow
from academy.errors import ValidationFailed
from academy.inbox.models import KINDS, InboxMessage, MailOptOut
from academy.mail.services import queue_mail
from academy.users.models import User

MAX_SUBJECT = 200
MAX_BODY = 5000
PER_PAGE = 30


def _absolute(link: str) -> str:
    base = current_app.config["ACADEMY_SETTINGS"].base_url.rstrip("/") if has_app_context() else ""
    return f"{base}{link}"


def wants_mail(session: Session, user_id: int, kind: str) -> bool:
    """False when the user turned mail off for ``kind``."""
    return session.scalar(select(MailOptOut.id).where(MailOptOut.user_id == user_id, MailOptOut.kind == kind)) is None


def tell(session: Session, user: User, kind: str, subject: str, body: str, *, link: str | None = None,
         key: str | None = None, sender: User | None = None) -> InboxMessage | None:
    """Put a message in ``user``'s inbox and mail it unless they turned ``kind`` off.

    ``link``: a portal path the message is about.  ``key``: write it once per user (None when a
    message with this key is already there).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown message kind {kind!r}")
    if key is not None and session.scalar(select(InboxMessage.id).where(
            InboxMessage.user_id == user.id, InboxMessage.key == key)) is not None:
        return None
    message = InboxMessage(user_id=user.id, kind=kind, subject=subject[:300], body=body, link=link, key=key,
                           sender_id=sender.id if sender is not None else None, created_at=utcnow())
    session.add(message)
    session.flush()
    if user.active and wants_mail(session, user.id, kind):
        queue_mail(session, user.email, subject, body + (f"\n\n{_absolute(link)}" if link else ""))
    return message


def unread_count(session: Session, user_id: int) -> int:
    """How many of the user's messages are not read yet."""
    return session.scalar(select(func.count()).select_from(InboxMessage).where(
        InboxMessage.user_id == user_id, InboxMessage.read_at.is_(None))) or 0


def messages_of(session: Session, user_id: int, *, page: int = 1,
                per_page: int = PER_PAGE) -> tuple[list[InboxMessage], int]:
    """A page of the user's messages, newest first, and how many there are in all."""
    total = session.scalar(select(func.count()).select_from(InboxMessage).where(InboxMessage.user_id == user_id))
    rows = session.scalars(select(InboxMessage).where(InboxMessage.user_id == user_id)
                           .order_by(InboxMessage.created_at.desc(), InboxMessage.id.desc())
                           .offset((max(page, 1) - 1) * per_page).limit(per_page))
    return list(rows), total or 0


def open_message(session: Session, user_id: int, message_id: int) -> InboxMessage | None:
    """The user's own message, marked read; None for anyone else's."""
    message = session.get(InboxMessage, message_id)
    if message is None or message.user_id != user_id:
        return None
    if message.read_at is None:
        message.read_at = utcnow()
    return message


def mark_all_read(session: Session, user_id: int) -> int:
    """Mark every unread message of the user read; returns how many."""
    result = session.execute(update(InboxMessage).where(InboxMessage.user_id == user_id,
                                                        InboxMessage.read_at.is_(None))
                             .values(read_at=utcnow()).execution_options(synchronize_session=False))
    return result.rowcount or 0


def mail_kinds(session: Session, user_id: int) -> set[str]:
    """The kinds the user gets by mail."""
    off = set(session.scalars(select(MailOptOut.kind).where(MailOptOut.user_id == user_id)))
    return {kind for kind in KINDS if kind not in off}


def set_mail_kinds(session: Session, user_id: int, wanted: Iterable[str]) -> None:
    """Mail the user only ``wanted`` kinds (unknown names are ignored)."""
    off = set(KINDS) - set(wanted)
    session.execute(delete(MailOptOut).where(MailOptOut.user_id == user_id))
    session.add_all(MailOptOut(user_id=user_id, kind=kind) for kind in sorted(off))
    session.flush()


def check_text(subject: str, body: str) -> tuple[str, str]:
    """A message an instructor wrote, trimmed; ValidationFailed when empty or too long."""
    subject, body = subject.strip(), body.strip().replace("\r\n", "\n")
    if not subject or not body:
        raise ValidationFailed(_("Write a subject and a message."))
    if len(subject) > MAX_SUBJECT or len(body) > MAX_BODY:
        raise ValidationFailed(_("A subject can be at most %(s)d characters and a message %(b)d.",
                                 s=MAX_SUBJECT, b=MAX_BODY))
    return subject, body


def announce(session: Session, learners: Iterable[User], subject: str, body: str, *, sender: User,
             link: str | None, audit_target: tuple[str, int]) -> int:
    """An instructor's announcement to ``learners`` (a cohort): one message each, audited once."""
    subject, body = check_text(subject, body)
    sent = 0
    for learner in learners:
        tell(session, learner, "announcement", subject, body, link=link, sender=sender)
        sent += 1
    record(session, "inbox.announce", actor=sender, target_type=audit_target[0], target_id=audit_target[1],
           subject=subject, recipients=sent)
    return sent
