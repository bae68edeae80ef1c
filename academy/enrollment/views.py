"""Learner enrollment actions: join a cohort, withdraw, see my enrollments."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from academy.enrollment import services
from academy.enrollment.models import EnrollmentStatus
from academy.errors import AcademyError
from academy.extensions import db
from academy.web.access import login_required
from academy.web.loaders import get_cohort_or_404, get_enrollment_or_404

bp = Blueprint("enrollment", __name__)


@bp.route("/cohorts/<id:cohort_id>/enroll", methods=["POST"])
@login_required
def enroll(cohort_id: int) -> Any:
    """Ask to join a cohort; the result (enrolled, waitlisted, pending) is flashed."""
    cohort = get_cohort_or_404(cohort_id)
    try:
        enrollment = services.request_enrollment(db.session, cohort, current_user)
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(url_for("catalog.track", slug=cohort.track.slug))
    db.session.commit()
    if enrollment.status is EnrollmentStatus.enrolled:
        flash(_("You are enrolled in %(cohort)s.", cohort=cohort.name), "success")
    elif enrollment.status is EnrollmentStatus.waitlisted:
        position = services.waitlist_position(db.session, enrollment)
        flash(_("The cohort is full. You are number %(n)d on the waitlist.", n=position or 0), "warning")
    else:
        flash(_("Your request was sent. An administrator will review it."), "info")
    return redirect(url_for("dashboard.index"))


@bp.route("/enrollments")
@login_required
def mine() -> Any:
    """My enrollments, with the history of each."""
    rows = services.enrollments_of(db.session, current_user)
    positions = {e.id: services.waitlist_position(db.session, e) for e in rows}
    return render_template("enrollment/mine.html", enrollments=rows, positions=positions)


@bp.route("/enrollments/<id:enrollment_id>/withdraw", methods=["POST"])
@login_required
def withdraw(enrollment_id: int) -> Any:
    """Withdraw from a cohort, its waitlist or its approval queue."""
    enrollment = get_enrollment_or_404(enrollment_id, owner_id=current_user.id)
    try:
        services.withdraw(db.session, enrollment, actor=current_user)
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        db.session.commit()
        flash(_("You have withdrawn from %(cohort)s.", cohort=enrollment.cohort.name), "info")
    return redirect(url_for("enrollment.mine"))
