"""The JSON API: token scopes, errors, enrollments, and the OpenAPI document it serves.

Every response these tests receive is also checked against the schema the OpenAPI
document gives for that path, method and status, so the document cannot drift from
the handlers unnoticed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from werkzeug.test import TestResponse

from academy.audit.models import AuditEntry
from academy.db import utcnow
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.extensions import db
from academy.users.models import ApiToken, Company, User
from academy.users.tokens import RESTRICTED_SCOPES, SCOPES, create_token, revoke_token

DOC_URI = "urn:academy:openapi"

# (method, path template, scope it needs); the template is the OpenAPI path key.
ENDPOINTS = [
    ("get", "/api/v1/me", "profile:read"),
    ("get", "/api/v1/tracks", "catalog:read"),
    ("get", "/api/v1/cohorts/{cohort_id}", "catalog:read"),
    ("get", "/api/v1/enrollments", "enrollments:read"),
    ("post", "/api/v1/enrollments", "enrollments:write"),
]


# --- helpers ------------------------------------------------------------------------


def _format_checker() -> FormatChecker:
    """Formats the document uses; date-time must be RFC 3339 with an offset."""
    checker = FormatChecker(formats=["email"])

    @checker.checks("date-time", raises=ValueError)
    def is_datetime(value: object) -> bool:
        if not isinstance(value, str):
            return True
        return dt.datetime.fromisoformat(value).tzinfo is not None

    return checker


FORMATS = _format_checker()


def _pointer(*parts: str) -> str:
    return "".join("/" + quote(p.replace("~", "~0").replace("/", "~1"), safe="~{}") for p in parts)


def assert_documented(doc: dict[str, Any], template: str, method: str, response: TestResponse) -> Any:
    """Check that ``response`` has a status documented for the operation and that its
    JSON body validates against the documented schema; returns the body."""
    operation = doc["paths"][template][method]
    status = str(response.status_code)
    assert status in operation["responses"], (
        f"{method.upper()} {template} answered {status}, which the document does not list"
    )
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:300]
    body = response.get_json()
    registry = Registry().with_resource(DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))
    pointer = _pointer("paths", template, method, "responses", status, "content", "application/json", "schema")
    validator = Draft202012Validator({"$ref": f"{DOC_URI}#{pointer}"}, registry=registry, format_checker=FORMATS)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    return body


def make_token(app: Flask, user_id: int, scopes: list[str] | tuple[str, ...], **kwargs: Any) -> str:
    """Create a token with exactly ``scopes`` and return the plain token."""
    with app.app_context():
        _row, plain = create_token(db.session, db.session.get(User, user_id), "test", list(scopes), **kwargs)
        db.session.commit()
        return plain


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def call(client: FlaskClient, method: str, template: str, token: str | None, world: dict[str, int],
         body: Any = None) -> TestResponse:
    """Call an endpoint, filling in path parameters from ``world``."""
    path = template.replace("{cohort_id}", str(world["cohort_id"]))
    headers = bearer(token) if token else {}
    if method == "post":
        return client.post(path, json=body if body is not None else {"cohort_id": world["cohort_id"]},
                           headers=headers)
    return client.get(path, headers=headers)


def _token_row(app: Flask, plain: str) -> ApiToken:
    with app.app_context():
        row = db.session.scalar(db.select(ApiToken).where(ApiToken.token_hash == hashlib.sha256(plain.encode())
                                                          .hexdigest()))
        db.session.expunge(row)
        return row


@pytest.fixture
def doc(client: FlaskClient) -> dict[str, Any]:
    """The OpenAPI document as the portal serves it."""
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


@pytest.fixture
def world(app: Flask, make_user: Any, make_cohort: Any) -> dict[str, int]:
    """A learner with a company and an open cohort with free seats."""
    user_id = make_user(
        "learner", email="api@example.kr", name="김학습",
        company=Company(name="경북정밀(주)", business_number="124-81-00998"),
        region="gumi", industry="auto_parts", job_role="quality", locale="ko",
    )
    return {"user_id": user_id, "cohort_id": make_cohort(capacity=5)}


# --- the OpenAPI document --------------------------------------------------------------


def test_openapi_document_is_public_and_its_schemas_are_valid(client: FlaskClient, doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    assert doc["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    assert_documented(doc, "/api/v1/openapi.json", "get", client.get("/api/v1/openapi.json"))


def test_every_api_route_is_documented_with_its_methods(app: Flask, doc: dict[str, Any]) -> None:
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        template = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes.setdefault(template, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    documented = {
        path: {m for m in item if m in {"get", "post", "put", "patch", "delete"}}
        for path, item in doc["paths"].items()
    }
    assert routes == documented


def test_secured_operations_name_the_scope_their_handler_checks(doc: dict[str, Any]) -> None:
    for method, template, scope in ENDPOINTS:
        assert doc["paths"][template][method]["security"] == [{"token": [scope]}]


# --- authentication and scopes ----------------------------------------------------------


@pytest.mark.parametrize(("method", "template", "scope"), ENDPOINTS)
def test_a_token_with_the_scope_is_accepted(
    app: Flask, client: FlaskClient, doc: dict[str, Any], world: dict[str, int],
    method: str, template: str, scope: str,
) -> None:
    token = make_token(app, world["user_id"], [scope])
    response = call(client, method, template, token, world)
    assert response.status_code == (201 if method == "post" else 200), response.get_data(as_text=True)
    assert_documented(doc, template, method, response)


@pytest.mark.parametrize(("method", "template", "scope"), ENDPOINTS)
def test_a_token_without_the_scope_gets_403(
    app: Flask, client: FlaskClient, doc: dict[str, Any], world: dict[str, int],
    method: str, template: str, scope: str,
) -> None:
    token = make_token(app, world["user_id"], [s for s in SCOPES if s != scope and s not in RESTRICTED_SCOPES])
    response = call(client, method, template, token, world)
    assert response.status_code == 403
    # RFC 6750 §3.1: the challenge names the error and the scope the token lacks
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer realm="academy", error="insufficient_scope", scope="{scope}"')
    body = assert_documented(doc, template, method, response)
    assert body["error"]["code"] == "forbidden"
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Enrollment)) == 0


@pytest.mark.parametrize(("method", "template", "scope"), ENDPOINTS)
@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", "Basic YXBpOmFwaQ==",
                                           "Bearer acad_not-a-real-token", "acad_no-scheme"])
def test_a_missing_or_unknown_token_gets_401_json(
    client: FlaskClient, doc: dict[str, Any], world: dict[str, int],
    method: str, template: str, scope: str, authorization: str | None,
) -> None:
    path = template.replace("{cohort_id}", str(world["cohort_id"]))
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.open(path, method=method.upper(), headers=headers,
                           json={"cohort_id": world["cohort_id"]} if method == "post" else None)
    assert response.status_code == 401
    # RFC 6750 §3: no token at all is challenged without an error code, a bad one with invalid_token
    sent = (authorization or "")[7:].strip() if (authorization or "").lower().startswith("bearer ") else ""
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="academy", error="invalid_token"' if sent else 'Bearer realm="academy"')
    body = assert_documented(doc, template, method, response)
    assert body["error"]["code"] == "unauthorized"
    assert body["error"]["status"] == 401
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]


def test_a_revoked_token_gets_401(app: Flask, client: FlaskClient, doc: dict[str, Any], world: dict[str, int]) -> None:
    token = make_token(app, world["user_id"], ["profile:read"])
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    row = _token_row(app, token)
    with app.app_context():
        revoke_token(db.session, row.id, actor=db.session.get(User, world["user_id"]))
        db.session.commit()
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="academy", error="invalid_token"'
    assert assert_documented(doc, "/api/v1/me", "get", response)["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(("path", "method", "allowed"), [
    ("/api/v1/me", "DELETE", {"GET", "HEAD", "OPTIONS"}),
    ("/api/v1/enrollments", "PUT", {"GET", "HEAD", "OPTIONS", "POST"}),
    ("/login", "PATCH", {"GET", "HEAD", "OPTIONS", "POST"}),
])
def test_a_method_not_allowed_says_which_are(client: FlaskClient, path: str, method: str, allowed: set[str]) -> None:
    """RFC 9110 §15.5.6: a 405 carries ``Allow`` (the error page used to drop the exception's headers)."""
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


def test_a_token_revoked_on_the_profile_page_gets_401(
    app: Flask, client: FlaskClient, login_as: Any, make_user: Any,
) -> None:
    user_id = login_as("learner")
    token = make_token(app, user_id, ["profile:read"])
    row = _token_row(app, token)
    # someone else cannot revoke it
    other = make_token(app, make_user(), ["profile:read"])
    other_row = _token_row(app, other)
    csrf = _csrf_from(client.get("/profile").get_data(as_text=True), "csrf_token")
    assert client.post(f"/profile/tokens/{other_row.id}/revoke", data={"csrf_token": csrf}).status_code == 404
    assert client.get("/api/v1/me", headers=bearer(other)).status_code == 200

    response = client.post(f"/profile/tokens/{row.id}/revoke", data={"csrf_token": csrf})
    assert response.status_code == 302
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    with app.app_context():
        assert db.session.get(ApiToken, row.id).revoked_at is not None


def test_an_expired_token_gets_401(app: Flask, client: FlaskClient, world: dict[str, int]) -> None:
    token = make_token(app, world["user_id"], ["profile:read"], expires_in_days=1)
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    row = _token_row(app, token)
    with app.app_context():
        db.session.get(ApiToken, row.id).expires_at = utcnow() - dt.timedelta(seconds=1)
        db.session.commit()
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_a_token_without_expiry_keeps_working(app: Flask, client: FlaskClient, world: dict[str, int]) -> None:
    token = make_token(app, world["user_id"], ["profile:read"], expires_in_days=None)
    assert _token_row(app, token).expires_at is None
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200


def test_a_deactivated_users_token_gets_401(app: Flask, client: FlaskClient, world: dict[str, int]) -> None:
    token = make_token(app, world["user_id"], ["profile:read"])
    with app.app_context():
        db.session.get(User, world["user_id"]).active = False
        db.session.commit()
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_a_cookie_session_alone_does_not_authenticate_the_api(
    app: Flask, client: FlaskClient, login_as: Any, make_cohort: Any,
) -> None:
    login_as("learner")
    assert client.get("/dashboard").status_code == 200  # the cookie session is live
    cohort_id = make_cohort()
    for response in (
        client.get("/api/v1/me"),
        client.get("/api/v1/enrollments"),
        client.post("/api/v1/enrollments", json={"cohort_id": cohort_id}),
    ):
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Enrollment)) == 0


def test_last_used_at_is_set_when_a_token_is_used(app: Flask, client: FlaskClient, world: dict[str, int]) -> None:
    token = make_token(app, world["user_id"], ["profile:read"])
    assert _token_row(app, token).last_used_at is None
    before = utcnow()
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    first = _token_row(app, token).last_used_at
    assert first is not None and before - dt.timedelta(seconds=1) <= first <= utcnow()
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    assert _token_row(app, token).last_used_at >= first


# --- endpoints ----------------------------------------------------------------------------


def test_me_returns_the_token_owner(app: Flask, client: FlaskClient, doc: dict[str, Any],
                                    world: dict[str, int]) -> None:
    token = make_token(app, world["user_id"], ["profile:read"])
    body = assert_documented(doc, "/api/v1/me", "get", client.get("/api/v1/me", headers=bearer(token)))
    assert body["id"] == world["user_id"]
    assert body["email"] == "api@example.kr"
    assert body["role"] == "learner"
    assert body["company"] == {"name": "경북정밀(주)", "business_number": "124-81-00998"}
    assert (body["region"], body["industry"], body["job_role"]) == ("gumi", "auto_parts", "quality")
    assert "password_hash" not in body


def test_me_for_a_user_without_company_or_profile_fields(app: Flask, client: FlaskClient, doc: dict[str, Any],
                                                         make_user: Any) -> None:
    token = make_token(app, make_user("instructor"), ["profile:read"])
    body = assert_documented(doc, "/api/v1/me", "get", client.get("/api/v1/me", headers=bearer(token)))
    assert (body["role"], body["company"], body["region"]) == ("instructor", None, None)


def test_tracks_lists_courses_and_open_cohorts(app: Flask, client: FlaskClient, doc: dict[str, Any],
                                               world: dict[str, int]) -> None:
    token = make_token(app, world["user_id"], ["catalog:read"])
    body = assert_documented(doc, "/api/v1/tracks", "get", client.get("/api/v1/tracks", headers=bearer(token)))
    [track] = body["tracks"]
    assert [c["id"] for c in track["courses"]] == [f"{track['id']}-course"]
    assert [a["id"] for a in track["courses"][0]["assignments"]] == ["01-intro"]
    assert [c["id"] for c in track["open_cohorts"]] == [world["cohort_id"]]


def test_cohort_shows_its_seats_and_404s_when_unknown(app: Flask, client: FlaskClient, doc: dict[str, Any],
                                                      world: dict[str, int]) -> None:
    token = make_token(app, world["user_id"], ["catalog:read"])
    template = "/api/v1/cohorts/{cohort_id}"
    body = assert_documented(doc, template, "get",
                             client.get(f"/api/v1/cohorts/{world['cohort_id']}", headers=bearer(token)))
    assert (body["id"], body["capacity"], body["seats_left"]) == (world["cohort_id"], 5, 5)
    missing = client.get("/api/v1/cohorts/999999", headers=bearer(token))
    assert missing.status_code == 404
    assert assert_documented(doc, template, "get", missing)["error"]["code"] == "not_found"


def test_post_enrollment_enrolls_then_waitlists_then_conflicts(
    app: Flask, client: FlaskClient, doc: dict[str, Any], make_user: Any, make_cohort: Any,
) -> None:
    cohort_id = make_cohort(capacity=1)
    tokens = [make_token(app, make_user(), ["enrollments:write", "enrollments:read"]) for _ in range(3)]

    def post(token: str) -> TestResponse:
        return client.post("/api/v1/enrollments", json={"cohort_id": cohort_id}, headers=bearer(token))

    first = post(tokens[0])
    assert first.status_code == 201
    body = assert_documented(doc, "/api/v1/enrollments", "post", first)
    assert (body["status"], body["waitlist_position"], body["cohort"]["id"]) == ("enrolled", None, cohort_id)
    assert body["cohort"]["seats_left"] == 0

    for position, token in enumerate(tokens[1:], start=1):
        response = post(token)
        assert response.status_code == 201
        body = assert_documented(doc, "/api/v1/enrollments", "post", response)
        assert (body["status"], body["waitlist_position"]) == ("waitlisted", position)

    again = post(tokens[1])
    assert again.status_code == 409
    assert assert_documented(doc, "/api/v1/enrollments", "post", again)["error"]["code"] == "conflict"

    listing = client.get("/api/v1/enrollments", headers=bearer(tokens[2]))
    body = assert_documented(doc, "/api/v1/enrollments", "get", listing)
    assert [(e["cohort"]["id"], e["status"], e["waitlist_position"]) for e in body["enrollments"]] == [
        (cohort_id, "waitlisted", 2)
    ]
    with app.app_context():
        statuses = db.session.scalars(db.select(Enrollment.status).order_by(Enrollment.id)).all()
        assert statuses == [EnrollmentStatus.enrolled, EnrollmentStatus.waitlisted, EnrollmentStatus.waitlisted]
        assert db.session.get(Cohort, cohort_id).seats_taken == 1


def test_post_enrollment_to_an_approval_cohort_is_pending(
    app: Flask, client: FlaskClient, doc: dict[str, Any], make_user: Any, make_cohort: Any,
) -> None:
    cohort_id = make_cohort(requires_approval=True)
    token = make_token(app, make_user(), ["enrollments:write"])
    response = client.post("/api/v1/enrollments", json={"cohort_id": cohort_id}, headers=bearer(token))
    assert response.status_code == 201
    assert assert_documented(doc, "/api/v1/enrollments", "post", response)["status"] == "pending"


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("not json", "application/json"),
        ('{"cohort_id": 1', "application/json"),
        ("cohort_id=1", "application/x-www-form-urlencoded"),
        ('{"cohort_id": 1}', "text/plain"),
        ("", "application/json"),
        ("{}", "application/json"),
        ('{"cohort": 1}', "application/json"),
        ('{"cohort_id": "1"}', "application/json"),
        ('{"cohort_id": true}', "application/json"),
        ('{"cohort_id": 1.0}', "application/json"),
        ('{"cohort_id": null}', "application/json"),
        ('{"cohort_id": [1]}', "application/json"),
        ("[1]", "application/json"),
        ('"1"', "application/json"),
        ("1", "application/json"),
    ],
)
def test_post_enrollment_rejects_malformed_bodies_with_400(
    app: Flask, client: FlaskClient, doc: dict[str, Any], world: dict[str, int], data: str, content_type: str,
) -> None:
    # cohort 1 exists, so a body read loosely (true == 1, "1" -> 1) would enroll
    assert world["cohort_id"] == 1
    token = make_token(app, world["user_id"], ["enrollments:write"])
    response = client.post("/api/v1/enrollments", data=data, content_type=content_type, headers=bearer(token))
    assert response.status_code == 400
    body = assert_documented(doc, "/api/v1/enrollments", "post", response)
    assert body["error"]["code"] == "invalid"
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Enrollment)) == 0


def test_post_enrollment_to_an_unknown_cohort_is_404(
    app: Flask, client: FlaskClient, doc: dict[str, Any], world: dict[str, int],
) -> None:
    token = make_token(app, world["user_id"], ["enrollments:write"])
    response = client.post("/api/v1/enrollments", json={"cohort_id": 999999}, headers=bearer(token))
    assert response.status_code == 404
    assert assert_documented(doc, "/api/v1/enrollments", "post", response)["error"]["code"] == "not_found"


def test_post_enrollment_to_a_closed_cohort_is_400(
    app: Flask, client: FlaskClient, doc: dict[str, Any], world: dict[str, int],
) -> None:
    with app.app_context():
        db.session.get(Cohort, world["cohort_id"]).enroll_closes_at = utcnow() - dt.timedelta(hours=1)
        db.session.commit()
    token = make_token(app, world["user_id"], ["enrollments:write"])
    response = client.post("/api/v1/enrollments", json={"cohort_id": world["cohort_id"]}, headers=bearer(token))
    assert response.status_code == 400
    assert_documented(doc, "/api/v1/enrollments", "post", response)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Enrollment)) == 0


# --- tokens created on the profile page -------------------------------------------------


def _csrf_from(html: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}"[^>]*value="([^"]+)"', html)
    assert match, f"no {name} on the page"
    return match.group(1)


def test_token_created_on_the_profile_page_is_shown_once_and_only_its_digest_is_stored(
    app: Flask, client: FlaskClient, login_as: Any,
) -> None:
    user_id = login_as("learner")
    html = client.get("/profile").get_data(as_text=True)
    response = client.post("/profile/tokens", data={
        "tok-name": "HR system",
        "tok-scopes": ["profile:read", "catalog:read"],
        "tok-csrf_token": _csrf_from(html, "tok-csrf_token"),
    })
    assert response.status_code == 201
    match = re.search(r'id="new-token">([^<]+)<', response.get_data(as_text=True))
    assert match, "the new token is not shown in the answer to the form"
    plain = match.group(1).strip()
    assert plain.startswith("acad_") and len(plain) > 30
    assert plain not in client.get("/profile").get_data(as_text=True)  # shown once
    with client.session_transaction() as stored_session:  # decoded: never kept in the cookie
        assert plain not in repr(dict(stored_session))

    with app.app_context():
        [row] = db.session.scalars(db.select(ApiToken).where(ApiToken.user_id == user_id)).all()
        assert row.token_hash == hashlib.sha256(plain.encode()).hexdigest()
        assert row.name == "HR system"
        assert sorted(row.scopes) == ["catalog:read", "profile:read"]
        stored = [row.name, row.prefix, row.token_hash, *row.scopes]
        assert all(plain not in value for value in stored)
        assert plain.startswith(row.prefix) and len(row.prefix) < len(plain) // 2
        for entry in db.session.scalars(db.select(AuditEntry)):
            assert plain not in repr(entry.data)

    # the token works for its scopes only
    assert client.get("/api/v1/me", headers=bearer(plain)).status_code == 200
    assert client.get("/api/v1/tracks", headers=bearer(plain)).status_code == 200
    assert client.get("/api/v1/enrollments", headers=bearer(plain)).status_code == 403


def test_token_form_without_csrf_or_scopes_creates_nothing(app: Flask, client: FlaskClient, login_as: Any) -> None:
    login_as("learner")
    html = client.get("/profile").get_data(as_text=True)
    client.post("/profile/tokens", data={"tok-name": "x", "tok-scopes": ["profile:read"]})
    client.post("/profile/tokens", data={"tok-name": "x", "tok-csrf_token": _csrf_from(html, "tok-csrf_token")})
    client.post("/profile/tokens", data={"tok-name": "x", "tok-scopes": ["admin:all"],
                                         "tok-csrf_token": _csrf_from(html, "tok-csrf_token")})
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(ApiToken)) == 0


@pytest.mark.parametrize("cohort_id", [2**31, 2**63, 10**20])
def test_an_out_of_range_cohort_id_is_404_not_500(
    app: Flask, client: FlaskClient, doc: dict[str, Any], world: dict[str, int], db_backend: str,
    cohort_id: int,
) -> None:
    token = make_token(app, world["user_id"], ["enrollments:write", "catalog:read"])
    posted = client.post("/api/v1/enrollments", json={"cohort_id": cohort_id}, headers=bearer(token))
    fetched = client.get(f"/api/v1/cohorts/{cohort_id}", headers=bearer(token))
    assert (posted.status_code, fetched.status_code) == (404, 404)
    assert_documented(doc, "/api/v1/enrollments", "post", posted)
    assert_documented(doc, "/api/v1/cohorts/{cohort_id}", "get", fetched)


def test_every_list_pages_the_same_way_and_refuses_unknown_parameters(
    app: Flask, client: FlaskClient, doc: dict[str, Any], world: dict[str, int], make_track: Any,
) -> None:
    make_track()  # two tracks in all
    token = make_token(app, world["user_id"], ["catalog:read", "enrollments:read"])
    first = client.get("/api/v1/tracks?per_page=1", headers=bearer(token))
    body = assert_documented(doc, "/api/v1/tracks", "get", first)
    assert (len(body["tracks"]), body["page"], body["per_page"], body["total"]) == (1, 1, 1, 2)
    second = client.get("/api/v1/tracks?per_page=1&page=2", headers=bearer(token)).get_json()
    assert second["tracks"][0]["id"] != body["tracks"][0]["id"]
    assert client.get("/api/v1/tracks?page=3&per_page=1", headers=bearer(token)).get_json()["tracks"] == []
    for query in ("per_page=0", "per_page=201", "page=abc", "pgae=2"):
        refused = client.get(f"/api/v1/enrollments?{query}", headers=bearer(token))
        assert refused.status_code == 400, query
        assert_documented(doc, "/api/v1/enrollments", "get", refused)
