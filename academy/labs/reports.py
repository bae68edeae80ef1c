"""GPU use for the admins' and the province's reports: per device, per course, per company."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from academy.catalog.models import Course
from academy.config import Settings
from academy.db import utcnow
from academy.labs.models import GpuDevice, GpuGradingHold, LabSession, LabState
from academy.labs.profiles import Profile, configured_profiles
from academy.labs.queue import device_seats, sync_inventory
from academy.labs.seats import Holder
from academy.users.models import Company, User


@dataclass(frozen=True)
class ProfileSeats:
    """Seats of one GPU profile on one device: how many it holds, are taken, are free now."""

    profile: Profile
    capacity: int  # on the device with nobody on it
    in_use: int
    free: int


@dataclass(frozen=True)
class HolderUse:
    """Who holds (part of) a device: the learner (or a grading job), the course, the profile, the memory counted."""

    lab: LabSession | None  # None for a grading job's seat
    learner: str  # "" for a grading job's seat
    course: Course
    profile: str  # the profile's key (pages show its title)
    memory_mb: int | None  # None when the device's memory is unknown
    exclusive: bool  # holds the whole device
    grading_job_id: int | None = None  # a grading job grading on the GPU (academy.labs.grading_seats)


@dataclass(frozen=True)
class DeviceUse:
    """One device for the admins: memory, reserve and memory in use (MiB; None when unknown), seats per GPU
    profile, holders, GPU-hours over 30 days.  ``present`` is False for a device gone (a MIG instance
    removed) whose holders still run."""

    device: GpuDevice
    present: bool
    memory_mb: int | None
    reserve_mb: int
    used_mb: int | None
    seats: list[ProfileSeats]
    holders: list[HolderUse]
    gpu_hours_30d: float

    @property
    def free_mb(self) -> int | None:
        """Memory still free for seats (after the reserve); None when unknown."""
        if self.memory_mb is None or self.used_mb is None:
            return None
        return max(self.memory_mb - self.reserve_mb - self.used_mb, 0)


def device_report(session: Session, settings: Settings, *, now: dt.datetime | None = None) -> list[DeviceUse]:
    """Each GPU: its memory and seats per GPU profile, who holds it now, its GPU-hours over the last 30 days.

    Devices no longer present are listed while labs still run on them.
    """
    now = now or utcnow()
    since = now - dt.timedelta(days=30)
    present = sync_inventory(session, settings)
    held = select(LabSession.device).where(LabSession.state.in_((LabState.starting, LabState.running)))
    gone = list(session.scalars(select(GpuDevice).where(GpuDevice.present.is_(False), GpuDevice.index.in_(held))
                                .order_by(GpuDevice.index)))
    devices = present + gone
    gpu_profiles = [p for p in configured_profiles(settings).values() if p.uses_gpu]
    report = []
    for device, seats in zip(devices, device_seats(session, settings, devices), strict=True):
        hours = 0.0
        for row in session.scalars(select(LabSession).where(LabSession.device == device.index)):
            if row.started_at is None:
                continue
            start = max(row.started_at, since)
            end = row.stopped_at or now
            if end > start:
                hours += (end - start).total_seconds() / 3600 * max(row.gpus, 1)
        report.append(DeviceUse(
            device=device, present=device.present, memory_mb=device.memory_mb, reserve_mb=seats.reserve_mb,
            used_mb=seats.used_mb,
            seats=[ProfileSeats(profile=p, capacity=seats.capacity(p), in_use=seats.in_use(p),
                                free=seats.free_seats(p)) for p in gpu_profiles],
            holders=[_holder_use(h) for h in seats.holders],
            gpu_hours_30d=hours))
    return report


def _holder_use(holder: Holder) -> HolderUse:
    held = holder.lab
    if isinstance(held, GpuGradingHold):
        return HolderUse(lab=None, learner="", course=held.course, profile=held.profile, memory_mb=holder.memory_mb,
                         exclusive=holder.exclusive, grading_job_id=held.grading_job_id)
    return HolderUse(lab=held, learner=held.user.name, course=held.course, profile=held.profile,
                     memory_mb=holder.memory_mb, exclusive=holder.exclusive)


@dataclass
class CourseUsage:
    course: Course
    sessions: int
    learners: int
    gpu_hours: float


def gpu_usage_by_course(session: Session, *, now: dt.datetime | None = None) -> list[CourseUsage]:
    """GPU-hours per course (all time), for the admins' report."""
    by_course: dict[int, list[LabSession]] = {}
    for row in session.scalars(select(LabSession).where(LabSession.gpus > 0, LabSession.started_at.is_not(None))):
        by_course.setdefault(row.course_id, []).append(row)
    usage = []
    for course_id, rows in by_course.items():
        course = session.get(Course, course_id)
        if course is not None:
            usage.append(CourseUsage(course=course, sessions=len(rows), learners=len({r.user_id for r in rows}),
                                     gpu_hours=sum(r.gpu_seconds(now) for r in rows) / 3600))
    return sorted(usage, key=lambda u: -u.gpu_hours)


@dataclass
class CompanyUsage:
    company: str | None  # None: the learners who gave no company
    learners: int
    gpu_hours: float


def gpu_usage_by_company(session: Session, *, now: dt.datetime | None = None) -> list[CompanyUsage]:
    """GPU-hours per learners' company (all time), for the province's reports; one row per company even where
    two share a name (they differ by business number)."""
    by_company: dict[int | None, tuple[str | None, set[int], float]] = {}
    rows = session.execute(select(LabSession, Company.id, Company.name).join(User, User.id == LabSession.user_id)
                           .outerjoin(Company, Company.id == User.company_id)
                           .where(LabSession.gpus > 0, LabSession.started_at.is_not(None)))
    for lab, company_id, name in rows:
        _name, learners, hours = by_company.get(company_id, (name, set(), 0.0))
        learners.add(lab.user_id)
        by_company[company_id] = (name, learners, hours + lab.gpu_seconds(now) / 3600)
    return sorted((CompanyUsage(company=name, learners=len(learners), gpu_hours=hours)
                   for name, learners, hours in by_company.values()),
                  key=lambda u: (-u.gpu_hours, u.company or ""))
