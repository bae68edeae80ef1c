"""The portal's OpenID Connect provider driven by pyoidc (``oic``), a client nobody on this project wrote.

Over HTTP against a live portal, on SQLite and on PostgreSQL: discovery, the authorization code
flow with PKCE, ID token checks (signature from the JWKS, issuer, audience, nonce), userinfo,
refresh-token rotation, revocation, RP-initiated logout, and each refusal the provider owes a
client: replayed and half-used codes, missing PKCE or ``state``, ``plain`` PKCE, ``prompt`` and
``max_age``, unregistered redirect URIs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from oic import rndstr
from oic.oauth2.message import ErrorResponse
from oic.oic import Client
from oic.oic.message import AccessTokenResponse, AuthorizationResponse, EndSessionRequest, RegistrationResponse
from oic.utils.authn.client import CLIENT_AUTHN_METHOD

from tests.oidc.conftest import CLIENT_SECRET, HUB, REDIRECT_URI, Browser, Provider, query_of


def rp(provider: Provider) -> Client:
    """The relying party: discovers the provider, registered as the hub is (client_secret_basic)."""
    client = Client(client_id="jupyterhub", client_authn_method=CLIENT_AUTHN_METHOD)
    client.provider_config(provider.url)  # checks that the document names the issuer it was fetched from
    client.store_registration_info(RegistrationResponse(client_id="jupyterhub", client_secret=CLIENT_SECRET,
                                                        redirect_uris=[REDIRECT_URI]))
    client.redirect_uris = [REDIRECT_URI]
    return client


def authorization_url(client: Client, state: str | None, pkce: bool = True, **extra: Any) -> tuple[str, str]:
    """An authorization request (PKCE with S256 unless ``pkce`` is False); returns (url, code_verifier)."""
    challenge, verifier = client.add_code_challenge() if pkce else ({}, "")
    args = {"client_id": client.client_id, "response_type": "code", "scope": ["openid", "profile", "groups"],
            "nonce": rndstr(), "redirect_uri": REDIRECT_URI, **challenge, **extra}
    if state is not None:
        args["state"] = state
    request = client.construct_AuthorizationRequest(request_args=args)
    return request.request(client.authorization_endpoint), verifier


def authorize(client: Client, browser: Browser, **extra: Any) -> tuple[str, str, str]:
    """A signed-in browser's trip through authorize: (state, code, code_verifier)."""
    state = rndstr()
    url, verifier = authorization_url(client, state, **extra)
    answer = browser.get(url)
    assert answer.headers["Location"].startswith(REDIRECT_URI + "?"), answer.headers.get("Location")
    response = client.parse_response(AuthorizationResponse, info=urlsplit(answer.headers["Location"]).query,
                                     sformat="urlencoded")
    assert isinstance(response, AuthorizationResponse) and response["state"] == state
    return state, response["code"], verifier


def exchange(client: Client, state: str, code: str, verifier: str, **extra: Any) -> Any:
    """The token request, as oic makes it (client_secret_basic); an AccessTokenResponse or an ErrorResponse."""
    args = {"code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier, **extra}
    return client.do_access_token_request(state=state, request_args=args, authn_method="client_secret_basic")


def userinfo_status(provider: Provider, access_token: str) -> int:
    return requests.get(f"{provider.url}/oauth/userinfo", headers={"Authorization": f"Bearer {access_token}"},
                        timeout=30).status_code


def error_of(client: Client, answer: requests.Response) -> dict[str, str]:
    """An error the provider sent back to the client's redirect URI (parsed by oic)."""
    assert answer.headers["Location"].startswith(REDIRECT_URI + "?"), answer.headers.get("Location")
    response = client.parse_response(AuthorizationResponse, info=urlsplit(answer.headers["Location"]).query,
                                      sformat="urlencoded")
    assert isinstance(response, ErrorResponse), response
    assert "code" not in query_of(answer)
    return response.to_dict()


def test_the_whole_flow_with_an_independent_client(provider: Provider, browser: Browser) -> None:
    client = rp(provider)
    info = client.provider_info
    assert info["issuer"] == provider.url
    assert info["code_challenge_methods_supported"] == ["S256"]
    assert info["end_session_endpoint"] == f"{provider.url}/oauth/logout"
    assert browser.sign_in().status_code == 302
    state, code, verifier = authorize(client, browser)
    tokens = exchange(client, state, code, verifier)
    assert isinstance(tokens, AccessTokenResponse), tokens
    # oic checked the ID token's RS256 signature with the provider's JWKS, its issuer, audience and nonce.
    id_token = tokens["id_token"]
    assert id_token["iss"] == provider.url and id_token["aud"] == ["jupyterhub"]
    assert id_token["sub"] == str(provider.learner_id) and id_token["preferred_username"] == f"u{provider.learner_id}"
    assert abs(id_token["auth_time"] - time.time()) < 120
    claims = client.do_user_info_request(state=state)
    assert claims["sub"] == str(provider.learner_id) and claims["groups"] == ["academy-learners"]
    access = tokens["access_token"]
    # RFC 6750: the header, the form body or the query; never two at once.
    url = f"{provider.url}/oauth/userinfo"
    assert requests.post(url, data={"access_token": access}, timeout=30).json()["sub"] == claims["sub"]
    assert requests.get(url, params={"access_token": access}, timeout=30).json()["sub"] == claims["sub"]
    both = requests.post(url, data={"access_token": access}, headers={"Authorization": f"Bearer {access}"},
                         timeout=30)
    assert both.status_code == 400 and both.json()["error"] == "invalid_request"

    # Refresh tokens rotate: the new pair works, the old refresh token is refused.
    old_refresh = tokens["refresh_token"]
    refreshed = client.do_access_token_refresh(state=state, authn_method="client_secret_basic")
    assert isinstance(refreshed, AccessTokenResponse) and refreshed["refresh_token"] != old_refresh
    assert userinfo_status(provider, refreshed["access_token"]) == 200
    again = requests.post(client.token_endpoint, auth=("jupyterhub", CLIENT_SECRET), timeout=30,
                          data={"grant_type": "refresh_token", "refresh_token": old_refresh})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    # RFC 7009: the client revokes the new refresh token; its access token goes with it.
    revoked = requests.post(info["revocation_endpoint"], auth=("jupyterhub", CLIENT_SECRET), timeout=30,
                            data={"token": refreshed["refresh_token"], "token_type_hint": "refresh_token"})
    assert revoked.status_code == 200 and revoked.json() == {}
    assert userinfo_status(provider, refreshed["access_token"]) == 401
    no_token = requests.post(info["revocation_endpoint"], auth=("jupyterhub", CLIENT_SECRET), timeout=30)
    assert no_token.status_code == 400 and no_token.json()["error"] == "invalid_request"


def test_a_replayed_code_is_refused_and_revokes_what_it_gave(provider: Provider, browser: Browser) -> None:
    client = rp(provider)
    browser.sign_in()
    state, code, verifier = authorize(client, browser)
    first = exchange(client, state, code, verifier)
    assert isinstance(first, AccessTokenResponse)
    refreshed = client.do_access_token_refresh(state=state, authn_method="client_secret_basic")
    assert userinfo_status(provider, refreshed["access_token"]) == 200
    replay = exchange(client, state, code, verifier)
    assert isinstance(replay, ErrorResponse) and replay["error"] == "invalid_grant", replay
    # RFC 6749 §4.1.2: the tokens issued from the code, the refreshed ones too, are revoked.
    assert userinfo_status(provider, first["access_token"]) == 401
    assert userinfo_status(provider, refreshed["access_token"]) == 401
    gone = requests.post(client.token_endpoint, auth=("jupyterhub", CLIENT_SECRET), timeout=30,
                         data={"grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"]})
    assert gone.json()["error"] == "invalid_grant"


def test_a_failed_exchange_uses_the_code_up(provider: Provider, browser: Browser) -> None:
    client = rp(provider)
    browser.sign_in()
    state, code, verifier = authorize(client, browser)
    wrong_uri = exchange(client, state, code, verifier, redirect_uri=f"{HUB}/elsewhere")
    assert isinstance(wrong_uri, ErrorResponse) and wrong_uri["error"] == "invalid_grant"
    assert exchange(client, state, code, verifier)["error"] == "invalid_grant"

    state, code, verifier = authorize(client, browser)
    wrong_verifier = exchange(client, state, code, rndstr(64))
    assert isinstance(wrong_verifier, ErrorResponse) and wrong_verifier["error"] == "invalid_grant"
    assert exchange(client, state, code, verifier)["error"] == "invalid_grant"

    state, code, _verifier = authorize(client, browser)
    no_verifier = exchange(client, state, code, "")
    assert isinstance(no_verifier, ErrorResponse) and no_verifier["error"] == "invalid_request"


def test_pkce_with_s256_and_state_are_required(provider: Provider, browser: Browser) -> None:
    client = rp(provider)
    browser.sign_in()
    without_pkce, _ = authorization_url(client, rndstr(), pkce=False)
    assert error_of(client, browser.get(without_pkce))["error"] == "invalid_request"
    plain, _ = authorization_url(client, rndstr(), pkce=False, code_challenge="x" * 43, code_challenge_method="plain")
    assert error_of(client, browser.get(plain))["error"] == "invalid_request"
    no_method, _ = authorization_url(client, rndstr(), pkce=False, code_challenge="x" * 43)
    assert error_of(client, browser.get(no_method))["error"] == "invalid_request"
    no_state, _ = authorization_url(client, None)
    answer = browser.get(no_state)
    assert query_of(answer)["error"] == "invalid_request" and "code" not in query_of(answer)


def sign_in_and_come_back(client: Client, browser: Browser, to_login: requests.Response) -> tuple[str, str]:
    """Sign in on the login page authorize sent the browser to; back at authorize, the code: (state, code)."""
    location = to_login.headers["Location"]
    assert urlsplit(location).path == "/login", location
    next_path = parse_qs(urlsplit(location).query)["next"][0]
    assert next_path.startswith("/oauth/authorize?")
    # asked again would loop: the request to come back to no longer asks for a new sign-in
    assert "prompt=" not in next_path and "max_age=" not in next_path
    returned = browser.sign_in(next_url=next_path)
    assert returned.headers["Location"] == next_path
    code_answer = browser.get(provider_url(browser) + next_path)
    response = client.parse_response(AuthorizationResponse, info=urlsplit(code_answer.headers["Location"]).query,
                                     sformat="urlencoded")
    assert isinstance(response, AuthorizationResponse), response
    return response["state"], response["code"]


def provider_url(browser: Browser) -> str:
    return browser.provider.url


def test_prompt_and_max_age(provider: Provider, browser: Browser) -> None:
    client = rp(provider)
    # prompt=none without a portal session: login_required, back to the client, no login page.
    state = rndstr()
    url, _ = authorization_url(client, state, prompt="none")
    refused = error_of(client, browser.get(url))
    assert refused["error"] == "login_required" and refused["state"] == state
    # Signed out, no prompt: the login page, then back to authorize, then the code.
    url, verifier = authorization_url(client, rndstr())
    state, code = sign_in_and_come_back(client, browser, browser.get(url))
    assert isinstance(exchange(client, state, code, verifier), AccessTokenResponse)
    # prompt=none with a session: a code at once.
    state, code, verifier = authorize(client, browser, prompt="none")
    assert isinstance(exchange(client, state, code, verifier), AccessTokenResponse)
    # prompt=login and max_age=0: signed out, asked to sign in again; auth_time is the new sign-in.
    for extra in ({"prompt": "login"}, {"max_age": 0}):
        url, verifier = authorization_url(client, rndstr(), **extra)
        to_login = browser.get(url)
        assert not browser.signed_in()
        time.sleep(1.1)  # auth_time counts whole seconds: the new sign-in must be told from the old one
        signed_in_at = int(time.time())
        state, code = sign_in_and_come_back(client, browser, to_login)
        tokens = exchange(client, state, code, verifier)
        assert tokens["id_token"]["auth_time"] >= signed_in_at, extra
    # max_age the session is younger than: no second sign-in.
    state, code, verifier = authorize(client, browser, max_age=3600)
    assert isinstance(exchange(client, state, code, verifier), AccessTokenResponse)


def test_an_unregistered_redirect_uri_gets_a_page_not_a_redirect(provider: Provider, browser: Browser) -> None:
    client = rp(provider)
    browser.sign_in()
    for target in ("https://evil.example/cb", f"{HUB}/hub/oauth_callback/../../evil", REDIRECT_URI + "x"):
        url, _ = authorization_url(client, rndstr(), redirect_uri=target)
        answer = browser.get(url)
        assert answer.status_code == 400 and "Location" not in answer.headers, (target, answer.status_code)
        assert "text/html" in answer.headers["Content-Type"]
    unknown = browser.get(f"{provider.url}/oauth/authorize?" + urlencode({
        "client_id": "someone-else", "response_type": "code", "redirect_uri": REDIRECT_URI, "state": "s"}))
    assert unknown.status_code == 400 and "Location" not in unknown.headers


def hs256_with_public_key(provider: Provider, payload: str) -> str:
    """A token whose HMAC key is the provider's public key in PEM, as a key-confusion attack signs it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

    key = requests.get(f"{provider.url}/oauth/jwks", timeout=30).json()["keys"][0]
    number = lambda name: int.from_bytes(base64.urlsafe_b64decode(key[name] + "=" * (-len(key[name]) % 4)), "big")  # noqa: E731
    pem = RSAPublicNumbers(number("e"), number("n")).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def test_rp_initiated_logout(provider: Provider, browser: Browser) -> None:
    client = rp(provider)
    browser.sign_in()
    state, code, verifier = authorize(client, browser)
    tokens = exchange(client, state, code, verifier)
    hint = tokens["id_token_jwt"]
    # An unregistered post_logout_redirect_uri: a page, nobody signed out, no redirect.
    bad = EndSessionRequest(id_token_hint=hint, post_logout_redirect_uri="https://evil.example/", state="x")
    answer = browser.get(bad.request(client.provider_info["end_session_endpoint"]))
    assert answer.status_code == 400 and "Location" not in answer.headers and browser.signed_in()
    # A forged hint (alg none) is not a hint: the person is asked, nothing happens yet.
    header, payload, _signature = hint.split(".")
    forged = EndSessionRequest(id_token_hint=f"eyJhbGciOiJub25lIn0.{payload}.",
                               post_logout_redirect_uri=f"{HUB}/hub/", state="x")
    assert browser.get(forged.request(client.provider_info["end_session_endpoint"])).status_code == 400
    # Nor is one signed with HS256 and the provider's public key as the secret (key confusion).
    confused = EndSessionRequest(id_token_hint=hs256_with_public_key(provider, payload),
                                 post_logout_redirect_uri=f"{HUB}/hub/", state="x")
    assert browser.get(confused.request(client.provider_info["end_session_endpoint"])).status_code == 400
    assert browser.signed_in()
    asked = browser.get(EndSessionRequest(post_logout_redirect_uri=f"{HUB}/hub/", client_id="jupyterhub",
                                          state="s1").request(client.provider_info["end_session_endpoint"]))
    assert asked.status_code == 200 and 'name="csrf_token"' in asked.text and browser.signed_in()
    # An RP's own POST without the portal's form token is no "yes" either.
    posted = browser.session.post(client.provider_info["end_session_endpoint"], allow_redirects=False, timeout=30,
                                  data={"post_logout_redirect_uri": f"{HUB}/hub/", "client_id": "jupyterhub"})
    assert posted.status_code == 200 and browser.signed_in()
    # With the hint: signed out at once, every token revoked, back to the client with its state.
    good = EndSessionRequest(id_token_hint=hint, post_logout_redirect_uri=f"{HUB}/hub/", state="bye")
    done = browser.get(good.request(client.provider_info["end_session_endpoint"]))
    assert done.headers["Location"] == f"{HUB}/hub/?state=bye"
    assert not browser.signed_in()
    assert userinfo_status(provider, tokens["access_token"]) == 401


def test_logout_confirmed_on_the_portal_page(provider: Provider, browser: Browser) -> None:
    client = rp(provider)
    browser.sign_in()
    endpoint = client.provider_info["end_session_endpoint"]
    asked = browser.get(EndSessionRequest(post_logout_redirect_uri=f"{HUB}/hub/login", client_id="jupyterhub",
                                          state="s2").request(endpoint))
    assert asked.status_code == 200
    page_form = re.search(r'<form method="post" action="/oauth/logout">(.*?)</form>', asked.text, re.S)
    assert page_form, asked.text
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page_form.group(1)))
    assert set(form) == {"csrf_token", "post_logout_redirect_uri", "client_id", "state"}
    done = browser.session.post(endpoint, data=form, allow_redirects=False, timeout=30)
    assert done.headers["Location"] == f"{HUB}/hub/login?state=s2" and not browser.signed_in()
