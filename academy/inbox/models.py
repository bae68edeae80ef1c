"""Inbox rows: a message to one user, and the kinds a user does not want by mail."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from academy.db import utcnow
from academy.extensions import db

#: What a message is about; a learner turns mail off per kind.
KINDS = ("score", "score_changed", "nudge", "announcement", "deadline", "lab_quota")


class InboxMessage(db.Model):
    """One message to one user, shown in their inbox until they read it (and kept after).

    ``key`` makes a message that a periodic job sends (a deadline reminder) go out once per
    user: a second one with the same key is not written.
    """

    __tablename__ = "inbox_message"
    __table_args__ = (
        UniqueConstraint("user_id", "key"),
        Index("ix_inbox_message_user_unread", "user_id", "read_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(500))  # a path in the portal
    key: Mapped[str | None] = mapped_column(String(200))
    sender_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    read_at: Mapped[dt.datetime | None]


class MailOptOut(db.Model):
    """A kind of message the user reads in the portal only, not by mail."""

    __tablename__ = "mail_opt_out"
    __table_args__ = (UniqueConstraint("user_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
