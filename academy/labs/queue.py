"""Who may open a lab, the GPU inventory, the fair waiting line and GPU-hour quotas.

The database is the source of truth for who holds which GPU and who waits, so a portal restart
loses no place in line.  Functions flush; the view or job that called them commits.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from academy.catalog.models import Course
from academy.config import Settings
from academy.db import utcnow
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.errors import PermissionDenied
from academy.jobs import enqueue_after_commit
from academy.labs import gpu
from academy.labs.models import ACTIVE_STATES, GpuDevice, LabSession, LabState
from academy.labs.profiles import Profile, configured_profiles
from academy.permissions import can_manage_course
from academy.users.models import User

log = logging.getLogger(__name__)

START_TASK = "academy.start_lab"


# -- who may launch what ------------------------------------------------------------------------------------------

def lab_cohort(session: Session, user: User, course: Course) -> Cohort | None:
    """The cohort through which ``user`` takes ``course``; None for the course's staff.

    Raises PermissionDenied for anyone else.
    """
    cohort = session.scalar(
        select(Cohort).join(Enrollment, Enrollment.cohort_id == Cohort.id)
        .where(Enrollment.user_id == user.id, Enrollment.status == EnrollmentStatus.enrolled,
               Cohort.track_id == course.track_id)
        .order_by(Cohort.starts_at.desc()).limit(1)
    )
    if cohort is not None:
        return cohort
    if can_manage_course(user, course):
        return None
    raise PermissionDenied(_("Only learners enrolled in this course and its instructors can open its lab."))


def profile_choices(course: Course, settings: Settings) -> list[Profile]:
    """The course's profile, and CPU (always allowed, the way out of a GPU queue)."""
    known = configured_profiles(settings)
    names = [course.lab_profile] + (["cpu"] if course.lab_profile != "cpu" else [])
    return [known[name] for name in names if name in known]


def active_session(session: Session, user_id: int) -> LabSession | None:
    """The user's open lab (queued, starting or running), if any."""
    return session.scalar(select(LabSession).where(LabSession.user_id == user_id,
                                                   LabSession.state.in_(ACTIVE_STATES)))


# -- GPU-hour quotas ----------------------------------------------------------------------------------------------

def gpu_hours_used(session: Session, user_id: int, course_id: int, *, now: dt.datetime | None = None) -> float:
    """GPU-hours ``user_id`` used in ``course_id`` (running labs counted up to ``now``)."""
    rows = session.scalars(select(LabSession).where(
        LabSession.user_id == user_id, LabSession.course_id == course_id, LabSession.gpus > 0,
        LabSession.started_at.is_not(None)))
    return sum(row.gpu_seconds(now) for row in rows) / 3600.0


@dataclass
class Quota:
    hours: float
    used: float

    @property
    def left(self) -> float:
        return max(self.hours - self.used, 0.0)

    @property
    def exhausted(self) -> bool:
        return self.hours > 0 and self.used >= self.hours


def quota_for(session: Session, user: User, course: Course) -> Quota:
    """The course's GPU-hour quota and what ``user`` used of it."""
    return Quota(hours=float(course.gpu_hour_quota or 0.0), used=gpu_hours_used(session, user.id, course.id))


# -- the GPU inventory --------------------------------------------------------------------------------------------

def sync_inventory(session: Session, settings: Settings) -> list[GpuDevice]:
    """Bring the device table in line with NVML or the configured list; devices gone are kept, not present."""
    found = {d.index: d for d in gpu.inventory(settings.gpu_devices)}
    rows = {row.index: row for row in session.scalars(select(GpuDevice))}
    now = utcnow()
    for index, device in found.items():
        row = rows.get(index)
        if row is None:
            row = GpuDevice(index=index, name=device.name, memory_mb=device.memory_mb, source=device.source)
            session.add(row)
            rows[index] = row
        row.name, row.memory_mb, row.source, row.present, row.seen_at = (
            device.name, device.memory_mb, device.source, True, now)
    for index, row in rows.items():
        if index not in found:
            row.present = False
    session.flush()
    return [rows[i] for i in sorted(rows) if rows[i].present]


def device_load(session: Session, shared_profiles: set[str]) -> dict[str, tuple[int, int]]:
    """For each device in use: (exclusive holders, shared holders)."""
    load: dict[str, tuple[int, int]] = {}
    holders = session.execute(select(LabSession.device, LabSession.profile).where(
        LabSession.device.is_not(None), LabSession.state.in_((LabState.starting, LabState.running))))
    for device, profile in holders:
        exclusive, shared = load.get(device, (0, 0))
        if profile in shared_profiles:
            shared += 1
        else:
            exclusive += 1
        load[device] = (exclusive, shared)
    return load


def cluster_gpus(settings: Settings) -> bool:
    """``ACADEMY_GPU_DEVICES=cluster``: the hub's cluster (Kubernetes, Slurm) hands out GPUs, not the portal."""
    return (settings.gpu_devices or "").strip().lower() == "cluster"


def free_device(session: Session, settings: Settings, profile: Profile) -> str | None:
    """A device ``profile`` may take now, or None when every device is busy.

    ``""`` means "start without a local device": the cluster chooses one, or this machine has no GPU
    at all and the lab runs on the CPU.
    """
    if cluster_gpus(settings):
        return ""
    devices = sync_inventory(session, settings)
    if not devices:
        return ""
    load = device_load(session, {p.name for p in configured_profiles(settings).values() if p.shared})
    if profile.shared:
        # Fill a device already shared before opening another, so whole GPUs stay free for exclusive use.
        candidates = [(-load.get(d.index, (0, 0))[1], d.index) for d in devices
                      if load.get(d.index, (0, 0))[0] == 0 and load.get(d.index, (0, 0))[1] < profile.per_device]
    else:
        candidates = [(0, d.index) for d in devices if load.get(d.index, (0, 0)) == (0, 0)]
    return min(candidates)[1] if candidates else None


# -- the fair waiting line ----------------------------------------------------------------------------------------

def waiting_line(session: Session) -> list[LabSession]:
    """Everyone waiting for a GPU, in the order they are served.

    First come, first served within each cohort, and cohorts take turns: the first waiter of every
    cohort comes before the second waiter of any cohort, so one large class arriving together cannot
    starve a small one.
    """
    waiting = list(session.scalars(select(LabSession).where(LabSession.state == LabState.queued)
                                   .order_by(LabSession.queued_at, LabSession.id)))
    rank: dict[int | None, int] = {}
    keyed = []
    for row in waiting:
        rank[row.cohort_id] = rank.get(row.cohort_id, 0) + 1
        keyed.append(((rank[row.cohort_id], row.queued_at, row.id), row))
    return [row for _key, row in sorted(keyed, key=lambda item: item[0])]


def place_in_line(session: Session, lab: LabSession) -> int | None:
    """``lab``'s position in the waiting line (1 = next), None when it does not wait."""
    for position, row in enumerate(waiting_line(session), start=1):
        if row.id == lab.id:
            return position
    return None


def serve_queue(session: Session, settings: Settings) -> None:
    """Hand free devices to the people at the head of the line (in line order; no overtaking)."""
    known = configured_profiles(settings)
    for waiting in waiting_line(session):
        profile = known.get(waiting.profile)
        if profile is None:
            close_lab(waiting, LabState.failed, "profile_removed")
            continue
        device = free_device(session, settings, profile)
        if device is None:
            if not profile.shared:
                break  # the head waits for a whole GPU; nobody behind may take one first
            continue
        waiting.device = device or None
        if device == "" and not cluster_gpus(settings):
            waiting.gpus = 0  # no GPU on this machine: a CPU lab, not metered as GPU time
        send_start(session, waiting)
        session.flush()  # the next waiter sees this device taken


def send_start(session: Session, lab: LabSession, *, now: dt.datetime | None = None) -> None:
    """Mark ``lab`` as starting and queue the ``academy.start_lab`` job for it (sent when the caller commits).

    The learner's click is answered at once; the job asks the hub and follows the start.
    """
    lab.state = LabState.starting
    lab.requested_at = None
    lab.progress, lab.progress_step = 5, "requested"
    resend_start(session, lab, now=now)


def resend_start(session: Session, lab: LabSession, *, now: dt.datetime | None = None) -> None:
    """Queue ``academy.start_lab`` for ``lab`` (again), counting the sends (the sweep gives up after a few)."""
    lab.start_sent_at = now or utcnow()
    lab.start_attempts = (lab.start_attempts or 0) + 1
    enqueue_after_commit(session, START_TASK, lab.id)


def closing_values(lab: LabSession, state: LabState, reason: str, *, error: str | None = None,
                   at: dt.datetime | None = None) -> dict[str, Any]:
    """The columns that close ``lab`` in ``state`` (a stop never before the hub's start)."""
    stopped_at = at or utcnow()
    if lab.started_at is not None and stopped_at < lab.started_at:
        stopped_at = lab.started_at
    return {"state": state, "stop_reason": reason, "error": error, "stopped_at": stopped_at}


def close_lab(lab: LabSession, state: LabState, reason: str, *, error: str | None = None,
              at: dt.datetime | None = None) -> None:
    """Close ``lab`` in ``state`` (stopped, failed, cancelled) with the reason."""
    for name, value in closing_values(lab, state, reason, error=error, at=at).items():
        setattr(lab, name, value)
