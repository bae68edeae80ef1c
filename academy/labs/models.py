"""Lab sessions (one learner's JupyterHub server, from queue to stop), the GPU inventory and grading's GPU seats.

A session row is the unit of everything labs: the fair GPU queue (rows in ``queued``), device
hand-out (``device`` of rows in ``starting``/``running``), GPU-hour metering (``started_at`` to
``stopped_at`` as the hub reported them) and the admin reports.  Rows are never deleted.

A grading job of a GPU course holds its seat in a ``GpuGradingHold`` row (``academy.labs.grading_seats``),
counted with the labs' holders so that labs and grading never oversubscribe a device.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from academy.catalog.models import Assignment, Course
from academy.db import utcnow
from academy.extensions import db
from academy.users.models import User


class LabState(enum.Enum):
    queued = "queued"  # waiting for a GPU
    starting = "starting"  # the hub is spawning
    running = "running"
    stopped = "stopped"
    failed = "failed"
    cancelled = "cancelled"  # left the queue (took CPU, gave up, or stopped polling)

    @property
    def active(self) -> bool:
        return self in (LabState.queued, LabState.starting, LabState.running)


ACTIVE_STATES = (LabState.queued, LabState.starting, LabState.running)


class LabSession(db.Model):
    __tablename__ = "lab_session"
    __table_args__ = (
        # One active lab per person: two browser tabs launching at once cannot start two servers.
        Index("uq_lab_session_active_user", "user_id", unique=True,
              postgresql_where=text("state IN ('queued', 'starting', 'running')"),
              sqlite_where=text("state IN ('queued', 'starting', 'running')")),
        Index("ix_lab_session_state_queued_at", "state", "queued_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id"), index=True)
    assignment_id: Mapped[int | None] = mapped_column(ForeignKey("assignment.id"))
    cohort_id: Mapped[int | None] = mapped_column(ForeignKey("cohort.id"))
    hub_user: Mapped[str] = mapped_column(String(80))
    profile: Mapped[str] = mapped_column(String(40))
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    device: Mapped[str | None] = mapped_column(String(40))  # a GPU index or a MIG device's UUID
    gpu_memory_mb: Mapped[int | None] = mapped_column(Integer)  # the seat granted on a shared device; None: whole
    state: Mapped[LabState] = mapped_column(
        Enum(LabState, name="lab_state", native_enum=False, validate_strings=True, length=20), default=LabState.queued
    )
    queued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    requested_at: Mapped[dt.datetime | None]  # when the portal asked the hub to start
    started_at: Mapped[dt.datetime | None]  # the hub's own start time of the server
    stopped_at: Mapped[dt.datetime | None]
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)  # the learner's page still polls
    warned_at: Mapped[dt.datetime | None]  # quota warning sent
    stop_reason: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    progress_step: Mapped[str | None] = mapped_column(String(20))  # the start step the learner is told about
    progress_message: Mapped[str | None] = mapped_column(Text)  # the hub's own last progress message
    start_sent_at: Mapped[dt.datetime | None]  # when the academy.start_lab job was last queued
    start_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    notebook_path: Mapped[str | None] = mapped_column(Text)

    user: Mapped[User] = relationship()
    course: Mapped[Course] = relationship()
    assignment: Mapped[Assignment | None] = relationship()

    def gpu_seconds(self, now: dt.datetime | None = None) -> float:
        """GPU time this session used (device-seconds), from the hub's start to its stop."""
        if not self.gpus or self.started_at is None:
            return 0.0
        end = self.stopped_at or (now or utcnow())
        return max((end - self.started_at).total_seconds(), 0.0) * self.gpus


class GpuDevice(db.Model):
    """A GPU the local hub may hand out (from NVML or the configured inventory)."""

    __tablename__ = "gpu_device"

    id: Mapped[int] = mapped_column(primary_key=True)
    index: Mapped[str] = mapped_column(String(40), unique=True)  # the CUDA_VISIBLE_DEVICES value ("0", "MIG-…")
    name: Mapped[str] = mapped_column(String(120))
    memory_mb: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(20))  # "nvml" or "configured"
    present: Mapped[bool] = mapped_column(default=True)
    seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class GpuGradingHold(db.Model):
    """A GPU seat held by a grading job while it grades (``academy.labs.grading_seats``).

    Counted by ``academy.labs.queue.device_seats`` like a running lab of ``profile`` granted ``gpu_memory_mb``
    (None: the whole device), until ``expires_at``: the grading worker's heartbeat moves it on while the job
    runs and the worker deletes the row when the job is done, so the seat of a worker killed mid-job lapses by
    itself.  Each attempt of a job holds its own row.
    """

    __tablename__ = "gpu_grading_hold"

    id: Mapped[int] = mapped_column(primary_key=True)
    device: Mapped[str] = mapped_column(String(40), index=True)  # GpuDevice.index: a GPU index or a MIG UUID
    profile: Mapped[str] = mapped_column(String(40))  # the lab profile whose seat it takes
    gpu_memory_mb: Mapped[int | None] = mapped_column(Integer)  # None: the whole device
    grading_job_id: Mapped[int] = mapped_column(ForeignKey("grading_job.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id"))
    worker: Mapped[str] = mapped_column(String(200))  # the grading worker's host:pid
    acquired_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)

    course: Mapped[Course] = relationship()
