"""Request ids and security headers, including a Content-Security-Policy with no inline script."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

from flask import Flask, Response, g, request
from werkzeug.routing import BaseConverter, ValidationError

_DIRECTIVES = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
]
CSP = "; ".join(_DIRECTIVES)


def csp_for(hub_browser_url: str | None) -> str:
    """The portal's CSP; with labs, forms may also lead to the hub's origin.

    Browsers apply ``form-action`` to the redirects that follow a form's POST: signing out answers
    with a redirect through the hub's logout page, which ``'self'`` alone would block (the browser
    would stay on the page, still showing the learner signed in).
    """
    if not hub_browser_url:
        return CSP
    parts = urlsplit(hub_browser_url)
    if not parts.scheme or not parts.netloc:
        return CSP
    hub = f"{parts.scheme}://{parts.netloc}"
    return "; ".join(f"form-action 'self' {hub}" if d == "form-action 'self'" else d for d in _DIRECTIVES)

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


MAX_ID = 2**31 - 1  # the largest id an INTEGER column holds on every supported database


class IdConverter(BaseConverter):
    """``<id:name>``: a positive row id that fits the database; anything else is a 404, not a 500."""

    regex = r"[1-9][0-9]{0,9}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValidationError()
        return number

    def to_url(self, value: object) -> str:
        return str(int(value))  # type: ignore[call-overload]


def is_valid_id(value: object) -> bool:
    """True for an int (not a bool) that can be a row id."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def init_app(app: Flask) -> None:
    """Assign a request id to each request and add security headers to each response."""
    app.url_map.converters["id"] = IdConverter

    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex[:16]

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        headers = response.headers
        settings = app.config.get("ACADEMY_SETTINGS")
        hub = settings.hub_browser_url if settings is not None and settings.labs_enabled else None
        headers.setdefault("Content-Security-Policy", csp_for(hub))
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if app.config.get("SESSION_COOKIE_SECURE"):
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if getattr(g, "request_id", None):
            headers["X-Request-ID"] = g.request_id
        return response


def safe_next_path(target: str | None) -> str | None:
    """Return ``target`` only when it is a path on this portal, else None.

    Refuses absolute URLs, scheme-relative ``//host`` forms, backslash tricks and
    control characters, which browsers may read as another host.
    """
    if not target:
        return None
    if any(ord(c) < 32 for c in target) or "\\" in target:
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
