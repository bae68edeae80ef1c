"""Authlib authorization server: authorization code (+ PKCE), refresh tokens, OpenID Connect.

The portal's one client is JupyterHub (``client_id`` ``jupyterhub``), configured from the
settings, not registered in the database: its redirect URI is the hub's OAuth callback and its
secret is ``ACADEMY_HUB_CLIENT_SECRET`` (generated in the data directory in development).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import InvalidRequestError, grants
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, current_app, session
from sqlalchemy import delete, select, update

from academy.db import utcnow
from academy.extensions import db
from academy.oidc.keys import key_id, load_or_create_key
from academy.oidc.models import OAuthCode, OAuthToken
from academy.users.models import Role, User

HUB_CLIENT_ID = "jupyterhub"
SCOPES = ("openid", "profile", "email", "groups")
ADMIN_GROUP = "academy-admins"
REFRESH_TOKEN_SECONDS = 12 * 3600
CODE_SECONDS = 60
#: how long a used or expired code is kept, so that a replay still finds (and revokes) its tokens
CODE_KEPT_SECONDS = 24 * 3600
#: the longest ``state`` and ``nonce`` taken; longer ones are refused, not stored or echoed
MAX_STATE_LENGTH = 1024
#: the session key holding when this browser's user signed in (seconds since the epoch)
AUTH_TIME_KEY = "auth_time"


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def hub_username(user: User) -> str:
    """The JupyterHub name of a portal account: stable, ASCII, never reused."""
    return f"u{user.id}"


def user_id_from_hub_name(name: str) -> int | None:
    if name.startswith("u") and name[1:].isdigit():
        return int(name[1:])
    return None


def issuer() -> str:
    return current_app.config["ACADEMY_SETTINGS"].base_url.rstrip("/")


@dataclass(frozen=True)
class Client:
    """A confidential client known from configuration (authlib's ClientMixin)."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...] = ()

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode("utf-8", "surrogatepass"), self.client_secret.encode())

    def check_post_logout_redirect_uri(self, uri: str) -> bool:
        return uri in self.post_logout_redirect_uris

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


def hub_client() -> Client | None:
    settings = current_app.config["ACADEMY_SETTINGS"]
    if not settings.labs_enabled:
        return None
    hub = settings.hub_browser_url
    return Client(HUB_CLIENT_ID, settings.resolved_hub_secret("client_secret"), (f"{hub}/hub/oauth_callback",),
                  post_logout_redirect_uris=(f"{hub}/hub/", f"{hub}/hub/login", f"{issuer()}/"))


def query_client(client_id: str) -> Client | None:
    client = hub_client()
    return client if client is not None and client.client_id == client_id else None


def user_info(user: User, scope: str) -> UserInfo:
    """Claims about ``user``: the hub takes its user name and admin right from these."""
    scopes = set((scope or "").split())
    info = UserInfo(sub=str(user.id), preferred_username=hub_username(user))
    if "profile" in scopes:
        info["name"] = user.name or user.email
        info["locale"] = user.locale or "ko"
    if "email" in scopes:
        info["email"] = user.email
        info["email_verified"] = True
    if "groups" in scopes:
        info["groups"] = [ADMIN_GROUP] if user.role == Role.admin else [f"academy-{user.role.value}s"]
    return info


def save_token(token: dict[str, Any], request: Any) -> None:
    now = utcnow()
    # The code this chain of tokens descends from: a replay of that code revokes all of them.
    origin = getattr(request, "authorization_code", None) or getattr(request, "refresh_token", None)
    row = OAuthToken(
        client_id=request.client.get_client_id(),
        user_id=request.user.id,
        code_hash=getattr(origin, "code_hash", None),
        access_token_hash=digest(token["access_token"]),
        refresh_token_hash=digest(token["refresh_token"]) if token.get("refresh_token") else None,
        scope=token.get("scope", ""),
        issued_at=now,
        expires_in=int(token["expires_in"]),
        refresh_expires_at=now + dt.timedelta(seconds=REFRESH_TOKEN_SECONDS) if token.get("refresh_token") else None,
    )
    db.session.add(row)
    db.session.commit()


def signed_in_at() -> int | None:
    """When this browser's user signed in (``AUTH_TIME_KEY`` in the session), if known."""
    value = session.get(AUTH_TIME_KEY)
    return value if isinstance(value, int) else None


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_authorization_request(self) -> str:
        redirect_uri = super().validate_authorization_request()
        # Required: without it a code could be injected into the client's callback (CSRF).
        state = self.request.payload.state
        if not state:
            raise InvalidRequestError("Missing 'state' in request.", redirect_uri=redirect_uri)
        nonce = self.request.payload.data.get("nonce") or ""
        if len(nonce) > MAX_STATE_LENGTH:
            raise InvalidRequestError("'nonce' is too long.", redirect_uri=redirect_uri)
        return redirect_uri

    def save_authorization_code(self, code: str, request: Any) -> OAuthCode:
        data = request.payload.data
        now = utcnow()
        db.session.execute(delete(OAuthCode).where(
            OAuthCode.expires_at < now - dt.timedelta(seconds=CODE_KEPT_SECONDS)))
        row = OAuthCode(
            code_hash=digest(code), client_id=request.client.get_client_id(), user_id=request.user.id,
            redirect_uri=request.payload.redirect_uri or "", scope=request.payload.scope or "",
            nonce=data.get("nonce"), code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            auth_time=signed_in_at() or int(time.time()),
            expires_at=now + dt.timedelta(seconds=CODE_SECONDS),
        )
        db.session.add(row)
        db.session.commit()
        return row

    def query_authorization_code(self, code: str, client: Client) -> OAuthCode | None:
        """The code, used up by this attempt whatever its outcome; a second attempt revokes its tokens."""
        row = db.session.scalar(select(OAuthCode).where(OAuthCode.code_hash == digest(code)))
        if row is None or row.client_id != client.client_id:
            return None
        claimed = db.session.execute(update(OAuthCode).where(OAuthCode.id == row.id, OAuthCode.used_at.is_(None))
                                     .values(used_at=utcnow())).rowcount
        if not claimed:
            revoked = revoke_code_tokens(row.code_hash)
            current_app.logger.warning("oidc: authorization code %s replayed; %d token(s) revoked", row.id, revoked)
        db.session.commit()
        if not claimed or row.is_expired():
            return None
        return row

    def delete_authorization_code(self, authorization_code: OAuthCode) -> None:
        """Kept (used up) until ``CODE_KEPT_SECONDS`` after it expires, so that a replay is recognised."""

    def authenticate_user(self, authorization_code: OAuthCode) -> User | None:
        user = db.session.get(User, authorization_code.user_id)
        return user if user is not None and user.active else None


class S256CodeChallenge(CodeChallenge):
    """PKCE required of every client, with S256 only (``plain`` protects nothing against a stolen code)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': PKCE (S256) is required.", redirect_uri=redirect_uri)
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.", redirect_uri=redirect_uri)
        super().validate_code_challenge(grant, redirect_uri)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> OAuthToken | None:
        row = db.session.scalar(select(OAuthToken).where(OAuthToken.refresh_token_hash == digest(refresh_token)))
        if row is None or row.is_revoked() or row.is_refresh_expired():
            return None
        return row

    def authenticate_user(self, refresh_token: OAuthToken) -> User | None:
        user = db.session.get(User, refresh_token.user_id)
        return user if user is not None and user.active else None

    def revoke_old_credential(self, refresh_token: OAuthToken) -> None:
        refresh_token.revoked_at = utcnow()
        db.session.commit()


class PortalOpenIDCode(OpenIDCode):
    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return db.session.scalar(select(OAuthCode.id).where(OAuthCode.nonce == nonce)) is not None

    def get_client_algorithm(self, client: Any) -> str:
        return "RS256"

    def resolve_client_private_key(self, client: Any) -> Any:
        from joserfc.jwk import RSAKey

        return RSAKey.import_key(_signing_key())

    def get_client_claims(self, client: Any) -> dict[str, Any]:
        return {"iss": issuer(), "aud": [client.get_client_id()], "exp": int(time.time()) + 600}

    def get_encode_header(self, client: Any) -> dict[str, Any]:
        return {"alg": "RS256", "kid": key_id(_signing_key())}

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return user_info(user, scope)


def _signing_key() -> bytes:
    settings = current_app.config["ACADEMY_SETTINGS"]
    return load_or_create_key(settings.data_dir)


def bearer_user(authorization: str | None) -> tuple[User, str] | None:
    """The user and scope of a valid, unrevoked access token in an ``Authorization`` header."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    token = authorization[7:].strip()
    row = db.session.scalar(select(OAuthToken).where(OAuthToken.access_token_hash == digest(token)))
    if row is None or row.is_revoked() or row.is_expired():
        return None
    user = db.session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return user, row.scope


def revoke_code_tokens(code_hash: str) -> int:
    """Revoke every token issued from one authorization code (the code was replayed)."""
    result = db.session.execute(
        update(OAuthToken).where(OAuthToken.code_hash == code_hash, OAuthToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount or 0)


class PortalRevocationEndpoint(RevocationEndpoint):
    """RFC 7009 at ``/oauth/revoke``: the client revokes an access or a refresh token it holds.

    Both halves of a pair are one row, so revoking either ends both.  An unknown token is answered
    200 as the RFC asks; a token of another client is refused (``invalid_grant``).
    """

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> OAuthToken | None:
        hashed = digest(token_string)
        return db.session.scalar(select(OAuthToken).where(
            (OAuthToken.access_token_hash == hashed) | (OAuthToken.refresh_token_hash == hashed)))

    def revoke_token(self, token: OAuthToken, request: Any) -> None:
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            db.session.commit()


def revoke_all(user_id: int) -> int:
    """Revoke every token of a user (signing out of the portal signs out of the hub)."""
    result = db.session.execute(
        update(OAuthToken).where(OAuthToken.user_id == user_id, OAuthToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    db.session.execute(OAuthCode.__table__.delete().where(OAuthCode.user_id == user_id))
    return int(result.rowcount or 0)


def server() -> AuthorizationServer:
    return current_app.extensions["academy_oidc"]


def init_app(app: Flask) -> None:
    settings = app.config["ACADEMY_SETTINGS"]
    app.config.setdefault("OAUTH2_TOKEN_EXPIRES_IN", {
        "authorization_code": settings.oidc_access_token_seconds,
        "refresh_token": settings.oidc_access_token_seconds,
    })
    app.config.setdefault("OAUTH2_ACCESS_TOKEN_GENERATOR", lambda *a, **k: secrets.token_urlsafe(32))
    app.config.setdefault("OAUTH2_REFRESH_TOKEN_GENERATOR", lambda *a, **k: secrets.token_urlsafe(40))
    authorization = AuthorizationServer()
    authorization.init_app(app, query_client=query_client, save_token=save_token)
    authorization.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True), PortalOpenIDCode()])
    authorization.register_grant(RefreshTokenGrant)
    authorization.register_endpoint(PortalRevocationEndpoint)
    app.extensions["academy_oidc"] = authorization


class SignInNeeded(Exception):
    """The authorization request asks for a fresh sign-in (``prompt=login``, ``max_age``) or has none."""


def check_sign_in(prompt: str | None, max_age: str | None, signed_in: bool, auth_time: int | None,
                  now: int, redirect_uri: str | None) -> None:
    """OIDC Core §3.1.2.1: raise ``SignInNeeded`` when the browser must sign in (again) first.

    ``prompt=none`` with a sign-in needed is ``login_required``, redirected to the client;
    a ``max_age`` that is not a whole number of seconds is ``invalid_request``.  A portal session
    whose sign-in time is unknown (an older session) counts as too old for any ``max_age``.
    """
    from authlib.oidc.core.errors import LoginRequiredError

    prompts = set((prompt or "").split())
    if "none" in prompts and len(prompts) > 1:
        raise InvalidRequestError("Invalid 'prompt' parameter.", redirect_uri=redirect_uri)
    needed = not signed_in or "login" in prompts
    if max_age is not None:
        if not max_age.isascii() or not max_age.isdigit():
            raise InvalidRequestError("Invalid 'max_age' parameter.", redirect_uri=redirect_uri)
        # "max_age=0 is equivalent to prompt=login" (§3.1.2.1), even within the second of a sign-in
        needed = needed or auth_time is None or int(max_age) == 0 or now - auth_time > int(max_age)
    if needed and "none" in prompts:
        raise LoginRequiredError(redirect_uri=redirect_uri)
    if needed:
        raise SignInNeeded


@dataclass(frozen=True)
class LogoutRequest:
    """A checked RP-initiated logout request (OpenID Connect RP-Initiated Logout 1.0)."""

    subject: str | None  #: ``sub`` of a valid ``id_token_hint``
    redirect_uri: str | None  #: a registered ``post_logout_redirect_uri``, with ``state`` added


class InvalidLogoutRequest(ValueError):
    """The logout request cannot be honoured as asked: show a page, redirect nowhere."""


def check_logout_request(id_token_hint: str | None, post_logout_redirect_uri: str | None, client_id: str | None,
                         state: str | None) -> LogoutRequest:
    """Check the hint (our signature, our issuer, issued to the client; expired is fine) and the redirect."""
    from urllib.parse import urlencode

    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import RSAKey

    subject = audience = None
    if id_token_hint:
        try:
            token = jwt.decode(id_token_hint, RSAKey.import_key(_signing_key()), algorithms=["RS256"])
        except (JoseError, ValueError) as exc:
            raise InvalidLogoutRequest("id_token_hint is not a token this portal issued") from exc
        claims = token.claims
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
        if claims.get("iss") != issuer() or not audiences:
            raise InvalidLogoutRequest("id_token_hint is not a token this portal issued")
        subject, audience = str(claims.get("sub")), audiences[0]
        if client_id and client_id not in audiences:
            raise InvalidLogoutRequest("id_token_hint was issued to another client")
    redirect_uri = None
    if post_logout_redirect_uri:
        client = query_client(client_id or audience or "")
        if client is None or not client.check_post_logout_redirect_uri(post_logout_redirect_uri):
            raise InvalidLogoutRequest("post_logout_redirect_uri is not registered for the client")
        redirect_uri = post_logout_redirect_uri
        if state:
            redirect_uri += ("&" if "?" in redirect_uri else "?") + urlencode({"state": state})
    return LogoutRequest(subject, redirect_uri)
