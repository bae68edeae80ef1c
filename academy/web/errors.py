"""Error pages and JSON errors: a clear message, a request id, never a traceback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, g, jsonify, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from academy.errors import AcademyError


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _messages() -> dict[int, str]:
    return {
        400: _("The request could not be understood."),
        401: _("Please sign in first."),
        403: _("You do not have permission to do this."),
        404: _("The page you asked for does not exist."),
        405: _("This action is not allowed here."),
        409: _("This conflicts with the current state."),
        413: _("The upload is too large."),
        429: _("Too many attempts. Please wait a minute and try again."),
        500: _("Something went wrong on our side. The error has been logged."),
    }


# Headers an HTTP error carries that the answer must keep: the methods a 405 allows (RFC 9110
# §15.5.6), the challenge of a 401 (§15.5.2) and when to come back after a 429 or 503 (§10.2.3).
KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


def render_error(status: int, message: str | None = None, code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> Any:
    """Render an error as JSON for the API and as a page elsewhere, with ``headers`` added.

    Returns ``(body, status)``, or ``(body, status, headers)`` when there are headers to add.
    """
    text = message or _messages().get(status, _messages()[500])
    request_id = getattr(g, "request_id", None)
    if _wants_json():
        body = {"error": {"status": status, "code": code or str(status), "message": text}}
        if request_id:
            body["error"]["request_id"] = request_id
        rendered: Any = jsonify(body)
    else:
        rendered = render_template("error.html", status=status, message=text, request_id=request_id)
    return (rendered, status, dict(headers)) if headers else (rendered, status)


def _kept_headers(exc: HTTPException) -> dict[str, str]:
    """The headers of ``KEPT_HEADERS`` that ``exc`` (or the response it carries) sets."""
    source = exc.response.headers.items() if exc.response is not None else exc.get_headers()
    wanted = {name.lower(): name for name in KEPT_HEADERS}
    return {wanted[name.lower()]: value for name, value in source if name.lower() in wanted}


def init_app(app: Flask) -> None:
    """Register handlers for domain errors, HTTP errors, CSRF failures and crashes."""

    @app.errorhandler(AcademyError)
    def handle_domain_error(exc: AcademyError) -> Any:
        return render_error(exc.status_code, str(exc), exc.code, getattr(exc, "headers", None))

    @app.errorhandler(CSRFError)
    def handle_csrf(exc: CSRFError) -> Any:
        return render_error(400, _("The form expired or was sent from elsewhere. Please try again."), "csrf")

    @app.errorhandler(HTTPException)
    def handle_http(exc: HTTPException) -> Any:
        status = exc.code or 500
        headers = _kept_headers(exc)
        if status == 429:
            return render_error(429, None, "rate_limited", headers)
        return render_error(status, headers=headers)

    @app.errorhandler(Exception)
    def handle_crash(exc: Exception) -> Any:
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        from academy.extensions import db

        db.session.rollback()
        return render_error(500, None, "internal")
