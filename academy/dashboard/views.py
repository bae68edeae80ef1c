"""The learner dashboard page."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, current_app, render_template
from flask_babel import get_locale
from flask_login import current_user
from markupsafe import Markup

from academy import stamps
from academy.dashboard.kept import KeptPages
from academy.dashboard.services import build_dashboard, fresh_until
from academy.db import utcnow
from academy.extensions import db
from academy.web.access import login_required

bp = Blueprint("dashboard", __name__)


def kept_pages() -> KeptPages:
    """This process's kept dashboards (one store per app)."""
    return current_app.extensions.setdefault("academy.kept_dashboards", KeptPages())


@bp.route("/dashboard")
@login_required
def index() -> Any:
    """My tracks, courses and assignments, with status, deadlines and progress."""
    now = utcnow()
    user_id = current_user.id
    # The stamps are read before the data: a change committed after this read makes a new key.
    key = (user_id, str(get_locale()), stamps.read(db.session, (stamps.CATALOG, stamps.user_scope(user_id))))
    pages = kept_pages()
    content = pages.get(key, now)
    if content is None:
        content, until = build_content(user_id, now)
        pages.put(key, content, until, now)
    return render_template("dashboard/index.html", content=Markup(content))  # noqa: S704 - rendered above


def build_content(user_id: int, now: dt.datetime) -> tuple[str, dt.datetime | None]:
    """The middle of the learner's dashboard, rendered, and until when it stays true (``fresh_until``)."""
    from academy.certificates.services import certificates_of

    certificates = certificates_of(db.session, user_id)
    tracks = build_dashboard(db.session, user_id, now=now, certificates=certificates)
    return (render_template("dashboard/_content.html", certificates=certificates, tracks=tracks),
            fresh_until(tracks, now))
