"""JSON API v1: thin handlers over the same services the pages use.

Authentication is by personal access token only (no cookies), so the API is exempt
from CSRF; each handler names the scope it needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from flask import Blueprint, jsonify, request
from flask_babel import gettext as _

from academy.api.auth import api_user
from academy.api.openapi import openapi_document
from academy.api.serializers import cohort_json, enrollment_json, track_json, user_json
from academy.catalog.services import list_tracks
from academy.enrollment import services as enrollment_services
from academy.enrollment.models import Cohort
from academy.errors import NotFound, PermissionDenied, ValidationFailed
from academy.extensions import csrf, db, limiter
from academy.web.access import public, token_scope
from academy.web.security import is_valid_id

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)
T = TypeVar("T")
limiter.limit("600 per minute")(bp)


@bp.route("/openapi.json")
@public
def openapi() -> Any:
    """The OpenAPI 3.1 description of this API."""
    return jsonify(openapi_document())


@bp.route("/certificates/<code>")
@public
def certificate(code: str) -> Any:
    """What a certificate states, whether it is valid, and its signed credential (no token needed)."""
    from academy.certificates import services as certificate_services

    return jsonify(certificate_services.public_json(certificate_services.get_by_code(db.session, code)))


def _stats(dimension: str | None) -> Any:
    from academy.i18n import current_locale
    from academy.stats import queries
    from academy.stats.refresh import last_refresh

    user = api_user()
    if not user.is_admin:
        raise PermissionDenied(_("Only administrators may read the academy's statistics."))
    if dimension is not None:
        queries.check_dimension(dimension)
    _known_parameters(*queries.FILTER_KEYS)
    empty = [key for key in queries.FILTER_KEYS if key in request.args and not request.args[key].strip()]
    if empty:
        raise ValidationFailed(_("Leave out a filter you do not use instead of sending it empty: %(names)s.",
                                 names=", ".join(empty)), field=empty[0])
    filters = queries.parse_filters(db.session, request.args)
    body = queries.summary(db.session, filters, dimension, locale=current_locale())
    state = last_refresh(db.session)
    body["refreshed_at"] = None if state is None else state.refreshed_at.isoformat()
    return jsonify(body)


@bp.route("/stats/funnel")
@token_scope("stats:read")
def stats_funnel() -> Any:
    """The completion funnel for the filters in the query string (admins)."""
    return _stats(None)


@bp.route("/stats/by/<dimension>")
@token_scope("stats:read")
def stats_by(dimension: str) -> Any:
    """The funnel for each value of a dimension (admins)."""
    return _stats(dimension)


@bp.route("/company/employees")
@token_scope("company:read")
def company_employees() -> Any:
    """The token owner's company's employees with their learning (company contacts), a page at a time."""
    from flask import current_app

    from academy.companies.services import company_of, employees_report
    from academy.i18n import current_locale

    company = company_of(db.session, api_user())
    if company is None:
        raise PermissionDenied(_("Only a company's contact may read its employees."))
    _known_parameters("page", "per_page", "q", "track")
    page, per_page = _paging()
    track = request.args.get("track")
    track_id = None
    if track:
        if not track.isdigit() or len(track) > 9 or int(track) < 1:
            raise ValidationFailed(_("There is no such track."), field="track")
        track_id = int(track)
    lines, total = employees_report(db.session, company.id, locale=current_locale(),
                                    search=(request.args.get("q") or "")[:100], track_id=track_id, page=page,
                                    per_page=per_page)
    base = current_app.config["ACADEMY_SETTINGS"].base_url
    return jsonify({"company": {"name": company.name, "business_number": company.business_number},
                    "items": [line.as_json(base) for line in lines],
                    "page": page, "per_page": per_page, "total": total})


def _known_parameters(*names: str) -> None:
    """Refuse a query parameter the endpoint does not know: a misspelt filter must not be silently ignored."""
    unknown = sorted(set(request.args) - set(names))
    if unknown:
        raise ValidationFailed(_("Unknown query parameter: %(names)s.", names=", ".join(unknown)),
                               field=unknown[0])


def _page_of(rows: Sequence[T]) -> tuple[Sequence[T], dict[str, int]]:
    """The requested page of ``rows`` (a whole list) and the ``page``, ``per_page`` and ``total`` to answer."""
    page, per_page = _paging()
    return rows[(page - 1) * per_page:page * per_page], {"page": page, "per_page": per_page, "total": len(rows)}


def _paging() -> tuple[int, int]:
    """``page`` (from 1) and ``per_page`` (1 to 200, 50 by default): how every list endpoint pages.

    Each list answers its items under its own key with ``page``, ``per_page`` and ``total`` beside them.
    """
    values = []
    for name, default, highest in (("page", 1, 1_000_000), ("per_page", 50, 200)):
        raw = request.args.get(name)
        if raw is None:
            values.append(default)
            continue
        if not raw.isdigit() or not 1 <= int(raw) <= highest:
            raise ValidationFailed(_("'%(name)s' must be a whole number from 1 to %(highest)d.", name=name,
                                     highest=highest), field=name)
        values.append(int(raw))
    return values[0], values[1]


@bp.route("/me")
@token_scope("profile:read")
def me() -> Any:
    """The token owner's profile."""
    return jsonify(user_json(api_user()))


@bp.route("/tracks")
@token_scope("catalog:read")
def tracks() -> Any:
    """Active tracks with their courses and open cohorts."""
    _known_parameters("page", "per_page")
    shown, paging = _page_of(list_tracks(db.session))
    return jsonify({"tracks": [track_json(t, enrollment_services.open_cohorts(db.session, t.id)) for t in shown],
                    **paging})


@bp.route("/enrollments", methods=["GET"])
@token_scope("enrollments:read")
def list_enrollments() -> Any:
    """The token owner's enrollments."""
    user = api_user()
    _known_parameters("page", "per_page")
    shown, paging = _page_of(enrollment_services.enrollments_of(db.session, user))
    return jsonify({"enrollments": [
        enrollment_json(e, enrollment_services.waitlist_position(db.session, e)) for e in shown
    ], **paging})


@bp.route("/enrollments", methods=["POST"])
@token_scope("enrollments:write")
def create_enrollment() -> Any:
    """Ask to join a cohort: ``{"cohort_id": 3}``."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("cohort_id"), int) \
            or isinstance(payload.get("cohort_id"), bool):
        raise ValidationFailed(_("Send a JSON object with an integer 'cohort_id'."), field="cohort_id")
    cohort = db.session.get(Cohort, payload["cohort_id"]) if is_valid_id(payload["cohort_id"]) else None
    if cohort is None:
        raise NotFound(_("No such cohort."))
    user = api_user()
    try:
        enrollment = enrollment_services.request_enrollment(db.session, cohort, user)
    except Exception:
        db.session.rollback()
        raise
    db.session.commit()
    body = enrollment_json(enrollment, enrollment_services.waitlist_position(db.session, enrollment))
    return jsonify(body), 201


@bp.route("/cohorts/<id:cohort_id>")
@token_scope("catalog:read")
def cohort(cohort_id: int) -> Any:
    """One cohort with its seats."""
    row = db.session.get(Cohort, cohort_id)
    if row is None:
        raise NotFound(_("No such cohort."))
    return jsonify(cohort_json(row))
