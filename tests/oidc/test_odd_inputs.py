"""Hand-made odd inputs at the OpenID Connect endpoints: a clean error in the protocol's format, never a 500.

JSON at the token, revocation and userinfo endpoints; at authorize a redirect with ``error=`` only
to the registered redirect URI, a page in the visitor's language otherwise; and nothing stored
that cannot be read back, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet

from academy.extensions import db
from academy.oidc.models import OAuthCode, OAuthToken
from tests.oidc.conftest import CLIENT_SECRET, HUB, REDIRECT_URI

# Over https, as the portal is served (Authlib refuses OAuth over plain http but to loopback addresses);
# the test client sends no Referer, which Flask-WTF's strict https check of the login form would want.
pytestmark = pytest.mark.app_config(hub_url=HUB, hub_client_secret=CLIENT_SECRET, RATELIMIT_ENABLED=False,
                                    PREFERRED_URL_SCHEME="https", WTF_CSRF_SSL_STRICT=False)

NOT_VALID_KO = "로그인 링크가 올바르지 않습니다"
ODD = ['"', "\\", "é", "\n", "\x00", "가나다", "<script>", "%00", "a b"]


def basic(user: bytes, password: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(user + b":" + password).decode()}


HUB_BASIC = basic(b"jupyterhub", CLIENT_SECRET.encode())


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_args(challenge: str, **extra: str) -> dict[str, str]:
    return {"client_id": "jupyterhub", "response_type": "code", "scope": "openid profile groups",
            "redirect_uri": REDIRECT_URI, "state": "st", "nonce": "n-" + secrets.token_hex(4),
            "code_challenge": challenge, "code_challenge_method": "S256", **extra}


def get_code(client: FlaskClient, **extra: str) -> tuple[str, str]:
    """A signed-in browser's code: (code, code_verifier)."""
    verifier, challenge = pkce()
    answer = client.get("/oauth/authorize?" + urlencode(authorize_args(challenge, **extra)))
    assert answer.status_code == 302 and answer.location.startswith(REDIRECT_URI), answer.get_data(as_text=True)
    return parse_qs(urlsplit(answer.location).query)["code"][0], verifier


def exchange(client: FlaskClient, code: str, verifier: str) -> Any:
    return client.post("/oauth/token", headers=HUB_BASIC, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier})


def assert_oauth_json(response: Any, status: int, *errors: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert body["error"] in errors, body
    return body


def count(app: Flask, model: Any) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(model))


@pytest.mark.parametrize("credentials", [
    b"jupyterhub:\xff",  # not UTF-8
    "café:pw".encode("latin-1"),  # Latin-1, as some HTTP clients encode
    b"\xc3\x28:\xa0\xa1",
])
@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke"])
def test_basic_credentials_that_are_not_utf8(client: FlaskClient, path: str, credentials: bytes) -> None:
    header = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
    response = client.post(path, headers=header, data={"grant_type": "authorization_code", "code": "x",
                                                       "token": "x"})
    assert_oauth_json(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize("authorization", [
    "Basic !!!not-base64", "Basic", "Basic " + base64.b64encode(b"no-colon").decode(),
    "Digest username=\"jupyterhub\"", "Negotiate YIIC", "Bearer abc", "jupyterhub:secret",
    "Basic " + base64.b64encode("jupyterhub:비밀번호".encode()).decode(),  # UTF-8, wrong secret
])
def test_client_authentication_that_is_not_the_hubs(client: FlaskClient, authorization: str) -> None:
    response = client.post("/oauth/token", headers={"Authorization": authorization},
                           data={"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT_URI})
    assert_oauth_json(response, 401, "invalid_client")


@pytest.mark.parametrize("secret", ["비밀번호", "café", "\x00", "s" * 5000, '"quoted"'])
def test_a_client_secret_in_the_form_body_with_odd_characters(client: FlaskClient, secret: str) -> None:
    response = client.post("/oauth/token", data={"grant_type": "authorization_code", "code": "x",
                                                  "client_id": "jupyterhub", "client_secret": secret})
    assert_oauth_json(response, 401, "invalid_client")


@pytest.mark.parametrize("authorization", ["Basic " + HUB_BASIC["Authorization"][6:], "Digest x", "Bearer",
                                           "Bearer \x7f", "Token abc"])
def test_userinfo_with_a_header_that_is_not_a_bearer_token(client: FlaskClient, authorization: str) -> None:
    response = client.get("/oauth/userinfo", headers={"Authorization": authorization})
    assert_oauth_json(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="academy"')


@pytest.mark.parametrize("signed_in", [True, False], ids=["signed-in", "signed-out"])
@pytest.mark.parametrize("name", ["redirect_uri", "response_type"])
@pytest.mark.parametrize("odd", ['"', "\\", "é", "\n", "\x00"], ids=["quote", "backslash", "e-acute", "newline", "nul"])
def test_authorize_with_forbidden_characters_answers_a_page(
    client: FlaskClient, login_as: Any, signed_in: bool, name: str, odd: str,
) -> None:
    if signed_in:
        login_as("learner")
    _verifier, challenge = pkce()
    args = authorize_args(challenge)
    args[name] = args[name] + odd
    response = client.get("/oauth/authorize?" + urlencode(args))
    assert response.status_code == 400, (response.status_code, response.location)
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
    assert NOT_VALID_KO in response.get_data(as_text=True)  # the visitor's language: Korean by default


def test_a_10000_character_state_is_refused_on_a_page(client: FlaskClient, login_as: Any, app: Flask) -> None:
    login_as("learner")
    _verifier, challenge = pkce()
    response = client.get("/oauth/authorize?" + urlencode(authorize_args(challenge, state="s" * 10_000)))
    assert response.status_code == 400 and "Location" not in response.headers
    assert count(app, OAuthCode) == 0


def test_a_10000_character_nonce_is_refused_to_the_client(client: FlaskClient, login_as: Any, app: Flask) -> None:
    login_as("learner")
    _verifier, challenge = pkce()
    response = client.get("/oauth/authorize?" + urlencode(authorize_args(challenge, nonce="가" * 10_000)))
    assert response.status_code == 302 and response.location.startswith(REDIRECT_URI + "?")
    params = parse_qs(urlsplit(response.location).query)
    assert params["error"] == ["invalid_request"] and params["state"] == ["st"] and "code" not in params
    assert count(app, OAuthCode) == 0


def test_a_long_non_ascii_nonce_is_stored_and_read_back(client: FlaskClient, login_as: Any, app: Flask) -> None:
    """Up to 1,024 characters, whatever they are, on SQLite and PostgreSQL alike (the column was 255)."""
    login_as("learner")
    nonce = ("가é'\"" * 256)[:1024]
    code, verifier = get_code(client, nonce=nonce)
    response = exchange(client, code, verifier)
    assert response.status_code == 200, response.get_json()
    keys = KeySet.import_key_set(client.get("/oauth/jwks").get_json())
    claims = jwt.decode(response.get_json()["id_token"], keys).claims
    assert claims["nonce"] == nonce
    # the same nonce twice is a replayed sign-in request
    _verifier, challenge = pkce()
    again = client.get("/oauth/authorize?" + urlencode(authorize_args(challenge, nonce=nonce)))
    assert parse_qs(urlsplit(again.location).query)["error"] == ["invalid_request"]


@pytest.mark.parametrize("scope", ['openid "profile"', "openid 프로필", "openid\x00", "é" * 3000, "openid admin"])
def test_a_refresh_with_an_odd_scope_is_refused_and_loses_nothing(
    client: FlaskClient, login_as: Any, scope: str,
) -> None:
    login_as("learner")
    code, verifier = get_code(client)
    refresh = exchange(client, code, verifier).get_json()["refresh_token"]
    refused = client.post("/oauth/token", headers=HUB_BASIC,
                          data={"grant_type": "refresh_token", "refresh_token": refresh, "scope": scope})
    assert_oauth_json(refused, 400, "invalid_scope", "invalid_request")
    # the refused request took nothing away: the refresh token still works, once
    renewed = client.post("/oauth/token", headers=HUB_BASIC, data={"grant_type": "refresh_token",
                                                                   "refresh_token": refresh})
    assert renewed.status_code == 200, renewed.get_json()


@pytest.mark.parametrize("name", ["grant_type", "code", "redirect_uri", "code_verifier", "refresh_token"])
@pytest.mark.parametrize("odd", ODD + ["x" * 10_000])
def test_token_endpoint_parameters_with_odd_characters(client: FlaskClient, name: str, odd: str) -> None:
    data = {"grant_type": "authorization_code", "code": "abc", "redirect_uri": REDIRECT_URI,
            "code_verifier": "v" * 43, "refresh_token": "r"}
    data[name] = odd
    response = client.post("/oauth/token", headers=HUB_BASIC, data=data)
    assert_oauth_json(response, 400, "invalid_request", "invalid_grant", "unsupported_grant_type")


def test_revocation_needs_a_token_and_takes_unknown_ones(client: FlaskClient, app: Flask) -> None:
    missing = client.post("/oauth/revoke", headers=HUB_BASIC)
    assert_oauth_json(missing, 400, "invalid_request")
    unknown = client.post("/oauth/revoke", headers=HUB_BASIC, data={"token": "never-issued-é\x00"})
    assert unknown.status_code == 200 and unknown.get_json() == {}  # RFC 7009 §2.2
    anonymous = client.post("/oauth/revoke", data={"token": "x"})
    assert_oauth_json(anonymous, 401, "invalid_client")
    assert count(app, OAuthToken) == 0


@pytest.mark.parametrize(("path", "method"), [("/oauth/token", "GET"), ("/oauth/revoke", "PUT"),
                                              ("/oauth/userinfo", "DELETE"), ("/oauth/authorize", "POST")])
def test_other_methods_get_405_with_allow(client: FlaskClient, path: str, method: str) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 405 and response.headers["Allow"]


@pytest.mark.parametrize("odd", ODD + ["x" * 10_000])
def test_logout_with_odd_parameters_never_fails(client: FlaskClient, login_as: Any, odd: str) -> None:
    login_as("learner")
    for name in ("id_token_hint", "post_logout_redirect_uri", "client_id", "state"):
        response = client.get("/oauth/logout?" + urlencode({name: odd}))
        assert response.status_code in (200, 302, 400), (name, response.status_code)
        if response.status_code == 302:  # only to our own home page or a registered address
            assert not urlsplit(response.location).netloc or response.location.startswith(HUB), response.location
    assert client.get("/dashboard").status_code == 200  # asked, not signed out, by any of these


@pytest.mark.app_config(hub_url=None, base_url="https://portal.academy.example", RATELIMIT_ENABLED=False)
def test_without_a_hub_discovery_is_served_and_sign_on_refused(client: FlaskClient, login_as: Any) -> None:
    """The document names the configured issuer whatever port serves it; no hub, no client to sign in."""
    info = client.get("/.well-known/openid-configuration").get_json()
    assert info["issuer"] == "https://portal.academy.example"
    assert info["token_endpoint"] == "https://portal.academy.example/oauth/token"
    login_as("learner")
    _verifier, challenge = pkce()
    answer = client.get("/oauth/authorize?" + urlencode(authorize_args(challenge)))
    assert answer.status_code == 400 and "Location" not in answer.headers


@pytest.mark.app_config(hub_url=HUB, hub_client_secret=CLIENT_SECRET, RATELIMIT_ENABLED=False, trusted_proxies=1)
def test_behind_a_tls_proxy_the_forwarded_scheme_counts(client: FlaskClient) -> None:
    """gunicorn serves plain http behind nginx: the proxy's X-Forwarded-Proto decides, not the hop to it."""
    data = {"grant_type": "authorization_code", "code": "unknown", "redirect_uri": REDIRECT_URI,
            "code_verifier": "v" * 43}
    plain = client.post("/oauth/token", headers=HUB_BASIC, data=data)
    assert_oauth_json(plain, 400, "insecure_transport")
    forwarded = client.post("/oauth/token", headers={**HUB_BASIC, "X-Forwarded-Proto": "https"}, data=data)
    assert_oauth_json(forwarded, 400, "invalid_grant")  # got as far as looking the code up
