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
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, current_app
from sqlalchemy import select, update

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

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

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
    return Client(HUB_CLIENT_ID, settings.resolved_hub_secret("client_secret"),
                  (f"{settings.hub_browser_url}/hub/oauth_callback",))


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
    row = OAuthToken(
        client_id=request.client.get_client_id(),
        user_id=request.user.id,
        access_token_hash=digest(token["access_token"]),
        refresh_token_hash=digest(token["refresh_token"]) if token.get("refresh_token") else None,
        scope=token.get("scope", ""),
        issued_at=now,
        expires_in=int(token["expires_in"]),
        refresh_expires_at=now + dt.timedelta(seconds=REFRESH_TOKEN_SECONDS) if token.get("refresh_token") else None,
    )
    db.session.add(row)
    db.session.commit()


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code: str, request: Any) -> OAuthCode:
        data = request.payload.data
        row = OAuthCode(
            code_hash=digest(code), client_id=request.client.get_client_id(), user_id=request.user.id,
            redirect_uri=request.payload.redirect_uri or "", scope=request.payload.scope or "",
            nonce=data.get("nonce"), code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"), auth_time=int(time.time()),
            expires_at=utcnow() + dt.timedelta(seconds=CODE_SECONDS),
        )
        db.session.add(row)
        db.session.commit()
        return row

    def query_authorization_code(self, code: str, client: Client) -> OAuthCode | None:
        row = db.session.scalar(select(OAuthCode).where(OAuthCode.code_hash == digest(code)))
        if row is not None and row.client_id == client.client_id and not row.is_expired():
            return row
        return None

    def delete_authorization_code(self, authorization_code: OAuthCode) -> None:
        db.session.delete(authorization_code)
        db.session.commit()

    def authenticate_user(self, authorization_code: OAuthCode) -> User | None:
        user = db.session.get(User, authorization_code.user_id)
        return user if user is not None and user.active else None


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
    authorization.register_grant(AuthorizationCodeGrant, [CodeChallenge(required=False), PortalOpenIDCode()])
    authorization.register_grant(RefreshTokenGrant)
    app.extensions["academy_oidc"] = authorization
