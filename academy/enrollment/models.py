"""Enrollment rows: cohorts, a learner's place in one, and the history of changes."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    CheckConstraint,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.engine import ExecutionContext
from sqlalchemy.orm import Mapped, mapped_column, relationship

from academy.catalog.models import Track
from academy.db import utcnow
from academy.extensions import db
from academy.users.models import User


class EnrollmentStatus(enum.Enum):
    """Where a learner stands in a cohort."""

    pending = "pending"  # waiting for an admin's approval
    enrolled = "enrolled"  # holds a seat
    waitlisted = "waitlisted"  # approved or open, but the cohort was full
    withdrawn = "withdrawn"
    rejected = "rejected"


#: The statuses that hold or wait for a place.  A learner has at most one enrollment in
#: these statuses per track (the partial unique index ``uq_enrollment_active_track``);
#: a withdrawn or rejected row frees them to join another cohort of the track.
ACTIVE_STATUSES = (EnrollmentStatus.pending, EnrollmentStatus.enrolled, EnrollmentStatus.waitlisted)

# The same condition as SQL, for the partial index (statuses are stored as their names).
_ACTIVE_SQL = text("status IN ('pending', 'enrolled', 'waitlisted')")


class Cohort(db.Model):
    """One offering of a track: dates, capacity and whether joining needs approval.

    ``seats_taken`` is maintained by the enrollment services with a conditional UPDATE,
    which is what keeps concurrent enrollments from ever exceeding ``capacity``.
    """

    __tablename__ = "cohort"
    __table_args__ = (
        CheckConstraint("seats_taken >= 0", name="seats_nonnegative"),
        CheckConstraint("seats_taken <= capacity", name="seats_within_capacity"),
        UniqueConstraint("track_id", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("track.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime]
    enroll_closes_at: Mapped[dt.datetime | None]
    capacity: Mapped[int] = mapped_column(Integer)
    seats_taken: Mapped[int] = mapped_column(Integer, default=0)
    requires_approval: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: GPU-hours the labs opened through this cohort may use in all; None: no budget (``academy.labs.budgets``).
    gpu_budget_hours: Mapped[float | None] = mapped_column(Float)

    track: Mapped[Track] = relationship()

    @property
    def seats_left(self) -> int:
        return max(self.capacity - self.seats_taken, 0)


def _track_of_cohort(context: ExecutionContext) -> int | None:
    """Column default of ``enrollment.track_id``: the track of the row's cohort."""
    cohort_id = context.get_current_parameters().get("cohort_id")
    return context.connection.scalar(select(Cohort.track_id).where(Cohort.id == cohort_id))


class Enrollment(db.Model):
    """A learner's request for, or seat in, a cohort (one row per learner and cohort).

    ``track_id`` repeats the cohort's track so that the database itself can refuse a second
    active enrollment of one learner in the same track (two cohorts of one track at once):
    the partial unique index on ``(user_id, track_id)`` over active rows holds under
    concurrent requests on PostgreSQL and SQLite alike.  It is filled from the cohort when
    not given.
    """

    __tablename__ = "enrollment"
    __table_args__ = (
        UniqueConstraint("cohort_id", "user_id"),
        Index(
            "uq_enrollment_active_track", "user_id", "track_id", unique=True,
            sqlite_where=_ACTIVE_SQL, postgresql_where=_ACTIVE_SQL,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohort.id"), index=True)
    # Nullable only so that SQLite could add it in place (its migration must not rebuild the
    # table); it is filled from the cohort on every insert and by the migration.
    track_id: Mapped[int] = mapped_column(ForeignKey("track.id"), index=True, nullable=True, default=_track_of_cohort)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    status: Mapped[EnrollmentStatus] = mapped_column(
        Enum(EnrollmentStatus, name="enrollment_status", native_enum=False, length=20), index=True
    )
    # When the learner last asked to join: the waitlist is served in this order.
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    cohort: Mapped[Cohort] = relationship()
    user: Mapped[User] = relationship()
    events: Mapped[list[EnrollmentEvent]] = relationship(
        back_populates="enrollment", order_by="EnrollmentEvent.id", cascade="all, delete-orphan"
    )


class EnrollmentEvent(db.Model):
    """One change of an enrollment's status: who made it, when, and why."""

    __tablename__ = "enrollment_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollment.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    enrollment: Mapped[Enrollment] = relationship(back_populates="events")
