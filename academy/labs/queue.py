"""Who may open a lab, the GPU inventory, the fair waiting line and GPU-hour quotas.

The database is the source of truth for who holds which GPU and who waits, so a portal restart
loses no place in line.  Functions flush; the view or job that called them commits.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
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
from academy.labs.models import ACTIVE_STATES, GpuDevice, GpuGradingHold, LabSession, LabState
from academy.labs.profiles import Profile, configured_profiles
from academy.labs.seats import DeviceSeats, best_fit, fits_somewhere
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


def device_seats(session: Session, settings: Settings, devices: Sequence[GpuDevice]) -> list[DeviceSeats]:
    """The seats of ``devices`` with their holders, in the order given: labs starting or running on them, and
    grading jobs' seats not yet lapsed (``GpuGradingHold``)."""
    profiles = configured_profiles(settings)
    seats = {d.index: _no_holders(d, settings) for d in devices}
    holders = session.scalars(select(LabSession).where(
        LabSession.device.in_(list(seats)), LabSession.state.in_((LabState.starting, LabState.running)))
        .order_by(LabSession.id))
    for lab in holders:
        seats[lab.device or ""].add(lab, profiles)
    for hold in session.scalars(select(GpuGradingHold).where(
            GpuGradingHold.device.in_(list(seats)), GpuGradingHold.expires_at > utcnow()).order_by(GpuGradingHold.id)):
        seats[hold.device].add(hold, profiles)
    return list(seats.values())


def _no_holders(device: GpuDevice, settings: Settings) -> DeviceSeats:
    return DeviceSeats(index=device.index, name=device.name, memory_mb=device.memory_mb,
                       reserve_mb=settings.gpu_reserve_mb, present=device.present)


def cluster_gpus(settings: Settings) -> bool:
    """``ACADEMY_GPU_DEVICES=cluster``: the hub's cluster (Kubernetes, Slurm) hands out GPUs, not the portal."""
    return (settings.gpu_devices or "").strip().lower() == "cluster"


def free_device(session: Session, settings: Settings, profile: Profile) -> str | None:
    """A device ``profile`` may take now (``academy.labs.seats.best_fit``), or None when none is free for it.

    ``""`` means "start without a local device": the cluster chooses one, or this machine has no GPU
    at all and the lab runs on the CPU.
    """
    if cluster_gpus(settings):
        return ""
    devices = sync_inventory(session, settings)
    if not devices:
        return ""
    seat = best_fit(device_seats(session, settings, devices), profile)
    return seat.index if seat is not None else None


def gpu_fits(session: Session, settings: Settings, profile: Profile) -> bool:
    """False when no GPU here could ever hold a lab of ``profile``: it asks more memory than any device has.

    True for CPU profiles, on a cluster (the cluster decides) and on a machine without GPUs (the lab runs on
    the CPU).  The launch refuses such a profile instead of queueing the learner for ever.
    """
    if not profile.uses_gpu or cluster_gpus(settings):
        return True
    devices = sync_inventory(session, settings)
    if not devices:
        return True
    return fits_somewhere((_no_holders(d, settings) for d in devices), profile)  # capacity: holders do not count


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
    """Hand free devices and seats to the people in line, in line order.

    The head waits for what it needs.  Behind a waiter who waits for a whole device nobody takes a
    whole device first; a waiter for a seat may still take one that fits on a device already shared
    (no device is empty while a whole-device waiter waits).  A waiter whose profile no present device
    can hold (more memory than any has: a MIG device it fitted on is gone) fails with ``too_big``
    instead of waiting for ever.
    """
    known = configured_profiles(settings)
    line = waiting_line(session)
    if not line:
        return
    devices = [] if cluster_gpus(settings) else sync_inventory(session, settings)
    seats = device_seats(session, settings, devices) if devices else []  # kept up to date below
    whole_device_waiting = False
    for waiting in line:
        profile = known.get(waiting.profile)
        if profile is None:
            close_lab(waiting, LabState.failed, "profile_removed")
            continue
        if not devices:  # the cluster chooses the device, or there is no GPU here
            waiting.device = None
            if not cluster_gpus(settings):
                waiting.gpus = 0  # no GPU on this machine: a CPU lab, not metered as GPU time
            send_start(session, waiting)
            continue
        if whole_device_waiting and profile.exclusive:
            continue  # the whole-device waiter ahead comes first
        seat = best_fit(seats, profile)
        if seat is None:
            if not fits_somewhere(seats, profile):
                close_lab(waiting, LabState.failed, "too_big")
            elif profile.exclusive:
                whole_device_waiting = True
            continue
        waiting.device, waiting.gpu_memory_mb = seat.index, seat.seat_memory_mb(profile)
        send_start(session, waiting)
        seat.add(waiting, known)  # the next waiter sees this seat taken


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
