"""OpenID Connect endpoints: discovery, authorize, token, userinfo, JWKS, revocation."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request, url_for
from flask_login import current_user

from academy.extensions import csrf, db
from academy.oidc import server as oidc
from academy.oidc.keys import load_or_create_key, public_jwks
from academy.web.access import login_required, oauth_endpoint, public

bp = Blueprint("oidc", __name__)


@bp.get("/.well-known/openid-configuration")
@public
def discovery() -> Any:
    """Provider metadata (OpenID Connect Discovery 1.0)."""
    if oidc.hub_client() is None:
        abort(404)
    base = oidc.issuer()
    return jsonify({
        "issuer": base,
        "authorization_endpoint": base + url_for("oidc.authorize"),
        "token_endpoint": base + url_for("oidc.token"),
        "userinfo_endpoint": base + url_for("oidc.userinfo"),
        "jwks_uri": base + url_for("oidc.jwks"),
        "revocation_endpoint": base + url_for("oidc.revoke"),
        "end_session_endpoint": base + url_for("auth.logout"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": list(oidc.SCOPES),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "claims_supported": ["sub", "preferred_username", "name", "email", "email_verified", "groups", "locale"],
    })


@bp.get("/oauth/authorize")
@login_required
def authorize() -> Any:
    """Sign-in for JupyterHub: the portal's own lab, so no consent screen; a signed-out visitor is
    sent to the portal's login first (``login_required``) and comes back here."""
    server = oidc.server()
    if oidc.hub_client() is None:
        abort(404)
    from authlib.oauth2 import OAuth2Error

    try:
        grant = server.get_consent_grant(end_user=current_user)
        return server.create_authorization_response(grant=grant, grant_user=current_user._get_current_object())
    except OAuth2Error as exc:
        current_app.logger.warning("oidc authorize refused: %s", exc.error)
        return server.handle_error_response(request, exc)


@bp.post("/oauth/token")
@oauth_endpoint
@csrf.exempt
def token() -> Any:
    from authlib.oauth2 import OAuth2Error

    server = oidc.server()
    try:
        return server.create_token_response()
    except OAuth2Error as exc:  # e.g. plain http to a non-loopback address
        current_app.logger.warning("oidc token refused: %s", exc.error)
        return server.handle_error_response(request, exc)


@bp.route("/oauth/userinfo", methods=["GET", "POST"])
@oauth_endpoint
@csrf.exempt
def userinfo() -> Any:
    found = oidc.bearer_user(request.headers.get("Authorization"))
    if found is None:
        response = jsonify({"error": "invalid_token"})
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    user, scope = found
    return jsonify(dict(oidc.user_info(user, scope)))


@bp.get("/oauth/jwks")
@public
def jwks() -> Any:
    return jsonify(public_jwks(load_or_create_key(current_app.config["ACADEMY_SETTINGS"].data_dir)))


@bp.post("/oauth/revoke")
@oauth_endpoint
@csrf.exempt
def revoke() -> Any:
    """RFC 7009: revoke one token the client holds (unknown tokens are answered 200 as well)."""
    client = oidc.hub_client()
    auth = request.authorization
    client_id = auth.username if auth else request.form.get("client_id")
    secret = auth.password if auth else request.form.get("client_secret")
    if client is None or client_id != client.client_id or not client.check_client_secret(secret or ""):
        return jsonify({"error": "invalid_client"}), 401
    value = request.form.get("token", "")
    from sqlalchemy import or_, select

    from academy.db import utcnow
    from academy.oidc.models import OAuthToken

    row = db.session.scalar(select(OAuthToken).where(or_(
        OAuthToken.access_token_hash == oidc.digest(value), OAuthToken.refresh_token_hash == oidc.digest(value))))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        db.session.commit()
    return "", 200
