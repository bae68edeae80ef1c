"""Grading rows: released versions, submissions, their files, cell scores, jobs, extensions.

A submission is immutable once stored: its files are content-addressed (SHA-256) in the
submission store and never rewritten.  Grading writes scores beside it; regrading
replaces the scores (with an audit entry), never the submission.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid

from sqlalchemy import JSON, Enum, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from academy.catalog.models import Assignment
from academy.db import utcnow
from academy.extensions import db
from academy.users.models import User


class SubmissionStatus(enum.Enum):
    """Where a submission stands. Learner faults and grader faults are kept apart."""

    queued = "queued"
    grading = "grading"
    graded = "graded"
    learner_code_failed = "learner_code_failed"  # timeout, crash, limit hit: the learner's code
    grader_error = "grader_error"  # our fault: never shown as a score

    @property
    def finished(self) -> bool:
        """True once grading is over, whatever the outcome."""
        return self in (SubmissionStatus.graded, SubmissionStatus.learner_code_failed, SubmissionStatus.grader_error)

    @property
    def has_score(self) -> bool:
        """True when the submission carries a score (a grader error never does)."""
        return self in (SubmissionStatus.graded, SubmissionStatus.learner_code_failed)


class JobState(enum.Enum):
    """The life of a grading job."""

    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"  # gave up after max attempts: the submission shows grader_error


class AssignmentRelease(db.Model):
    """One released version of an assignment: nbgrader's student version of its source."""

    __tablename__ = "assignment_release"
    __table_args__ = (
        UniqueConstraint("assignment_id", "version"),
        UniqueConstraint("assignment_id", "source_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    source_hash: Mapped[str] = mapped_column(String(64))
    # Where the source and released notebooks of this version are kept (under the data dir).
    path: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))

    assignment: Mapped[Assignment] = relationship()


class Submission(db.Model):
    """One attempt of a learner at an assignment."""

    __tablename__ = "submission"
    __table_args__ = (UniqueConstraint("assignment_id", "user_id", "attempt"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("assignment_release.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    origin: Mapped[str] = mapped_column(String(20), default="upload")  # upload | lab
    submitted_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    due_at: Mapped[dt.datetime | None]  # the deadline that applied, extensions included
    late_days: Mapped[int] = mapped_column(Integer, default=0)
    penalty_percent: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[SubmissionStatus] = mapped_column(
        Enum(SubmissionStatus, name="submission_status", native_enum=False, length=24),
        default=SubmissionStatus.queued,
        index=True,
    )
    raw_score: Mapped[float | None] = mapped_column(Float)  # autograded points before penalty
    score: Mapped[float | None] = mapped_column(Float)  # after the late penalty
    max_score: Mapped[float] = mapped_column(Float, default=0.0)
    problems: Mapped[list[str]] = mapped_column(JSON, default=list)
    flagged: Mapped[bool] = mapped_column(default=False)
    flag_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Staff's decision on a flagged attempt: "confirmed" (the score stands) or "rejected" (it counts as 0).
    # Until then a flagged attempt waits for them and counts towards nothing.  Kept across regrades.
    flag_review: Mapped[str | None] = mapped_column(String(12))
    flag_review_reason: Mapped[str | None] = mapped_column(Text)
    flag_reviewed_at: Mapped[dt.datetime | None]
    flag_reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    feedback_sha256: Mapped[str | None] = mapped_column(String(64))  # nbgrader's feedback file (for staff)
    # The notebooks as the grader ran them, by notebook name: SHA-256 in the graded store.
    graded_notebooks: Mapped[dict[str, str] | None] = mapped_column(JSON)
    graded_at: Mapped[dt.datetime | None]

    assignment: Mapped[Assignment] = relationship()
    user: Mapped[User] = relationship(foreign_keys=[user_id])
    release: Mapped[AssignmentRelease] = relationship()
    files: Mapped[list[SubmissionFile]] = relationship(
        back_populates="submission", order_by="SubmissionFile.name", cascade="all, delete-orphan"
    )
    cells: Mapped[list[CellScore]] = relationship(
        back_populates="submission", order_by="CellScore.id", cascade="all, delete-orphan"
    )
    overrides: Mapped[list[ScoreOverride]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class SubmissionFile(db.Model):
    """A notebook of a submission, stored by its SHA-256 in the submission store."""

    __tablename__ = "submission_file"
    __table_args__ = (UniqueConstraint("submission_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)

    submission: Mapped[Submission] = relationship(back_populates="files")


class CellScore(db.Model):
    """The score of one graded cell of one notebook of a submission."""

    __tablename__ = "cell_score"
    __table_args__ = (UniqueConstraint("submission_id", "notebook", "grade_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id", ondelete="CASCADE"), index=True)
    notebook: Mapped[str] = mapped_column(String(200))
    grade_id: Mapped[str] = mapped_column(String(200))
    score: Mapped[float | None] = mapped_column(Float)  # None: waits for manual grading
    max_score: Mapped[float] = mapped_column(Float)
    hidden: Mapped[bool] = mapped_column(default=False)  # the test cell held hidden tests
    manual: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    # The visible part of an autograder test (what the released notebook holds): whether it passed
    # and its failure message.  None: not an autograder test, or graded before this was recorded.
    visible_passed: Mapped[bool | None]
    visible_error: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)  # the instructor's comment, shown with the feedback
    # An override of an autograded cell: what the grader gave (``score`` holds the override's points).
    auto_score: Mapped[float | None] = mapped_column(Float)
    overridden: Mapped[bool] = mapped_column(default=False, server_default="0")

    submission: Mapped[Submission] = relationship(back_populates="cells")


class ScoreOverride(db.Model):
    """Staff's points for one autograded cell of one attempt, with their reason; applied again after a regrade."""

    __tablename__ = "score_override"
    __table_args__ = (UniqueConstraint("submission_id", "notebook", "grade_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id", ondelete="CASCADE"), index=True)
    notebook: Mapped[str] = mapped_column(String(200))
    grade_id: Mapped[str] = mapped_column(String(200))
    points: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class GradingJob(db.Model):
    """A request to grade a submission; the row, not the queue message, is the truth.

    A worker claims a job by a conditional UPDATE that sets a lease; a job whose lease
    ran out (its worker died) can be claimed again, up to ``max_attempts``.
    """

    __tablename__ = "grading_job"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(20), default="submit")  # submit | regrade
    state: Mapped[JobState] = mapped_column(
        Enum(JobState, name="job_state", native_enum=False, length=12), default=JobState.queued, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_until: Mapped[dt.datetime | None]
    published_at: Mapped[dt.datetime | None]  # last time a message was sent for it
    worker: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))

    submission: Mapped[Submission] = relationship()


class Extension(db.Model):
    """A learner's personal deadline for one assignment, granted by staff."""

    __tablename__ = "extension"
    __table_args__ = (UniqueConstraint("assignment_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    due_at: Mapped[dt.datetime]
    reason: Mapped[str | None] = mapped_column(Text)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
