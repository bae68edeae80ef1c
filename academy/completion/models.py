"""Completion rows: one per time a learner completed a course or a track, withdrawn ones kept.

A row is written when the last condition of the passing rule becomes true and is never
deleted: when a regrade or a changed rule breaks the rule again the row gets ``withdrawn_at``
and a reason, and a later completion is a new row.  At most one row per learner and course
(or track) is in force (``withdrawn_at IS NULL``), held by partial unique indexes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from academy.catalog.models import Course, Track
from academy.db import utcnow
from academy.extensions import db
from academy.users.models import User

_COURSE_IN_FORCE = text("withdrawn_at IS NULL AND course_id IS NOT NULL")
_TRACK_IN_FORCE = text("withdrawn_at IS NULL AND course_id IS NULL")


class Completion(db.Model):
    """A learner completed a course (``course_id`` set) or a whole track (``course_id`` NULL)."""

    __tablename__ = "completion"
    __table_args__ = (
        Index("uq_completion_course_in_force", "user_id", "course_id", unique=True,
              sqlite_where=_COURSE_IN_FORCE, postgresql_where=_COURSE_IN_FORCE),
        Index("uq_completion_track_in_force", "user_id", "track_id", unique=True,
              sqlite_where=_TRACK_IN_FORCE, postgresql_where=_TRACK_IN_FORCE),
        Index("ix_completion_track_completed", "track_id", "completed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("track.id"))
    course_id: Mapped[int | None] = mapped_column(ForeignKey("course.id"), index=True)
    # When the last condition of the rule became true (a final score known, the lab hours reached).
    completed_at: Mapped[dt.datetime]
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    score_percent: Mapped[float | None] = mapped_column(Float)  # the course's total, in percent
    lab_hours: Mapped[float] = mapped_column(Float, default=0.0)
    # What held when it was recorded: the rule and each assignment's final score.
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    withdrawn_at: Mapped[dt.datetime | None]
    # Why it was withdrawn: ``score_changed`` (a regrade or grading by hand), ``rule_changed``, ...
    withdrawn_reason: Mapped[str | None] = mapped_column(String(40))
    withdrawn_detail: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # the conditions that failed

    user: Mapped[User] = relationship()
    track: Mapped[Track] = relationship()
    course: Mapped[Course | None] = relationship()

    def title(self, locale: str) -> str:
        """What was completed: the course's title, or the track's."""
        return self.course.title(locale) if self.course is not None else self.track.title(locale)

    @property
    def in_force(self) -> bool:
        """True until it is withdrawn."""
        return self.withdrawn_at is None
