"""Rows of course staff's work: the nudges sent to learners at risk."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column, relationship

from academy.db import utcnow
from academy.enrollment.models import Cohort
from academy.extensions import db
from academy.users.models import User


class Nudge(db.Model):
    """A message an instructor sent a learner at risk of not finishing a course.

    ``reasons`` are the at-risk codes the learner had when nudged (``idle``, ``stuck``,
    ``behind``).  Whether the learner came back (a lab session or a submission in the course
    within a week) is read from their activity, not stored: it cannot go stale.
    """

    __tablename__ = "nudge"
    __table_args__ = (Index("ix_nudge_course_cohort", "course_id", "cohort_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"))
    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohort.id", ondelete="CASCADE"))
    sender_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("inbox_message.id", ondelete="SET NULL"))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    sent_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    sender: Mapped[User | None] = relationship(foreign_keys=[sender_id])
    cohort: Mapped[Cohort] = relationship()
