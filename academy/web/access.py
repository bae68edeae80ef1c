"""Access rules for views.

Every view carries exactly one rule, set by one of these decorators; the route
matrix test fails for a view that has none, so a new route cannot ship unguarded.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, request
from flask_login import current_user

from academy.users.models import Role

F = TypeVar("F", bound=Callable[..., Any])

ACCESS_ATTR = "_academy_access"


def _mark(view: Callable[..., Any], rule: tuple[str, ...]) -> None:
    setattr(view, ACCESS_ATTR, rule)


def public(view: F) -> F:
    """Anyone, signed in or not."""
    _mark(view, ("public",))
    return view


def anonymous_only(view: F) -> F:
    """Pages for signed-out visitors (login, registration); signed-in users are sent home."""
    from flask import redirect, url_for

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user.is_authenticated:
            return redirect(url_for("dashboard.index"))
        return view(*args, **kwargs)

    _mark(wrapper, ("anonymous",))
    return wrapper  # type: ignore[return-value]


def roles_required(*roles: Role) -> Callable[[F], F]:
    """Signed-in users with one of ``roles`` (all roles when none are given)."""
    allowed = set(roles) or set(Role)

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from academy.extensions import login_manager

            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in allowed:
                abort(403)
            return view(*args, **kwargs)

        _mark(wrapper, ("roles", *sorted(r.value for r in allowed)))
        return wrapper  # type: ignore[return-value]

    return decorator


login_required = roles_required()
admin_required = roles_required(Role.admin)
staff_required = roles_required(Role.instructor, Role.admin)


def contact_company() -> Any:
    """The company the signed-in user is the contact of (None: none), asked once per request."""
    from flask import g

    from academy.companies.services import company_of
    from academy.extensions import db

    if "contact_company" not in g:
        g.contact_company = company_of(db.session, current_user) if current_user.is_authenticated else None
    return g.contact_company


def company_contact_required(view: F) -> F:
    """Signed-in company contacts (an approved binding to one company; see academy.companies)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from academy.extensions import login_manager

        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if contact_company() is None:
            abort(403)
        return view(*args, **kwargs)

    _mark(wrapper, ("company",))
    return wrapper  # type: ignore[return-value]


def token_scope(scope: str) -> Callable[[F], F]:
    """API views: a valid personal access token carrying ``scope``."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from academy.api.auth import authenticate_request

            authenticate_request(request.headers.get("Authorization"), scope)
            return view(*args, **kwargs)

        _mark(wrapper, ("token", scope))
        return wrapper  # type: ignore[return-value]

    return decorator


def oauth_endpoint(view: F) -> F:
    """OpenID Connect endpoints that authenticate the caller themselves (client secret or bearer token)."""
    _mark(view, ("oauth",))
    return view


def hub_service(view: F) -> F:
    """Calls from the JupyterHub the portal drives: ``Authorization: token <ACADEMY_HUB_API_TOKEN>``."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import hmac

        from flask import current_app

        settings = current_app.config["ACADEMY_SETTINGS"]
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if not settings.labs_enabled or scheme.lower() not in ("token", "bearer") or not presented:
            abort(401)
        expected = settings.resolved_hub_secret("api_token")
        if not hmac.compare_digest(presented.strip().encode(), expected.encode()):
            abort(403)
        return view(*args, **kwargs)

    _mark(wrapper, ("hub-service",))
    return wrapper  # type: ignore[return-value]


def access_rule(view: Callable[..., Any]) -> tuple[str, ...] | None:
    """The rule a view carries, or None when it has none."""
    return getattr(view, ACCESS_ATTR, None)
