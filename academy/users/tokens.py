"""Personal access tokens for the JSON API.

The plain token is shown once; only its SHA-256 digest is stored, with a short prefix
so a user can tell their tokens apart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from academy.audit.services import record
from academy.db import utcnow
from academy.errors import NotFound, PermissionDenied, ValidationFailed
from academy.users.models import ApiToken, User

TOKEN_PREFIX = "acad_"
#: The protection space named in the API's ``WWW-Authenticate`` challenges (RFC 6750 §3).
REALM = "academy"

# Scopes a token may carry; each API endpoint names the one it needs.
SCOPES: dict[str, object] = {
    "profile:read": _l("Read your own profile"),
    "catalog:read": _l("Read tracks, courses and cohorts"),
    "enrollments:read": _l("Read your enrollments"),
    "enrollments:write": _l("Enroll in and withdraw from cohorts"),
    "stats:read": _l("Read the academy's statistics (administrators only)"),
    "company:read": _l("Read your company's employees' learning (company contacts only)"),
}
#: Scopes only an admin's token may carry.
ADMIN_SCOPES = ("stats:read",)
#: Scopes only some people's tokens may carry (admins; company contacts).
RESTRICTED_SCOPES = ("stats:read", "company:read")
DEFAULT_SCOPES = ("profile:read", "catalog:read", "enrollments:read")


def digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    user: User,
    name: str,
    scopes: list[str] | tuple[str, ...] | None = None,
    *,
    expires_in_days: int | None = 365,
) -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns the row and the plain token (shown once).

    Raises ValidationFailed for an unknown scope or an empty name.
    """
    chosen = list(dict.fromkeys(scopes or DEFAULT_SCOPES))
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise ValidationFailed(_("Unknown scope: %(scope)s", scope=", ".join(unknown)), field="scopes")
    if any(s in ADMIN_SCOPES for s in chosen) and not user.is_admin:
        raise PermissionDenied(_("Only administrators may create a token that reads the academy's statistics."))
    if "company:read" in chosen:
        from academy.companies.services import company_of

        if company_of(session, user) is None:
            raise PermissionDenied(_("Only a company's contact may create a token that reads its employees."))
    clean_name = name.strip()
    if not clean_name:
        raise ValidationFailed(_("Give the token a name."), field="name")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = utcnow() + dt.timedelta(days=expires_in_days) if expires_in_days else None
    row = ApiToken(
        user_id=user.id,
        name=clean_name[:100],
        prefix=plain[:12],
        token_hash=digest(plain),
        scopes=chosen,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    record(session, "token.create", actor=user, target_type="api_token", target_id=row.id, scopes=chosen)
    return row, plain


def revoke_token(session: Session, token_id: int, *, actor: User) -> ApiToken:
    """Revoke one of the actor's tokens (admins may revoke anyone's).

    Raises NotFound when the token does not exist or belongs to someone else.
    """
    row = session.get(ApiToken, token_id)
    if row is None or (row.user_id != actor.id and not actor.is_admin):
        raise NotFound(_("No such token."))
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record(session, "token.revoke", actor=actor, target_type="api_token", target_id=row.id)
    return row


def list_tokens(session: Session, user: User) -> list[ApiToken]:
    """The user's tokens, newest first."""
    return list(
        session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc()))
    )


def user_for_token(session: Session, plain: str, scope: str) -> User:
    """The user a valid, unexpired, unrevoked token with ``scope`` belongs to.

    Raises InvalidToken (HTTP 401) for a token that is unknown, expired, revoked or whose owner
    is inactive, and InsufficientScope (HTTP 403) for one that lacks ``scope``.
    """
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest(plain)))
    now = utcnow()
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise InvalidToken(_("The access token is missing, expired or revoked."))
    if not row.user.active:
        raise InvalidToken(_("The access token is missing, expired or revoked."))
    if scope not in row.scopes:
        raise InsufficientScope(scope)
    row.last_used_at = now
    return row.user


def bearer_challenge(error: str | None = None, **params: str) -> str:
    """A ``WWW-Authenticate`` value for the API's bearer tokens (RFC 6750 §3), e.g.
    ``Bearer realm="academy", error="invalid_token"``; ``params`` must be plain ASCII without quotes."""
    parts = [("realm", REALM)]
    if error:
        parts.append(("error", error))
    parts.extend(params.items())
    return "Bearer " + ", ".join(f'{name}="{value}"' for name, value in parts)


class InvalidToken(PermissionDenied):
    """The token presented is unknown, expired or revoked, or its owner is inactive (HTTP 401).

    The answer challenges the client with ``error="invalid_token"``.
    """

    status_code = 401
    code = "unauthorized"
    challenge_error: str | None = "invalid_token"

    def __init__(self, message: object) -> None:
        super().__init__(message, headers={"WWW-Authenticate": bearer_challenge(self.challenge_error)})


class MissingToken(InvalidToken):
    """No bearer token was presented at all (HTTP 401): a challenge without an error code (RFC 6750 §3.1)."""

    challenge_error = None


class InsufficientScope(PermissionDenied):
    """A valid token that lacks the scope the endpoint needs (HTTP 403, ``error="insufficient_scope"``)."""

    def __init__(self, scope: str) -> None:
        super().__init__(
            _("This token lacks the scope %(scope)s.", scope=scope),
            headers={"WWW-Authenticate": bearer_challenge("insufficient_scope", scope=scope)},
        )
        self.scope = scope
