"""The outbox: every message the portal sends, kept so an admin can read it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from academy.db import utcnow
from academy.extensions import db


class OutboxMessage(db.Model):
    """One outgoing message; ``sent_at`` is set once SMTP accepted it.

    ``attempts`` counts the tries at SMTP; ``next_attempt_at`` is when the retry sweep may
    try again (None once it was sent or the tries ran out); ``error`` is the last failure.
    """

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient: Mapped[str] = mapped_column(String(254), index=True)
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(index=True)
