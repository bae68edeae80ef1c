"""Security headers, request ids, error pages, redirects, the language switch and cookies."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from academy.catalog.models import Assignment, Track
from academy.extensions import db
from academy.users.models import User
from academy.web.access import public
from academy.web.security import safe_next_path
from tests.conftest import PASSWORD, csrf_token, login
from tests.support import ROOT

TEMPLATES = ROOT / "academy" / "web" / "templates"
SANE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc\s*=)[^>]*>|<script\b[^>]*>\s*[^<\s]", re.I)
STYLE = re.compile(r"<style\b|<[a-z][^>]*\sstyle\s*=", re.I)
HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I)
JS_URL = re.compile(r"""(?:href|src|action|formaction)\s*=\s*["']?\s*javascript:""", re.I)


def assert_security_headers(response: TestResponse, what: str) -> None:
    """The headers every response carries; the CSP allows no inline code."""
    headers = response.headers
    csp = headers.get("Content-Security-Policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives.get("default-src") == ["'self'"], (what, csp)
    assert directives.get("script-src") == ["'self'"], (what, csp)
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, (what, csp)
    assert directives.get("object-src") == ["'none'"], (what, csp)
    assert directives.get("frame-ancestors") == ["'none'"], (what, csp)
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert headers.get("X-Frame-Options") == "DENY", what
    assert headers.get("Referrer-Policy") in {"same-origin", "strict-origin-when-cross-origin", "no-referrer"}, what
    assert SANE_ID.match(headers.get("X-Request-ID", "")), (what, headers.get("X-Request-ID"))


def assert_no_inline_code(html: str, what: str) -> None:
    """No inline script bodies, style attributes or elements, event handlers or javascript: URLs."""
    for pattern in (INLINE_SCRIPT, STYLE, HANDLER, JS_URL):
        match = pattern.search(html)
        assert match is None, f"{what}: {match.group(0)[:120] if match else ''}"


def html_lang(response: TestResponse) -> str:
    match = re.search(r'<html lang="([^"]+)"', response.get_data(as_text=True))
    assert match, "no <html lang> on the page"
    return match.group(1)


# --- every page -------------------------------------------------------------------------


@pytest.fixture
def page_paths(app: Flask, make_cohort: Any) -> list[str]:
    """A path for every GET route but static files, filling in real arguments.

    A new route with an argument not listed here fails the test until it is added.
    """
    cohort_id = make_cohort()
    with app.app_context():
        slug = db.session.scalar(db.select(Track.slug))
        assignment_id = db.session.scalar(db.select(Assignment.id))
        course_id = db.session.scalar(db.select(Assignment.course_id).where(Assignment.id == assignment_id))
        learner_id = db.session.scalar(db.select(User.id)) or 999999
    unknown_submission = "00000000-0000-0000-0000-000000000000"
    arguments = {
        ("grading.assignment", "assignment_id"): assignment_id,
        ("grading.gradebook", "assignment_id"): assignment_id,
        ("grading.download", "assignment_id"): assignment_id,
        ("grading.download", "name"): "intro.ipynb",
        ("grading.submission", "public_id"): unknown_submission,
        ("grading.submission_status", "public_id"): unknown_submission,
        ("grading.feedback", "public_id"): unknown_submission,
        ("grading.nbgrader_feedback", "public_id"): unknown_submission,
        ("catalog.track", "slug"): slug,
        ("catalog.course", "slug"): f"{slug}-course",
        ("auth.reset_password", "token"): "not-a-valid-token",
        ("admin.cohort", "cohort_id"): cohort_id,
        ("api.cohort", "cohort_id"): cohort_id,
        ("labs.launch_page", "lab_id"): 999999,
        ("labs.status", "lab_id"): 999999,
        ("api.certificate", "code"): "ABCD-2345-WXYZ",
        ("certificates.verify", "code"): "ABCD-2345-WXYZ",
        ("certificates.pdf", "code"): "ABCD-2345-WXYZ",
        ("certificates.credential", "code"): "ABCD-2345-WXYZ",
        ("stats.export_table", "name"): "funnel",
        ("stats.export_table", "fmt"): "csv",
        ("api.stats_by", "dimension"): "region",
        ("companies.export_report", "fmt"): "csv",
        ("teaching.gradebook", "course_id"): course_id,
        ("teaching.export_gradebook", "course_id"): course_id,
        ("teaching.export_gradebook", "fmt"): "xlsx",
        ("teaching.learner", "course_id"): course_id,
        ("teaching.learner", "user_id"): learner_id,
        ("teaching.at_risk", "course_id"): course_id,
        ("teaching.question_statistics", "assignment_id"): assignment_id,
        ("teaching.export_questions", "assignment_id"): assignment_id,
        ("teaching.export_questions", "fmt"): "csv",
        ("teaching.publish", "assignment_id"): assignment_id,
        ("teaching.publish_draft", "assignment_id"): assignment_id,
        ("teaching.publish_draft", "token"): "A" * 24,
        ("teaching.publish_status", "assignment_id"): assignment_id,
        ("teaching.publish_status", "token"): "A" * 24,
        ("inbox.message", "message_id"): 999999,
    }
    paths = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.endpoint == "static":
                continue
            values = {name: arguments[(rule.endpoint, name)] for name in rule.arguments}
            paths.append(url_for(rule.endpoint, **values))
    return [*paths, "/no-such-page", "/tracks/no-such-track"]


def test_every_page_sends_the_security_headers_and_no_inline_code(
    app: Flask, client: FlaskClient, login_as: Any, page_paths: list[str],
) -> None:
    anonymous = app.test_client()
    login_as("admin")
    seen_html = 0
    for who, browser in (("anonymous", anonymous), ("admin", client)):
        for path in page_paths:
            response = browser.get(path)
            what = f"{who} GET {path} -> {response.status_code}"
            assert response.status_code < 500, what
            assert_security_headers(response, what)
            if response.mimetype == "text/html":
                seen_html += 1
                assert_no_inline_code(response.get_data(as_text=True), what)
    assert seen_html >= len(page_paths)


def test_error_and_form_responses_send_the_security_headers(app: Flask, client: FlaskClient) -> None:
    responses = {
        "404": client.get("/no-such-page"),
        "405": client.get("/logout"),
        "api 401": client.get("/api/v1/me"),
        "api 404": client.get("/api/v1/no-such-thing"),
        "redirect": client.get("/dashboard"),
    }
    for what, response in responses.items():
        assert_security_headers(response, what)
        if response.mimetype == "text/html":
            assert_no_inline_code(response.get_data(as_text=True), what)


def test_a_csrf_failure_page_carries_the_request_id(client: FlaskClient) -> None:
    response = client.post("/login", data={"email": "a@example.kr", "password": "x"},
                           headers={"X-Request-ID": "trace-csrf-abcdef"})
    assert response.status_code == 400
    assert response.headers.get("X-Request-ID") == "trace-csrf-abcdef"
    assert "trace-csrf-abcdef" in response.get_data(as_text=True)


def test_an_api_rate_limit_answer_carries_the_request_id(client: FlaskClient) -> None:
    # the API blueprint's limit (600 per minute) is checked in Flask-Limiter's before_request
    for _ in range(700):
        response = client.get("/api/v1/openapi.json", headers={"X-Request-ID": "trace-429-abcdef"})
        if response.status_code == 429:
            break
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert response.headers.get("X-Request-ID") == "trace-429-abcdef"
    assert response.get_json()["error"].get("request_id") == "trace-429-abcdef"


def test_a_rate_limited_sign_in_page_carries_the_request_id(client: FlaskClient, make_user: Any) -> None:
    make_user(email="limited@example.kr")
    token = csrf_token(client, "/login")
    for _ in range(30):
        response = client.post("/login", data={"email": "limited@example.kr", "password": "wrong-password-1",
                                               "csrf_token": token}, headers={"X-Request-ID": "trace-429-abcdef"})
        if response.status_code == 429:
            break
    assert response.status_code == 429
    assert response.headers.get("X-Request-ID") == "trace-429-abcdef"
    assert "trace-429-abcdef" in response.get_data(as_text=True)
    assert_security_headers(response, "login 429")


def test_a_csrf_failure_page_still_sends_the_other_security_headers(client: FlaskClient) -> None:
    response = client.post("/login", data={"email": "a@example.kr", "password": "x"})
    assert response.status_code == 400
    headers = response.headers
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
    assert (headers["X-Content-Type-Options"], headers["X-Frame-Options"]) == ("nosniff", "DENY")
    assert "Referrer-Policy" in headers
    assert_no_inline_code(response.get_data(as_text=True), "csrf 400")


def test_templates_have_no_inline_script_style_or_handlers() -> None:
    templates = sorted(TEMPLATES.rglob("*.html"))
    assert len(templates) > 10
    for template in templates:
        assert_no_inline_code(template.read_text(encoding="utf-8"), str(template.relative_to(TEMPLATES)))


def test_inline_code_patterns_catch_what_they_should() -> None:
    for bad in ('<script>alert(1)</script>', '<script type="module">x()</script>', '<p style="color:red">',
                '<style>p{}</style>', '<button onclick="x()">', '<body onload = "x()">',
                '<a href="javascript:alert(1)">', '<script src="/a.js">x()</script>'):
        with pytest.raises(AssertionError):
            assert_no_inline_code(bad, bad)
    assert_no_inline_code('<script src="/static/a.js" defer></script><a data-confirm="x" class="on">', "ok")


# --- request ids ------------------------------------------------------------------------


def test_each_request_gets_its_own_id(client: FlaskClient) -> None:
    ids = {client.get("/").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5
    assert all(SANE_ID.match(i) for i in ids)


@pytest.mark.parametrize("incoming", ["abcd1234", "req-2024.06.01_42", "A" * 64,
                                      "0f8fad5b-d9cb-469f-a165-70867728950e"])
def test_a_sane_incoming_request_id_is_echoed(client: FlaskClient, incoming: str) -> None:
    assert client.get("/", headers={"X-Request-ID": incoming}).headers["X-Request-ID"] == incoming
    assert client.get("/api/v1/me", headers={"X-Request-ID": incoming}).get_json()["error"]["request_id"] == incoming


@pytest.mark.parametrize("incoming", ["", "short", "A" * 65, "<script>alert(1)</script>", "abc 12345678",
                                      "abc;12345678", "../../etc/passwd", "id=1234567\"", "caf\u00e9-12345678"])
def test_an_insane_incoming_request_id_is_replaced(client: FlaskClient, incoming: str) -> None:
    response = client.get("/", headers={"X-Request-ID": incoming})
    outgoing = response.headers["X-Request-ID"]
    assert outgoing != incoming and SANE_ID.match(outgoing)


# --- error pages ----------------------------------------------------------------------------

SECRET_DETAIL = "kaboom-db-password-hunter2"


def _crash() -> Any:
    raise RuntimeError(SECRET_DETAIL)


def _assert_no_traceback(text: str) -> None:
    for leak in ("Traceback", 'File "', "RuntimeError", SECRET_DETAIL, "werkzeug", "site-packages"):
        assert leak not in text, leak


def test_404_page_shows_the_request_id_and_no_traceback(client: FlaskClient) -> None:
    response = client.get("/no-such-page", headers={"X-Request-ID": "trace-404-abcdef"})
    assert response.status_code == 404 and response.mimetype == "text/html"
    text = response.get_data(as_text=True)
    assert "trace-404-abcdef" in text
    _assert_no_traceback(text)


def test_500_page_shows_the_request_id_and_no_traceback(app: Flask) -> None:
    app.add_url_rule("/test-crash", "test_crash", public(_crash))
    response = app.test_client().get("/test-crash", headers={"X-Request-ID": "trace-500-abcdef"})
    assert response.status_code == 500 and response.mimetype == "text/html"
    text = response.get_data(as_text=True)
    assert "trace-500-abcdef" in text
    assert html_lang(response) in {"ko", "en"}
    _assert_no_traceback(text)
    assert_security_headers(response, "500 page")


def test_api_500_is_json_with_the_request_id_and_no_traceback(app: Flask) -> None:
    app.add_url_rule("/api/v1/test-crash", "test_api_crash", public(_crash))
    response = app.test_client().get("/api/v1/test-crash", headers={"X-Request-ID": "trace-api-500-abc"})
    assert response.status_code == 500 and response.mimetype == "application/json"
    assert response.get_json()["error"] == {
        "status": 500, "code": "internal", "message": response.get_json()["error"]["message"],
        "request_id": "trace-api-500-abc",
    }
    _assert_no_traceback(response.get_data(as_text=True))


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/v1/no-such-thing", 404),
    ("GET", "/api/v1/cohorts/not-a-number", 404),
    ("DELETE", "/api/v1/me", 405),
])
def test_api_errors_are_json_not_html(client: FlaskClient, method: str, path: str, status: int) -> None:
    response = client.open(path, method=method, headers={"X-Request-ID": "trace-api-err-1"})
    assert response.status_code == status and response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["status"] == status and isinstance(error["code"], str) and error["message"]
    assert error["request_id"] == "trace-api-err-1"
    assert "<html" not in response.get_data(as_text=True)


# --- redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/x", "/tracks?page=2", "/courses/ml-101#assignments", "/admin/users?q=a%2Fb"])
def test_safe_next_path_keeps_local_paths(target: str) -> None:
    assert safe_next_path(target) == target


@pytest.mark.parametrize("target", [
    None, "", "//evil.example", "///evil.example", "https://evil.example/", "http:evil.example",
    "/\\evil.example", "\\\\evil.example", "/\\/evil.example", "javascript:alert(1)", "JaVaScRiPt:alert(1)",
    "data:text/html,x", "evil.example", " /x", "/x\r\nLocation: //evil.example", "/\t/evil.example",
    "/\n/evil.example", "\x00/x", "/x\x1b",
])
def test_safe_next_path_refuses_other_hosts_and_tricks(target: str | None) -> None:
    assert safe_next_path(target) is None


def switch_language(client: FlaskClient, code: str, next_path: str | None = None, **extra: Any) -> TestResponse:
    data = {"csrf_token": csrf_token(client, "/"), **extra}
    if next_path is not None:
        data["next"] = next_path
    return client.post(f"/lang/{code}", data=data)


def _location(response: TestResponse) -> tuple[str, str, str]:
    parts = urlsplit(response.headers["Location"])
    return parts.netloc, parts.path, parts.query


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/x", "/\\evil.example",
                                    "javascript:alert(1)", "/x\r\nSet-Cookie: a=b"])
def test_language_switch_does_not_redirect_off_site(client: FlaskClient, target: str) -> None:
    response = switch_language(client, "en", target)
    assert response.status_code == 302
    netloc, path, _query = _location(response)
    assert netloc in {"", "academy.test"} and path == "/"
    assert "evil" not in response.headers["Location"]


def test_language_switch_returns_to_a_local_page(client: FlaskClient) -> None:
    response = switch_language(client, "en", "/tracks?page=2")
    assert response.status_code == 302
    netloc, path, query = _location(response)
    assert (netloc in {"", "academy.test"}, path, query) == (True, "/tracks", "page=2")


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/", "/\\evil.example"])
def test_sign_in_does_not_redirect_off_site(client: FlaskClient, make_user: Any, target: str) -> None:
    make_user(email="next@example.kr")
    token = csrf_token(client, "/login")
    response = client.post("/login", query_string={"next": target},
                           data={"email": "next@example.kr", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302
    netloc, path, _query = _location(response)
    assert netloc in {"", "academy.test"} and path == "/dashboard"


# --- the language choice -------------------------------------------------------------------


def test_language_choice_is_remembered_in_the_session(client: FlaskClient) -> None:
    assert html_lang(client.get("/")) == "ko"
    switch_language(client, "en")
    assert html_lang(client.get("/")) == "en"
    assert html_lang(client.get("/tracks")) == "en"
    assert html_lang(client.get("/login")) == "en"
    switch_language(client, "ko")
    assert html_lang(client.get("/")) == "ko"


def test_unknown_language_or_missing_csrf_changes_nothing(client: FlaskClient) -> None:
    assert switch_language(client, "fr").status_code == 302
    assert html_lang(client.get("/")) == "ko"
    assert client.post("/lang/en", data={"next": "/"}).status_code == 400
    assert html_lang(client.get("/")) == "ko"


def test_language_choice_is_saved_on_the_account(app: Flask, client: FlaskClient, login_as: Any) -> None:
    user_id = login_as("learner")
    switch_language(client, "en")
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user.locale == "en"
        email = user.email
    assert html_lang(client.get("/dashboard")) == "en"

    # signed out, the session starts over; signing in again brings the account's choice back
    client.post("/logout", data={"csrf_token": csrf_token(client, "/dashboard")})
    assert html_lang(client.get("/")) == "ko"
    assert login(client, email).status_code == 302
    assert html_lang(client.get("/dashboard")) == "en"

    # and on another device too
    other = app.test_client()
    assert login(other, email).status_code == 302
    assert html_lang(other.get("/dashboard")) == "en"


def test_choice_made_before_signing_in_is_kept_for_a_new_account_locale(
    app: Flask, client: FlaskClient, make_user: Any,
) -> None:
    user_id = make_user(email="fresh@example.kr")
    switch_language(client, "en")
    assert login(client, "fresh@example.kr").status_code == 302
    assert html_lang(client.get("/dashboard")) == "en"
    with app.app_context():
        assert db.session.get(User, user_id).locale == "en"


# --- cookies -------------------------------------------------------------------------------


def _set_cookie(response: TestResponse, name: str) -> str:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"no {name} cookie set; got {response.headers.getlist('Set-Cookie')}")


def _flags(cookie: str) -> set[str]:
    return {part.strip().lower() for part in cookie.split(";")[1:]}


def test_session_and_remember_cookies_are_httponly_and_samesite_lax(client: FlaskClient, make_user: Any) -> None:
    make_user(email="cookie@example.kr")
    token = csrf_token(client, "/login")
    response = client.post("/login", data={"email": "cookie@example.kr", "password": PASSWORD,
                                           "remember": "y", "csrf_token": token})
    assert response.status_code == 302
    for name in ("session", "remember_token"):
        flags = _flags(_set_cookie(response, name))
        assert "httponly" in flags, name
        assert "samesite=lax" in flags, name


@pytest.mark.app_config(env="production")
def test_production_cookies_are_secure_and_hsts_is_sent(client: FlaskClient) -> None:
    response = client.get("/login", base_url="https://academy.test")
    assert response.status_code == 200
    flags = _flags(_set_cookie(response, "session"))
    assert {"secure", "httponly", "samesite=lax"} <= flags
    assert "max-age=" in response.headers.get("Strict-Transport-Security", "")


def test_with_labs_forms_may_lead_to_the_hub_and_nowhere_else() -> None:
    """Signing out answers its form with a redirect through the hub's logout page: the CSP's form-action must
    allow the hub's origin (browsers apply it to redirects after a POST), and only that one."""
    from academy.web.security import CSP, csp_for

    def form_action(csp: str) -> list[str]:
        return next(d.split()[1:] for d in csp.split(";") if d.split() and d.split()[0] == "form-action")

    assert csp_for(None) == CSP and form_action(CSP) == ["'self'"]
    assert form_action(csp_for("https://lab.academy.example/hub/")) == ["'self'", "https://lab.academy.example"]
    assert form_action(csp_for("http://127.0.0.1:8081")) == ["'self'", "http://127.0.0.1:8081"]
    assert csp_for("not a url") == CSP
