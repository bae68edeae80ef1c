"""Statistics pages for admins: exports of each figure and rebuilding the figures now.

The dashboard itself is the admin's home (``admin.home`` renders :func:`render_dashboard`).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from academy.errors import AcademyError, NotFound
from academy.extensions import db
from academy.i18n import current_locale
from academy.stats import export, page, queries
from academy.stats.refresh import last_refresh
from academy.web.access import admin_required
from academy.web.security import safe_next_path

bp = Blueprint("stats", __name__, url_prefix="/admin/stats")


def _dimension() -> str:
    dimension = request.args.get("by") or "region"
    return queries.check_dimension(dimension)


def render_dashboard(counts: dict[str, int]) -> Any:
    """The statistics dashboard for the filters in the query string (a bad filter: the message, no figures)."""
    locale = current_locale()
    state = last_refresh(db.session)
    if state is None:  # never built (a new installation): build it now, it is small then
        page.recount(db.session)
        db.session.commit()
        state = last_refresh(db.session)
    options = page.filter_options(db.session, locale, state.refreshed_at if state else None,
                                  current_app.extensions.setdefault("academy.stats_filter_options", {}))
    error, status = None, 200
    dashboard = None
    try:
        filters = queries.parse_filters(db.session, request.args)
        dashboard = page.cached(db.session, filters, _dimension(), locale=locale)
        db.session.commit()  # the figures kept for the next view
    except AcademyError as exc:
        error, status = str(exc), exc.status_code
        filters = queries.Filters()
    return render_template("stats/dashboard.html", counts=counts, dashboard=dashboard, error=error,
                           filters=filters, raw=request.args, options=options, state=state,
                           stage_labels=page.stage_labels(), stages=queries.STAGES,
                           dimensions=[(d, queries.dimension_label(d)) for d in queries.DIMENSIONS]), \
        status


@bp.route("/export/<name>.<any(csv, xlsx):fmt>")
@admin_required
def export_table(name: str, fmt: str) -> Any:
    """One figure of the dashboard as CSV or XLSX, for the same filters."""
    if name not in page.TABLES:
        raise NotFound(_("There is no such table."))
    filters = queries.parse_filters(db.session, request.args)
    table = page.cached(db.session, filters, _dimension(), locale=current_locale()).table(name)
    db.session.commit()
    data, mimetype = export.encode(table, fmt)
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="academy-{table.name}.{fmt}"'
    return response


@bp.route("/refresh", methods=["POST"])
@admin_required
def refresh() -> Any:
    """Rebuild the figures now (they are rebuilt every ten minutes anyway)."""
    try:
        report = page.recount(db.session)
    except AcademyError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        db.session.commit()
        flash(_("The figures were counted again (%(s).1f s).", s=report.seconds), "success")
    return redirect(safe_next_path(request.form.get("next")) or url_for("admin.home"))
