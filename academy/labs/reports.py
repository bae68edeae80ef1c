"""GPU use for the admins' and the province's reports: per device, per course, per company."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from academy.catalog.models import Course
from academy.config import Settings
from academy.db import utcnow
from academy.labs.models import GpuDevice, LabSession, LabState
from academy.labs.queue import sync_inventory
from academy.users.models import Company, User


@dataclass
class DeviceUse:
    device: GpuDevice
    holders: list[LabSession]
    gpu_hours_30d: float


def device_report(session: Session, settings: Settings, *, now: dt.datetime | None = None) -> list[DeviceUse]:
    """Each GPU, who holds it now, and its GPU-hours over the last 30 days."""
    now = now or utcnow()
    since = now - dt.timedelta(days=30)
    devices = sync_inventory(session, settings)
    report = []
    for device in devices:
        rows = list(session.scalars(select(LabSession).where(LabSession.device == device.index)))
        holders = [r for r in rows if r.state in (LabState.starting, LabState.running)]
        hours = 0.0
        for row in rows:
            if row.started_at is None:
                continue
            start = max(row.started_at, since)
            end = row.stopped_at or now
            if end > start:
                hours += (end - start).total_seconds() / 3600 * max(row.gpus, 1)
        report.append(DeviceUse(device=device, holders=holders, gpu_hours_30d=hours))
    return report


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
    company: str
    learners: int
    gpu_hours: float


def gpu_usage_by_company(session: Session, *, now: dt.datetime | None = None) -> list[CompanyUsage]:
    """GPU-hours per learners' company (all time), for the province's reports."""
    by_company: dict[str, tuple[set[int], float]] = {}
    rows = session.execute(select(LabSession, Company.name).join(User, User.id == LabSession.user_id)
                           .outerjoin(Company, Company.id == User.company_id)
                           .where(LabSession.gpus > 0, LabSession.started_at.is_not(None)))
    for lab, company in rows:
        key = company or "—"
        learners, hours = by_company.get(key, (set(), 0.0))
        learners.add(lab.user_id)
        by_company[key] = (learners, hours + lab.gpu_seconds(now) / 3600)
    return sorted((CompanyUsage(company=k, learners=len(v[0]), gpu_hours=v[1]) for k, v in by_company.items()),
                  key=lambda u: -u.gpu_hours)
