"""Site-wide pages: the landing page, the language switch and the health check."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user
from sqlalchemy import text

from academy.catalog.services import list_tracks
from academy.extensions import db
from academy.i18n import SUPPORTED_LOCALES
from academy.users.services import set_locale
from academy.web.access import public
from academy.web.security import safe_next_path

bp = Blueprint("web", __name__)


@bp.route("/")
@public
def index() -> Any:
    """The landing page: what the academy is, and its tracks."""
    return render_template("index.html", tracks=list_tracks(db.session))


@bp.route("/lang/<code>", methods=["POST"])
@public
def set_language(code: str) -> Any:
    """Switch the interface language and remember it (in the session and on the account)."""
    if code in SUPPORTED_LOCALES:
        session["lang"] = code
        if current_user.is_authenticated:
            set_locale(current_user, code)
            db.session.commit()
    return redirect(safe_next_path(request.form.get("next")) or url_for("web.index"))


@bp.route("/healthz")
@public
def healthz() -> Any:
    """Liveness and database reachability, for load balancers and monitoring."""
    db.session.execute(text("SELECT 1"))
    return jsonify({"status": "ok"})
