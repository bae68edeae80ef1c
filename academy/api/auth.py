"""Bearer-token authentication for the API."""

from __future__ import annotations

from flask import g
from flask_babel import gettext as _

from academy.extensions import db
from academy.users.models import User
from academy.users.tokens import InvalidToken, user_for_token


def authenticate_request(authorization: str | None, scope: str) -> User:
    """Check an ``Authorization: Bearer`` header for ``scope`` and remember the user in ``g``.

    Raises InvalidToken (401) or PermissionDenied (403).
    """
    if not authorization or not authorization.lower().startswith("bearer "):
        raise InvalidToken(_("Send a personal access token as 'Authorization: Bearer <token>'."))
    user = user_for_token(db.session, authorization[7:].strip(), scope)
    db.session.commit()  # keep last_used_at even when the view fails later
    g.api_user = user
    return user


def api_user() -> User:
    """The user the current API request authenticated as."""
    return g.api_user
