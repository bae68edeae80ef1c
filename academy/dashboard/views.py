"""The learner dashboard page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from flask_login import current_user

from academy.dashboard.services import build_dashboard
from academy.extensions import db
from academy.web.access import login_required

bp = Blueprint("dashboard", __name__)


@bp.route("/dashboard")
@login_required
def index() -> Any:
    """My tracks, courses and assignments, with status, deadlines and progress."""
    from academy.certificates.services import certificates_of

    certificates = certificates_of(db.session, current_user.id)
    return render_template("dashboard/index.html", certificates=certificates,
                           tracks=build_dashboard(db.session, current_user.id, certificates=certificates))
