"""OpenID Connect endpoints: discovery, authorize, token, userinfo, JWKS, revocation, end session.

Errors follow the protocol's formats: JSON at the token, revocation and userinfo endpoints; at
authorize a redirect carrying ``error=`` only to a redirect URI registered for the client, and a
page in the visitor's language otherwise.  Whatever the input, none of them answers a 500.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, logout_user

from academy.extensions import csrf, db
from academy.oidc import server as oidc
from academy.oidc.keys import load_or_create_key, public_jwks
from academy.web.access import oauth_endpoint, public
from academy.web.errors import render_error

bp = Blueprint("oidc", __name__)

#: RFC 6750 §2: where ``/oauth/userinfo`` looks for the access token
BEARER_METHODS = ("header", "body", "query")


@bp.get("/.well-known/openid-configuration")
@public
def discovery() -> Any:
    """Provider metadata (OpenID Connect Discovery 1.0), served whether or not a lab hub is configured."""
    base = oidc.issuer()
    return jsonify({
        "issuer": base,
        "authorization_endpoint": base + url_for("oidc.authorize"),
        "token_endpoint": base + url_for("oidc.token"),
        "userinfo_endpoint": base + url_for("oidc.userinfo"),
        "jwks_uri": base + url_for("oidc.jwks"),
        "revocation_endpoint": base + url_for("oidc.revoke"),
        "end_session_endpoint": base + url_for("oidc.end_session"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": list(oidc.SCOPES),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "preferred_username",
                             "name", "email", "email_verified", "groups", "locale"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        # RFC 9728's name for it: how /oauth/userinfo takes the access token (RFC 6750 §2.1-2.3).
        "bearer_methods_supported": list(BEARER_METHODS),
    })


def _refused(message: str, status: int = 400) -> Any:
    """An authorization or logout request that cannot be answered to the client: a page, no redirect."""
    return render_error(status, message, "invalid_request")


def _authorize_error(exc: OAuth2Error) -> Any:
    current_app.logger.warning("oidc authorize refused: %s (%s)", exc.error, exc.description)
    if exc.redirect_uri:  # set by Authlib only once the client and its redirect URI are known
        return oidc.server().handle_error_response(request, exc)
    return _refused(_("This sign-in link is not valid. Open the lab again from the portal."))


@bp.get("/oauth/authorize")
@public
def authorize() -> Any:
    """Sign-in for JupyterHub: the portal's own lab, so no consent screen.

    A visitor who is signed out, or asked to sign in again (``prompt=login``, ``max_age``), goes
    through the portal's login and comes back here without those parameters.
    """
    if len(request.args.get("state", "")) > oidc.MAX_STATE_LENGTH:
        return _refused(_("This sign-in link is not valid. Open the lab again from the portal."))
    user = current_user._get_current_object() if current_user.is_authenticated else None
    server = oidc.server()
    try:
        grant = server.get_consent_grant(end_user=user)
        oidc.check_sign_in(request.args.get("prompt"), request.args.get("max_age"), user is not None,
                           oidc.signed_in_at(), int(time.time()), grant.redirect_uri)
        return server.create_authorization_response(grant=grant, grant_user=user)
    except oidc.SignInNeeded:
        if user is not None:
            logout_user()  # a fresh sign-in was asked for; the lab's tokens stay valid
        again = {k: v for k, v in request.args.items(multi=True) if k not in ("prompt", "max_age")}
        return redirect(url_for("auth.login", next=f"{url_for('oidc.authorize')}?{urlencode(again)}"))
    except OAuth2Error as exc:
        exc.state = exc.state or request.args.get("state")
        return _authorize_error(exc)
    except ValueError as exc:  # Authlib refuses to put some characters (quotes, NUL, ...) in an error
        current_app.logger.warning("oidc authorize refused: %s", exc)
        return _refused(_("This sign-in link is not valid. Open the lab again from the portal."))


def _oauth_json_error(status: int, error: str, description: str) -> Any:
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    if status == 401:
        response.headers["WWW-Authenticate"] = f'Basic realm="academy", error="{error}"'
    return response


def _unreadable_basic_credentials() -> bool:
    """``Authorization: Basic`` whose credentials are not base64 of UTF-8 text (Authlib would crash on them)."""
    header = request.headers.get("Authorization", "")
    scheme, _sep, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return True
    return False


def _client_endpoint(name: str | None) -> Any:
    """The token endpoint (``name`` None) or another client-authenticated endpoint, as Authlib answers it."""
    if _unreadable_basic_credentials():
        return _oauth_json_error(401, "invalid_client", "The client credentials are not readable.")
    server = oidc.server()
    try:
        if name is None:
            return server.create_token_response()
        return server.create_endpoint_response(name)
    except OAuth2Error as exc:
        current_app.logger.warning("oidc %s refused: %s", name or "token", exc.error)
        return server.handle_error_response(request, exc)
    except ValueError as exc:  # an error description Authlib will not write (odd characters in a parameter)
        db.session.rollback()
        current_app.logger.warning("oidc %s refused: %s", name or "token", exc)
        return _oauth_json_error(400, "invalid_request", "The request holds characters that are not allowed.")


@bp.post("/oauth/token")
@oauth_endpoint
@csrf.exempt
def token() -> Any:
    return _client_endpoint(None)


@bp.post("/oauth/revoke")
@oauth_endpoint
@csrf.exempt
def revoke() -> Any:
    """RFC 7009: the client revokes an access or refresh token it holds."""
    return _client_endpoint("revocation")


def _presented_bearer() -> tuple[str | None, bool]:
    """The access token of the request (RFC 6750 §2.1-2.3), and whether it came more than one way."""
    found = []
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        found.append(header[7:].strip())
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded" \
            and "access_token" in request.form:
        found.append(request.form["access_token"])
    if "access_token" in request.args:
        found.append(request.args["access_token"])
    return (found[0] if found else None), len(found) > 1


@bp.route("/oauth/userinfo", methods=["GET", "POST"])
@oauth_endpoint
@csrf.exempt
def userinfo() -> Any:
    value, several = _presented_bearer()
    if several:
        response = jsonify({"error": "invalid_request", "error_description": "Send the access token one way only."})
        response.status_code = 400
        response.headers["WWW-Authenticate"] = 'Bearer realm="academy", error="invalid_request"'
        return response
    found = oidc.bearer_user(f"Bearer {value}" if value else None)
    if found is None:
        response = jsonify({"error": "invalid_token"})
        response.status_code = 401
        response.headers["WWW-Authenticate"] = ('Bearer realm="academy", error="invalid_token"' if value
                                                else 'Bearer realm="academy"')
        return response
    user, scope = found
    response = jsonify(dict(oidc.user_info(user, scope)))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/oauth/jwks")
@public
def jwks() -> Any:
    return jsonify(public_jwks(load_or_create_key(current_app.config["ACADEMY_SETTINGS"].data_dir)))


def _confirmed_here() -> bool:
    """A POST of the portal's own confirmation form (its CSRF token is valid)."""
    from flask_wtf.csrf import ValidationError, validate_csrf

    if request.method != "POST":
        return False
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError:
        return False
    return True


@bp.route("/oauth/logout", methods=["GET", "POST"])
@public
@csrf.exempt  # a client may POST here (RP-Initiated Logout §2); only our own form's POST counts as a "yes"
def end_session() -> Any:
    """RP-initiated logout (``end_session_endpoint``).

    With an ``id_token_hint`` this portal issued to the signed-in person, they are signed out at
    once; otherwise they are asked first (a form, so that a link elsewhere cannot sign anyone out).
    Afterwards the browser goes to the ``post_logout_redirect_uri`` when it is registered for the
    client, else to the portal's home page.
    """
    params = request.form if request.method == "POST" else request.args
    try:
        logout = oidc.check_logout_request(params.get("id_token_hint"), params.get("post_logout_redirect_uri"),
                                           params.get("client_id"), params.get("state"))
    except oidc.InvalidLogoutRequest as exc:
        current_app.logger.warning("oidc logout refused: %s", exc)
        return _refused(_("This sign-out link is not valid. You are still signed in; sign out from the portal's "
                          "menu."))
    if current_user.is_authenticated:
        hinted = logout.subject is not None and logout.subject == str(current_user.id)
        if not hinted and not _confirmed_here():
            return render_template("auth/logout_confirm.html", params=params)
        oidc.revoke_all(current_user.id)
        db.session.commit()
        logout_user()
        session.clear()
        if logout.redirect_uri is None:
            flash(_("You are signed out."), "info")
    return redirect(logout.redirect_uri or url_for("web.index"))
