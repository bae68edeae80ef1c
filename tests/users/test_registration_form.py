"""The registration form through the test client: its example passes the check, every error shows in one
round, and what was typed stays (but the passwords), also when the form's CSRF token has expired."""

from __future__ import annotations

import html as html_lib
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from academy.extensions import db
from academy.users.models import Company, User
from academy.users.reference import normalize_business_number
from tests.conftest import csrf_token
from tests.users.test_auth import VALID

TYPED_PASSWORD = "12345678901"  # only digits: the policy refuses it (a rule the form itself does not know)


def _post(client: FlaskClient, **overrides: str) -> tuple[int, str]:
    data = {**VALID, **overrides, "csrf_token": csrf_token(client, "/register")}
    response = client.post("/register", data={k: v for k, v in data.items() if v is not None})
    return response.status_code, response.get_data(as_text=True)


def _errors(page: str) -> set[str]:
    return set(re.findall(r'id="([a-z_]+)-error"', page))


def _value(page: str, field: str) -> str | None:
    tag = re.search(rf'<input[^>]*\bid="{field}"[^>]*>', page)
    assert tag, field
    value = re.search(r'\bvalue="([^"]*)"', tag.group(0))
    return html_lib.unescape(value.group(1)) if value else None


def _nothing_stored(app: Flask) -> bool:
    with app.app_context():
        return all(db.session.scalar(db.select(db.func.count()).select_from(m)) == 0 for m in (User, Company))


def test_the_example_business_number_passes_the_check(client: FlaskClient) -> None:
    page = client.get("/register").get_data(as_text=True)
    help_text = re.search(r'id="business_number-help">([^<]*)<', page)
    assert help_text, "the business number has a hint"
    [example] = re.findall(r"\d{3}-\d{2}-\d{5}", help_text.group(1))
    assert normalize_business_number(example) == example


def test_every_error_shows_in_one_round(client: FlaskClient, app: Flask) -> None:
    # form checks (name, region, consent, confirmation) and account rules (password policy,
    # check digit) at once
    status, page = _post(client, name="", region="", consent=None, password=TYPED_PASSWORD,
                         password_confirm="something-else-1", business_number="123-45-67890")
    assert status == 200
    assert _errors(page) >= {"name", "region", "consent", "password", "password_confirm", "business_number"}
    assert _nothing_stored(app)


def test_account_rules_show_together_too(client: FlaskClient, app: Flask, make_user: Any) -> None:
    make_user(email="hong@example.kr")
    status, page = _post(client, email="HONG@example.kr", password=TYPED_PASSWORD, password_confirm=TYPED_PASSWORD,
                         business_number="123-45-67890")
    assert status == 200
    assert _errors(page) == {"email", "password", "business_number"}
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(User)) == 1


def test_what_was_typed_stays_but_the_passwords(client: FlaskClient, app: Flask) -> None:
    status, page = _post(client, password=TYPED_PASSWORD, password_confirm=TYPED_PASSWORD, job_role="")
    assert status == 200 and _errors(page) == {"password", "job_role"}
    assert _value(page, "name") == VALID["name"]
    assert _value(page, "email") == VALID["email"]
    assert _value(page, "company_name") == VALID["company_name"]
    assert _value(page, "business_number") == VALID["business_number"]
    assert re.search(r'<option selected value="gumi">|<option value="gumi" selected', page)
    assert re.search(r'<option selected value="auto_parts">|<option value="auto_parts" selected', page)
    assert re.search(r'<input[^>]*checked[^>]*id="consent"|<input[^>]*id="consent"[^>]*checked', page)
    assert TYPED_PASSWORD not in page
    assert _value(page, "password") in (None, "") and _value(page, "password_confirm") in (None, "")
    # corrected, it goes through
    status, _page = _post(client)
    assert status == 302


def test_an_expired_form_keeps_what_was_typed(client: FlaskClient, app: Flask) -> None:
    client.get("/register")
    data = {**VALID, "csrf_token": "expired-or-forged"}
    response = client.post("/register", data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "alert-warning" in page
    assert _value(page, "name") == VALID["name"] and _value(page, "email") == VALID["email"]
    assert _value(page, "business_number") == VALID["business_number"]
    assert VALID["password"] not in page
    assert _nothing_stored(app)
    # the page carries a fresh token: sending it again works
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(
        r'id="csrf_token"[^>]*value="([^"]+)"', page)
    assert token
    assert client.post("/register", data={**VALID, "csrf_token": token.group(1)}).status_code == 302
