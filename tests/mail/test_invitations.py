"""Employees an admin imports get their own invitation, not the password-reset mail.

The admin uploads a CSV on the import page; the delivery job hands each invitation to a real SMTP
server (aiosmtpd, the fixtures of tests/mail/test_mail.py).  The mail names the company, is in the
person's language (Korean unless their account says otherwise), and links to a page where they
choose a password for 7 days, once; using it signs them in and leads to the consent step that
imported accounts need.  An expired or used link says which and offers a new one.
"""

from __future__ import annotations

import csv
import io
import re
import time
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import force_locale
from flask_babel import gettext as _

from academy.extensions import db
from academy.users import services
from academy.users.models import User
from tests.conftest import csrf_token
from tests.mail.test_mail import Mailbox, jobs, mailbox, smtp_server  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

COMPANY = "경북정밀(주)"
NEW_PASSWORD = "새비밀번호-2026"


def _csv(*emails: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["이메일", "이름", "회사명", "사업자등록번호"])
    for i, email in enumerate(emails):
        writer.writerow([email, f"직원{i}", COMPANY, "124-81-00998"])
    return out.getvalue().encode("cp949")


def _import(client: FlaskClient, data: bytes) -> Any:
    token = csrf_token(client, "/admin/users/import")
    return client.post("/admin/users/import", data={"file": (io.BytesIO(data), "직원.csv"), "csrf_token": token},
                       content_type="multipart/form-data")


def _link(mail: Message) -> str:
    body = mail.get_content()
    [url] = re.findall(r"https?://academy\.test(/password/reset/[A-Za-z0-9._-]+)", body)
    return url


def _subjects(app: Flask, locale: str) -> tuple[str, str]:
    """The invitation's subject in ``locale``, and the reset mail's (which it must not be)."""
    with app.test_request_context(), force_locale(locale):
        subject = _("%(company)s registered you for the AI Saemaul Academy", company=COMPANY)
        reset = _("Reset your AI Saemaul Academy password")
    return subject, reset


def test_imported_employees_receive_an_invitation_naming_their_company(
    app: Flask, client: FlaskClient, login_as: Any, mailbox: Mailbox, jobs: Any,  # noqa: F811
) -> None:
    login_as("admin")
    assert _import(client, _csv("kim@example.kr", "lee@example.kr")).status_code == 200
    assert jobs.run() == 2
    by_recipient = {m["To"]: m for m in mailbox.received}
    assert set(by_recipient) == {"kim@example.kr", "lee@example.kr"}
    for mail in by_recipient.values():
        subject, reset_subject = _subjects(app, "ko")
        assert mail["Subject"] == subject and subject != reset_subject
        body = mail.get_content()
        assert COMPANY in mail["Subject"] and COMPANY in body
        assert "7" in body  # the link works for 7 days ...
        assert "one hour" not in body.lower() and "1시간" not in body  # ... not the reset mail's hour
        assert "ignore" not in body.lower() and "무시" not in body
        _link(mail)


def test_the_invitation_is_in_the_persons_language(app: Flask, make_user: Any) -> None:
    with app.app_context():
        company = services.get_or_create_company(db.session, COMPANY, "124-81-00998")
        for email, locale in (("ko@example.kr", None), ("en@example.kr", "en")):
            user = User(email=email, name="사람", password_hash="!x", company=company, locale=locale)
            db.session.add(user)
            db.session.flush()
            services.send_invitation(db.session, user, secret_key="k" * 40, actor=None,
                                     invite_url_for=lambda token: f"http://academy.test/password/reset/{token}")
        db.session.commit()
        from academy.mail.models import OutboxMessage

        subjects = dict(db.session.execute(db.select(OutboxMessage.recipient, OutboxMessage.subject)).all())
    for email, locale in (("ko@example.kr", "ko"), ("en@example.kr", "en")):
        assert subjects[email] == _subjects(app, locale)[0]
    assert "registered you" in subjects["en@example.kr"]


def test_the_link_sets_the_password_signs_in_and_leads_to_consent_once(
    app: Flask, client: FlaskClient, login_as: Any, mailbox: Mailbox, jobs: Any,  # noqa: F811
) -> None:
    login_as("admin")
    _import(client, _csv("kim@example.kr"))
    jobs.run()
    [mail] = mailbox.received
    path = _link(mail)

    visitor = app.test_client()
    page = visitor.get(path)
    assert page.status_code == 200 and COMPANY in page.get_data(as_text=True)
    # a weak password is a field error and the link still works
    token = csrf_token(visitor, path)
    weak = visitor.post(path, data={"password": "short", "password_confirm": "short", "csrf_token": token})
    assert weak.status_code == 200 and "invalid-feedback" in weak.get_data(as_text=True)
    done = visitor.post(path, data={"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD, "csrf_token": token})
    assert done.status_code == 302 and urlsplit(done.headers["Location"]).path == "/consent"
    # signed in: the consent page opens, and agreeing leads on
    assert visitor.get("/consent").status_code == 200
    agreed = visitor.post("/consent", data={"consent": "y", "csrf_token": csrf_token(visitor, "/consent")})
    assert agreed.status_code == 302 and "/consent" not in agreed.headers["Location"]
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.email == "kim@example.kr"))
        assert user.consent_at is not None
        assert services.authenticate(db.session, "kim@example.kr", NEW_PASSWORD) is not None
    # the link is used up: it says so and offers a new one and sign-in
    again = app.test_client().get(path)
    html = again.get_data(as_text=True)
    assert again.status_code == 400
    assert 'href="/password/forgot"' in html and 'href="/login"' in html
    with app.app_context():
        used = _("This invitation link has already been used: your password is set. Sign in, or ask for a new "
                 "link below if you forgot it.")
    assert used.split(":")[0] in html


def test_an_expired_invitation_says_so_and_the_new_link_is_a_new_invitation(
    app: Flask, make_user: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from itsdangerous import TimestampSigner

    from academy.mail.models import OutboxMessage
    from academy.users.passwords import unusable_password_hash

    user_id = make_user(consent_at=None, password_hash=unusable_password_hash())  # as imported
    eight_days_ago = int(time.time()) - 8 * 24 * 3600
    with app.app_context():
        user = db.session.get(User, user_id)
        with monkeypatch.context() as patch:
            patch.setattr(TimestampSigner, "get_timestamp", lambda self: eight_days_ago)
            old = services.make_invitation_token(user, app.config["SECRET_KEY"])
        fresh = services.make_invitation_token(user, app.config["SECRET_KEY"])
        email = user.email
        expired_text = _("This invitation link has expired: it worked for 7 days. Ask for a new link below and "
                         "we will send it to your email.")
    client = app.test_client()
    response = client.get(f"/password/reset/{old}")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert expired_text.split(":")[0] in html and 'href="/password/forgot"' in html
    assert client.get(f"/password/reset/{fresh}").status_code == 200  # within the 7 days it works
    # asking for a new link sends a new invitation (not the one-hour reset mail), and it works
    token = csrf_token(client, "/password/forgot")
    assert client.post("/password/forgot", data={"email": email, "csrf_token": token}).status_code == 302
    with app.app_context():
        [message] = db.session.scalars(db.select(OutboxMessage)).all()
        invitation_subject = _("%(company)s registered you for the AI Saemaul Academy",
                               company=_("The company you work for"))
    assert message.subject == invitation_subject
    new_path = re.search(r"/password/reset/[A-Za-z0-9._-]+", message.body)
    assert new_path
    form_token = csrf_token(client, new_path.group(0))
    done = client.post(new_path.group(0), data={"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD,
                                                "csrf_token": form_token})
    assert done.status_code == 302 and urlsplit(done.headers["Location"]).path == "/consent"


def test_an_account_with_a_password_still_gets_the_reset_mail(app: Flask, make_user: Any) -> None:
    from academy.mail.models import OutboxMessage

    user_id = make_user()
    with app.app_context():
        email = db.session.get(User, user_id).email
    client = app.test_client()
    token = csrf_token(client, "/password/forgot")
    client.post("/password/forgot", data={"email": email, "csrf_token": token})
    with app.app_context():
        [message] = db.session.scalars(db.select(OutboxMessage)).all()
        assert message.subject == _("Reset your AI Saemaul Academy password")
