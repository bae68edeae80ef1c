"""Plain JSON shapes of rows, shared by the API handlers and the OpenAPI schemas."""

from __future__ import annotations

from typing import Any

from academy.catalog.models import Course, Track
from academy.enrollment.models import Cohort, Enrollment
from academy.users.models import User


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role.value,
        "company": (
            {"name": user.company.name, "business_number": user.company.business_number}
            if user.company else None
        ),
        "region": user.region,
        "industry": user.industry,
        "job_role": user.job_role,
        "locale": user.locale,
        "created_at": _iso(user.created_at),
    }


def course_json(course: Course) -> dict[str, Any]:
    return {
        "id": course.slug,
        "title": {"ko": course.title_ko, "en": course.title_en},
        "hours": course.hours,
        "lab_profile": course.lab_profile,
        "gpu_hour_quota": course.gpu_hour_quota,
        "assignments": [
            {"id": a.slug, "title": {"ko": a.title_ko, "en": a.title_en}, "max_score": a.max_score,
             "due_days": a.due_days}
            for a in course.assignments if a.active
        ],
    }


def cohort_json(cohort: Cohort) -> dict[str, Any]:
    return {
        "id": cohort.id,
        "track": cohort.track.slug,
        "name": cohort.name,
        "starts_at": _iso(cohort.starts_at),
        "ends_at": _iso(cohort.ends_at),
        "enroll_closes_at": _iso(cohort.enroll_closes_at),
        "capacity": cohort.capacity,
        "seats_left": cohort.seats_left,
        "requires_approval": cohort.requires_approval,
    }


def track_json(track: Track, cohorts: list[Cohort]) -> dict[str, Any]:
    return {
        "id": track.slug,
        "title": {"ko": track.title_ko, "en": track.title_en},
        "description": {"ko": track.description_ko, "en": track.description_en},
        "courses": [course_json(c) for c in track.courses if c.active],
        "open_cohorts": [cohort_json(c) for c in cohorts],
    }


def enrollment_json(enrollment: Enrollment, waitlist_position: int | None) -> dict[str, Any]:
    return {
        "id": enrollment.id,
        "cohort": cohort_json(enrollment.cohort),
        "status": enrollment.status.value,
        "waitlist_position": waitlist_position,
        "requested_at": _iso(enrollment.requested_at),
        "updated_at": _iso(enrollment.updated_at),
    }
