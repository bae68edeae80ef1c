"""Bearer-token authentication for the API."""

from __future__ import annotations

from flask import g
from flask_babel import gettext as _

from academy.extensions import db
from academy.users.models import User
from academy.users.tokens import MissingToken, user_for_token


def authenticate_request(authorization: str | None, scope: str) -> User:
    """Check an ``Authorization: Bearer`` header for ``scope`` and remember the user in ``g``.

    Raises MissingToken or InvalidToken (401) or InsufficientScope (403), each with its
    ``WWW-Authenticate`` challenge.
    """
    token = authorization[7:].strip() if authorization and authorization.lower().startswith("bearer ") else ""
    if not token:
        raise MissingToken(_("Send a personal access token as 'Authorization: Bearer <token>'."))
    user = user_for_token(db.session, token, scope)
    db.session.commit()  # keep last_used_at even when the view fails later
    g.api_user = user
    return user


def api_user() -> User:
    """The user the current API request authenticated as."""
    return g.api_user
