"""Browsing the catalog: tracks, their courses and open cohorts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from flask_login import current_user
from sqlalchemy import select

from academy.catalog.services import list_tracks
from academy.enrollment.models import Enrollment, EnrollmentStatus
from academy.enrollment.services import active_enrollment_in_track, open_cohorts
from academy.extensions import db
from academy.permissions import can_manage_course
from academy.web.access import public
from academy.web.loaders import get_course_or_404, get_track_or_404

bp = Blueprint("catalog", __name__)


@bp.route("/tracks")
@public
def index() -> Any:
    """All tracks with their courses."""
    return render_template("catalog/index.html", tracks=list_tracks(db.session))


@bp.route("/tracks/<slug>")
@public
def track(slug: str) -> Any:
    """A track: its courses, and the cohorts one can join."""
    track = get_track_or_404(slug)
    cohorts = open_cohorts(db.session, track.id)
    mine: dict[int, Enrollment] = {}
    if current_user.is_authenticated and cohorts:
        rows = db.session.scalars(
            select(Enrollment).where(
                Enrollment.user_id == current_user.id,
                Enrollment.cohort_id.in_([c.id for c in cohorts]),
            )
        )
        mine = {e.cohort_id: e for e in rows}
    return render_template("catalog/track.html", track=track, cohorts=cohorts, mine=mine)


@bp.route("/courses/<slug>")
@public
def course(slug: str) -> Any:
    """A course: description, hours, lab profile and its assignments (links for its staff and learners)."""
    course = get_course_or_404(slug)
    staff = can_manage_course(current_user, course) if current_user.is_authenticated else False
    held = active_enrollment_in_track(db.session, current_user.id, course.track_id) \
        if current_user.is_authenticated and not staff else None
    enrolled = held is not None and held.status is EnrollmentStatus.enrolled
    return render_template("catalog/course.html", course=course, staff=staff, linked=staff or enrolled)
