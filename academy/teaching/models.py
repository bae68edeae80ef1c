"""Rows of course staff's work: the nudges sent to learners at risk, and the gradebook's kept cells."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, and_
from sqlalchemy.orm import Mapped, mapped_column, relationship

from academy.db import utcnow
from academy.enrollment.models import Cohort
from academy.extensions import db
from academy.grading.models import CellScore, Submission
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


class GradebookCell(db.Model):
    """One learner's summary on one assignment, as course staff see it: what the gradebook's cell shows.

    Kept by :mod:`academy.teaching.cells` in the same transaction as the attempts it sums up, from
    ``grading.standing.standing_from(..., staff=True)``: nothing is held from staff, so no value here
    depends on the clock (whether a cell is overdue is read with the deadline, when shown).  A pair
    without any attempt has no row: the learner has not started.
    """

    __tablename__ = "gradebook_cell"
    __table_args__ = (Index("ix_gradebook_cell_user_id", "user_id"),)

    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24))  # a staff standing (grading.standing.STATUSES, never "held")
    # The attempt that counts (best or last, as the assignment says), its final score and maximum.
    counted_submission_id: Mapped[int | None] = mapped_column(ForeignKey("submission.id", ondelete="SET NULL"))
    counted_attempt: Mapped[int | None] = mapped_column(Integer)
    score: Mapped[float | None] = mapped_column(Float)
    max_score: Mapped[float | None] = mapped_column(Float)
    late_days: Mapped[int] = mapped_column(Integer, default=0)  # of the attempt that counts
    flag_unreviewed: Mapped[bool] = mapped_column(default=False)  # some attempt's flag waits for staff
    last_submitted_at: Mapped[dt.datetime | None]
    # Autograded cells failed in scored attempts since the learner last passed them, as
    # [notebook, grade_id, attempts] (None: none), and the most such attempts of one cell: what the
    # at-risk list's "stuck" rule reads (``cells.failing_streaks``).
    failing: Mapped[list[list[Any]] | None] = mapped_column(JSON(none_as_null=True))
    most_failing: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What the question statistics sum per question (``cells.question_facts``); None: no graded cell.
    questions: Mapped[dict[str, list[Any]] | None] = mapped_column(JSON(none_as_null=True))


# What waits for staff (the staff home's counts and the grading queue, ``services.waiting_queries``) is
# a few rows among every attempt and graded cell: these partial indexes hold only those rows, so
# finding them reads no table from end to end.
_UNMARKED = and_(CellScore.manual.is_(True), CellScore.score.is_(None))
Index("ix_cell_score_unmarked", CellScore.submission_id, postgresql_where=_UNMARKED, sqlite_where=_UNMARKED)
_UNREVIEWED = and_(Submission.flagged.is_(True), Submission.flag_review.is_(None))
Index("ix_submission_unreviewed_flag", Submission.assignment_id, postgresql_where=_UNREVIEWED,
      sqlite_where=_UNREVIEWED)
