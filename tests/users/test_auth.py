"""Accounts through the real forms: registration, sign-in, sign-out, reset, rate limits."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from academy.extensions import db
from academy.mail.models import OutboxMessage
from academy.users.models import Company, Role, User
from tests.conftest import PASSWORD, csrf_token, login

VALID = {
    "name": "홍길동",
    "email": "Hong@Example.kr",
    "password": "forge-ahead-77",
    "password_confirm": "forge-ahead-77",
    "company_name": "경북정밀(주)",
    "business_number": "124-81-00998",
    "region": "gumi",
    "industry": "auto_parts",
    "job_role": "quality",
    "consent": "y",
}


def register(client: FlaskClient, **overrides: str) -> Any:
    data = {**VALID, **overrides, "csrf_token": csrf_token(client, "/register")}
    data = {k: v for k, v in data.items() if v is not None}
    return client.post("/register", data=data)


def test_registration_creates_a_learner_with_consent_and_company(client: FlaskClient, app: Flask) -> None:
    response = register(client)
    assert response.status_code == 302
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.email == "hong@example.kr"))
        assert user is not None and user.role is Role.learner
        assert user.consent_at is not None and user.consent_version
        assert user.company.business_number == "124-81-00998"
        assert user.password_hash.startswith("$argon2id$")
    # signed in straight away
    assert client.get("/dashboard").status_code == 200


def test_registration_field_errors_are_shown_in_korean_and_nothing_is_stored(
    client: FlaskClient, app: Flask
) -> None:
    response = register(client, business_number="123-45-67890", consent="")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "is-invalid" in html
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(User)) == 0
        assert db.session.scalar(db.select(db.func.count()).select_from(Company)) == 0
    assert 'lang="ko"' in html


def test_bad_business_number_checksum_is_a_field_error(client: FlaskClient, app: Flask) -> None:
    response = register(client, business_number="123-45-67890")
    assert response.status_code == 200
    assert re.search(r'id="business_number-error"', response.get_data(as_text=True))


def test_duplicate_email_is_refused_case_insensitively(client: FlaskClient, app: Flask, make_user: Any) -> None:
    make_user(email="hong@example.kr")
    response = register(client, email="HONG@example.kr")
    assert response.status_code == 200
    assert 'id="email-error"' in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(User)) == 1


def test_weak_password_is_refused(client: FlaskClient, app: Flask) -> None:
    response = register(client, password="12345678901", password_confirm="12345678901")
    assert 'id="password-error"' in response.get_data(as_text=True)


def test_login_logout_and_wrong_password(client: FlaskClient, make_user: Any) -> None:
    make_user(email="kim@example.kr")
    bad = login(client, "kim@example.kr", "wrong-password-1")
    assert bad.status_code == 200
    assert client.get("/dashboard").status_code == 302
    good = login(client, "KIM@example.kr")
    assert good.status_code == 302 and good.headers["Location"].endswith("/dashboard")
    assert client.get("/dashboard").status_code == 200
    token = csrf_token(client, "/dashboard")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/dashboard").status_code == 302


def test_remember_me_sets_a_persistent_cookie(client: FlaskClient, make_user: Any) -> None:
    make_user(email="lee@example.kr")
    token = csrf_token(client)
    response = client.post("/login", data={"email": "lee@example.kr", "password": PASSWORD,
                                           "remember": "y", "csrf_token": token})
    cookies = response.headers.getlist("Set-Cookie")
    remember = [c for c in cookies if c.startswith("remember_token=")]
    assert remember and "HttpOnly" in remember[0] and "Expires=" in remember[0]


def test_session_is_renewed_on_login(client: FlaskClient, make_user: Any) -> None:
    make_user(email="park@example.kr")
    client.get("/login")
    before = client.get_cookie("session", domain="academy.test")
    login(client, "park@example.kr")
    after = client.get_cookie("session", domain="academy.test")
    assert before is not None and after is not None and before.value != after.value


def test_next_redirect_only_to_own_paths(client: FlaskClient, make_user: Any) -> None:
    make_user(email="choi@example.kr")
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        token = csrf_token(client)
        response = client.post(f"/login?next={evil}", data={"email": "choi@example.kr", "password": PASSWORD,
                                                             "csrf_token": token})
        assert response.status_code == 302
        assert response.headers["Location"].endswith("/dashboard"), evil
        client.post("/logout", data={"csrf_token": csrf_token(client, "/dashboard")})
    token = csrf_token(client)
    response = client.post("/login?next=/tracks", data={"email": "choi@example.kr", "password": PASSWORD,
                                                        "csrf_token": token})
    assert response.headers["Location"].endswith("/tracks")


def test_login_is_rate_limited_with_a_clear_message(client: FlaskClient, make_user: Any) -> None:
    make_user(email="jung@example.kr")
    token = csrf_token(client)
    statuses = [
        client.post("/login", data={"email": "jung@example.kr", "password": "nope-nope-1", "csrf_token": token})
        .status_code
        for _ in range(11)
    ]
    assert statuses[:10] == [200] * 10
    assert statuses[10] == 429
    page = client.post("/login", data={"email": "jung@example.kr", "password": PASSWORD, "csrf_token": token})
    assert page.status_code == 429
    assert "잠시" in page.get_data(as_text=True)


def test_forms_without_csrf_token_are_refused(client: FlaskClient, make_user: Any) -> None:
    make_user(email="yoon@example.kr")
    response = client.post("/login", data={"email": "yoon@example.kr", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/dashboard").status_code == 302


def _reset_link(app: Flask, email: str) -> str:
    with app.app_context():
        body = db.session.scalars(
            db.select(OutboxMessage.body).where(OutboxMessage.recipient == email).order_by(OutboxMessage.id.desc())
        ).first()
    assert body, "no reset message in the outbox"
    match = re.search(r"https?://\S+/password/reset/\S+", body)
    assert match
    return match.group(0).split("academy.test", 1)[1]


def test_password_reset_is_single_use(client: FlaskClient, app: Flask, make_user: Any) -> None:
    make_user(email="han@example.kr")
    token = csrf_token(client, "/password/forgot")
    response = client.post("/password/forgot", data={"email": "han@example.kr", "csrf_token": token})
    assert response.status_code == 302
    path = _reset_link(app, "han@example.kr")
    form_token = csrf_token(client, path)
    done = client.post(path, data={"password": "new-secret-88", "password_confirm": "new-secret-88",
                                   "csrf_token": form_token})
    assert done.status_code == 302
    assert login(client, "han@example.kr", "new-secret-88").status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client, "/dashboard")})
    again = client.get(path)
    assert again.status_code == 400
    assert "이미 사용" in again.get_data(as_text=True)


def test_unknown_email_gets_the_same_answer_and_no_mail(client: FlaskClient, app: Flask) -> None:
    token = csrf_token(client, "/password/forgot")
    response = client.post("/password/forgot", data={"email": "nobody@example.kr", "csrf_token": token})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(OutboxMessage)) == 0


def test_expired_reset_link_is_refused(client: FlaskClient, app: Flask, make_user: Any) -> None:
    from itsdangerous import URLSafeTimedSerializer

    from academy.users.services import make_reset_token

    user_id = make_user(email="oh@example.kr")
    with app.app_context():
        user = db.session.get(User, user_id)
        token = make_reset_token(user, app.config["SECRET_KEY"])
        # Re-sign the same payload with a timestamp two hours in the past.
        serializer = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="academy.password-reset")
        payload = serializer.loads(token)
    import time
    from unittest import mock

    with mock.patch.object(time, "time", return_value=time.time() - 7200), app.app_context():
        old = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="academy.password-reset").dumps(payload)
    response = client.get(f"/password/reset/{old}")
    assert response.status_code == 400
    assert "만료" in response.get_data(as_text=True)
    forged = client.get(f"/password/reset/{token}x")
    assert forged.status_code == 400


def test_account_without_consent_is_asked_before_anything_else(
    client: FlaskClient, app: Flask, make_user: Any
) -> None:
    make_user(email="imported@example.kr", consent_at=None)
    response = login(client, "imported@example.kr")
    assert response.status_code == 302
    page = client.get("/dashboard")
    assert page.status_code == 302 and "/consent" in page.headers["Location"]
    token = csrf_token(client, "/consent")
    refused = client.post("/consent?next=/tracks", data={"csrf_token": token})
    assert refused.status_code == 200
    accepted = client.post("/consent?next=/tracks", data={"csrf_token": token, "consent": "y"})
    assert accepted.status_code == 302 and accepted.headers["Location"].endswith("/tracks")
    assert client.get("/dashboard").status_code == 200
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.email == "imported@example.kr"))
        assert user.consent_at is not None and user.consent_version
