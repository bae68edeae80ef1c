"""``get_..._or_404`` loaders used by views."""

from __future__ import annotations

from flask import abort
from sqlalchemy import select

from academy.catalog.models import Assignment, Course, Track
from academy.enrollment.models import Cohort, Enrollment
from academy.extensions import db


def get_track_or_404(slug: str) -> Track:
    """The active track with this slug, or a 404."""
    track = db.session.scalar(select(Track).where(Track.slug == slug, Track.active.is_(True)))
    if track is None:
        abort(404)
    return track


def get_course_or_404(slug: str) -> Course:
    """The active course with this slug, or a 404."""
    course = db.session.scalar(select(Course).where(Course.slug == slug, Course.active.is_(True)))
    if course is None:
        abort(404)
    return course


def get_cohort_or_404(cohort_id: int) -> Cohort:
    """The cohort with this id, or a 404."""
    cohort = db.session.get(Cohort, cohort_id)
    if cohort is None:
        abort(404)
    return cohort


def get_enrollment_or_404(enrollment_id: int, *, owner_id: int | None = None) -> Enrollment:
    """The enrollment with this id (and this owner, when given), or a 404.

    Scoping by owner answers 404 rather than 403, so ids of others' rows reveal nothing.
    """
    enrollment = db.session.get(Enrollment, enrollment_id)
    if enrollment is None or (owner_id is not None and enrollment.user_id != owner_id):
        abort(404)
    return enrollment


def get_assignment_or_404(assignment_id: int) -> Assignment:
    """The assignment, offered now in an active course, or a 404."""
    assignment = db.session.get(Assignment, assignment_id)
    if assignment is None or not assignment.active or not assignment.course.active:
        abort(404)
    return assignment
