"""Employee CSV import: encodings Korean Excel writes, all-or-nothing validation, the admin page.

Reasons in the report are translated text, so these tests look for line numbers and
the offending values in them rather than for wording.
"""

from __future__ import annotations

import csv
import io
import random
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from academy.extensions import db
from academy.mail.models import OutboxMessage
from academy.users.importer import ImportReport, import_employees
from academy.users.models import Company, Role, User
from academy.users.reference import normalize_business_number
from academy.users.services import user_for_password_link
from tests.conftest import csrf_token

# Checksum-valid business registration numbers (checked in the first test).
BRN_A, BRN_B, BRN_C = "124-81-00998", "220-81-62517", "104-81-34567"
BAD_BRN = "104-81-34566"  # one off from BRN_C: the check digit is wrong

HEADER = ["이메일", "이름", "회사명", "사업자등록번호", "지역", "업종", "직무"]
KEYS = ["email", "name", "company", "brn", "region", "industry", "job"]

GOOD_ROWS: list[dict[str, str]] = [
    {"email": "kim@example.kr", "name": "김철수", "company": "경북정밀(주)", "brn": BRN_A,
     "region": "구미시", "industry": "auto_parts", "job": "quality"},
    {"email": "Lee@Example.KR", "name": "이영희", "company": "경북정밀(주)", "brn": "1248100998",
     "region": "포항시", "industry": "", "job": ""},
    {"email": "park@example.kr", "name": "박민수", "company": "구미전자", "brn": BRN_B,
     "region": "Gyeongju-si", "industry": "electronics", "job": "it"},
    {"email": "choi@example.kr", "name": "최지우", "company": "포항소재", "brn": BRN_C,
     "region": "andong", "industry": "steel", "job": "production"},
]
EXPECTED = {  # email -> (name, business number, region, industry, job role)
    "kim@example.kr": ("김철수", BRN_A, "gumi", "auto_parts", "quality"),
    "lee@example.kr": ("이영희", BRN_A, "pohang", None, None),
    "park@example.kr": ("박민수", BRN_B, "gyeongju", "electronics", "it"),
    "choi@example.kr": ("최지우", BRN_C, "andong", "steel", "production"),
}


def csv_bytes(rows: list[dict[str, str]], encoding: str = "utf-8", header: list[str] | None = None,
              keys: list[str] | None = None) -> bytes:
    """A CSV file as Excel writes it (CRLF line ends) in ``encoding``."""
    header = header or HEADER
    keys = keys or KEYS
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(k, "") for k in keys])
    return out.getvalue().encode(encoding)


def run_import(app: Flask, data: bytes) -> ImportReport:
    """Import as the admin page does: commit when the report is clean, else roll back."""
    with app.app_context():
        report = import_employees(
            db.session, data, actor=None, secret_key=app.config["SECRET_KEY"],
            invite_url_for=lambda token: f"http://academy.test/password/reset/{token}",
        )
        if report.ok:
            db.session.commit()
        else:
            db.session.rollback()
        return report


def counts(app: Flask) -> tuple[int, int, int]:
    """(users, companies, outbox messages)."""
    with app.app_context():
        return tuple(  # type: ignore[return-value]
            db.session.scalar(db.select(db.func.count()).select_from(model))
            for model in (User, Company, OutboxMessage)
        )


def reset_links(app: Flask) -> dict[str, list[str]]:
    """Set-password link URLs in the outbox (invitations), by recipient."""
    with app.app_context():
        links: dict[str, list[str]] = {}
        for message in db.session.scalars(db.select(OutboxMessage)):
            links.setdefault(message.recipient, []).extend(
                re.findall(r"https?://academy\.test/password/reset/[A-Za-z0-9._-]+", message.body)
            )
        return links


def test_test_data_business_numbers_are_checksum_valid() -> None:
    for number in (BRN_A, BRN_B, BRN_C):
        assert normalize_business_number(number) == number
    assert normalize_business_number("1248100998") == BRN_A
    with pytest.raises(ValueError):
        normalize_business_number(BAD_BRN)


# --- encodings -------------------------------------------------------------------------


@pytest.mark.parametrize(("encoding", "reported"), [("utf-8-sig", "utf-8"), ("utf-8", "utf-8"), ("cp949", "cp949")])
def test_korean_csv_in_each_encoding_imports_every_row(app: Flask, encoding: str, reported: str) -> None:
    report = run_import(app, csv_bytes(GOOD_ROWS, encoding))
    assert report.file_errors == []
    assert [(r.line, r.errors) for r in report.rows] == [(2, []), (3, []), (4, []), (5, [])]
    assert report.ok and report.created == 4
    assert report.encoding == reported
    with app.app_context():
        users = {u.email: u for u in db.session.scalars(db.select(User))}
        assert set(users) == set(EXPECTED)
        for email, (name, brn, region, industry, job) in EXPECTED.items():
            user = users[email]
            assert (user.name, user.company.business_number, user.region, user.industry, user.job_role) == (
                name, brn, region, industry, job,
            )
            assert user.role is Role.learner and user.active
        # the same business number means the same company
        assert db.session.scalar(db.select(db.func.count()).select_from(Company)) == 3
        assert users["kim@example.kr"].company_id == users["lee@example.kr"].company_id
        assert users["kim@example.kr"].company.name == "경북정밀(주)"


def test_each_imported_person_gets_a_working_invitation_link_and_no_usable_password(app: Flask) -> None:
    from academy.users.services import authenticate

    run_import(app, csv_bytes(GOOD_ROWS))
    links = reset_links(app)
    assert set(links) == set(EXPECTED)
    assert all(len(urls) == 1 for urls in links.values())
    with app.app_context():
        for email, [url] in links.items():
            token = urlsplit(url).path.rsplit("/", 1)[1]
            link = user_for_password_link(db.session, token, secret_key=app.config["SECRET_KEY"], reset_max_age=3600)
            assert link.invitation and link.user.email == email
            user = link.user
            assert authenticate(db.session, email, "") is None
            assert authenticate(db.session, email, user.password_hash) is None


def test_optional_role_column_can_import_instructors(app: Flask) -> None:
    rows = [dict(GOOD_ROWS[0], role="instructor"), dict(GOOD_ROWS[2], role="Learner"), dict(GOOD_ROWS[3], role="")]
    report = run_import(app, csv_bytes(rows, header=[*HEADER, "역할"], keys=[*KEYS, "role"]))
    assert report.ok, [(r.line, r.errors) for r in report.rows]
    with app.app_context():
        roles = dict(db.session.execute(db.select(User.email, User.role)).all())
    assert roles == {"kim@example.kr": Role.instructor, "park@example.kr": Role.learner,
                     "choi@example.kr": Role.learner}


def test_english_headers_work_too(app: Flask) -> None:
    header = ["email", "name", "company_name", "business_number", "region", "industry", "job_role"]
    report = run_import(app, csv_bytes(GOOD_ROWS[2:], header=header))
    assert report.ok and report.created == 2


# --- one bad row rejects the file --------------------------------------------------------

# id -> (changes to the row on line 3, a fragment the reason must contain or None)
BAD_ROWS: dict[str, tuple[dict[str, str], str | None]] = {
    "bad email": ({"email": "not-an-email"}, "not-an-email"),
    "bad checksum": ({"brn": BAD_BRN}, BAD_BRN),
    "too short business number": ({"brn": "124-81-0099"}, "124-81-0099"),
    "unknown region": ({"region": "서울특별시"}, "서울특별시"),
    "unknown industry": ({"industry": "shipbuilding"}, "shipbuilding"),
    "duplicate in file": ({"email": "KIM@example.kr"}, "2"),
    "existing account": ({"email": "Taken@Example.kr"}, None),
    "role admin": ({"role": "admin"}, "admin"),
    "empty name": ({"name": "  "}, None),
    "empty email": ({"email": ""}, None),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_one_bad_row_imports_nothing_and_is_named(app: Flask, make_user: Any, case: str) -> None:
    make_user(email="taken@example.kr")
    before = counts(app)
    changes, fragment = BAD_ROWS[case]
    rows = [dict(r, role="learner") for r in GOOD_ROWS]
    rows[1] = {**rows[1], "email": "bad@example.kr", **changes}  # line 3
    report = run_import(app, csv_bytes(rows, header=[*HEADER, "역할"], keys=[*KEYS, "role"]))

    assert not report.ok and report.created == 0 and report.file_errors == []
    assert [r.line for r in report.rows] == [2, 3, 4, 5]
    [bad] = report.rejected
    assert bad.line == 3 and bad.errors
    if fragment is not None:
        assert any(fragment in error for error in bad.errors), bad.errors
    assert counts(app) == before
    with app.app_context():
        assert db.session.scalars(db.select(User.email)).all() == ["taken@example.kr"]


def test_every_bad_row_is_reported_at_once(app: Flask, make_user: Any) -> None:
    make_user(email="taken@example.kr")
    before = counts(app)
    rows = [
        GOOD_ROWS[0],                                              # 2 ok
        dict(GOOD_ROWS[1], email="nope"),                          # 3 bad email
        dict(GOOD_ROWS[2], brn=BAD_BRN),                           # 4 bad checksum
        GOOD_ROWS[3],                                              # 5 ok
        dict(GOOD_ROWS[3], email="x@example.kr", region="Seoul"),  # 6 unknown region
        dict(GOOD_ROWS[3], email="kim@example.kr"),                # 7 duplicate of line 2
        dict(GOOD_ROWS[3], email="taken@example.kr"),              # 8 existing account
    ]
    report = run_import(app, csv_bytes(rows, "cp949"))
    assert {r.line: bool(r.errors) for r in report.rows} == {2: False, 3: True, 4: True, 5: False, 6: True,
                                                             7: True, 8: True}
    assert report.created == 0
    assert counts(app) == before


# --- file-level errors --------------------------------------------------------------------

_garbage = random.Random(20240601)
FILE_ERRORS: dict[str, bytes] = {
    "empty": b"",
    "only whitespace": b"\r\n \r\n",
    "header only": csv_bytes([], "utf-8-sig"),
    "header and blank lines": csv_bytes([], "utf-8") + b",,,,,,\r\n\r\n",
    "binary garbage": bytes(_garbage.randrange(256) for _ in range(4096)),
    "png image": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00",
    "utf-16 text": csv_bytes(GOOD_ROWS, "utf-16"),  # Excel's "Unicode text"; the codec writes a BOM
    "missing business number column": csv_bytes(GOOD_ROWS, header=HEADER[:3] + HEADER[4:],
                                                keys=KEYS[:3] + KEYS[4:]),
    "missing email column": csv_bytes(GOOD_ROWS, header=HEADER[1:], keys=KEYS[1:]),
    "unknown column": csv_bytes(GOOD_ROWS, header=[*HEADER, "비밀번호"], keys=[*KEYS, "password"]),
}


def test_a_file_over_the_row_limit_is_refused_whole(app: Flask) -> None:
    from academy.users.importer import MAX_ROWS

    rows = [dict(GOOD_ROWS[2], email=f"person{i}@example.kr") for i in range(MAX_ROWS + 1)]
    report = run_import(app, csv_bytes(rows))
    assert report.file_errors and report.created == 0
    assert counts(app) == (0, 0, 0)


@pytest.mark.parametrize("case", list(FILE_ERRORS))
def test_unusable_file_is_a_file_level_error_and_imports_nothing(app: Flask, make_user: Any, case: str) -> None:
    make_user(email="someone@example.kr")
    before = counts(app)
    report = run_import(app, FILE_ERRORS[case])
    assert report.file_errors, case
    assert report.rows == [] and report.created == 0 and not report.ok
    assert counts(app) == before


# --- the admin page -------------------------------------------------------------------------


def upload(client: FlaskClient, data: bytes, filename: str = "직원명단.csv", token: str | bool | None = None) -> Any:
    """Post a file to the import page; ``token=False`` leaves the CSRF token out."""
    form: dict[str, Any] = {"file": (io.BytesIO(data), filename)}
    if token is not False:
        form["csrf_token"] = token or csrf_token(client, "/admin/users/import")
    return client.post("/admin/users/import", data=form, content_type="multipart/form-data")


def test_a_learner_cannot_import(app: Flask, client: FlaskClient, login_as: Any) -> None:
    login_as("learner")
    token = csrf_token(client, "/profile")
    assert client.get("/admin/users/import").status_code == 403
    assert upload(client, csv_bytes(GOOD_ROWS), token=token).status_code == 403
    assert counts(app) == (1, 0, 0)


def test_an_anonymous_visitor_is_sent_to_sign_in(app: Flask, client: FlaskClient) -> None:
    response = client.get("/admin/users/import")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_admin_imports_a_clean_file_and_links_go_out(app: Flask, client: FlaskClient, login_as: Any) -> None:
    login_as("admin")
    response = upload(client, csv_bytes(GOOD_ROWS, "cp949"))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'id="import-report"' in html and "table-danger" not in html
    assert counts(app) == (5, 3, 4)
    links = reset_links(app)
    assert set(links) == set(EXPECTED)
    # a link opens the set-password form for a visitor
    visitor = app.test_client()
    path = urlsplit(links["kim@example.kr"][0]).path
    assert visitor.get(path).status_code == 200


def test_admin_sees_the_per_row_report_when_rejected(app: Flask, client: FlaskClient, login_as: Any) -> None:
    login_as("admin")
    rows = [GOOD_ROWS[0], dict(GOOD_ROWS[1], email="broken@"), GOOD_ROWS[2], dict(GOOD_ROWS[3], brn=BAD_BRN)]
    before = counts(app)
    response = upload(client, csv_bytes(rows, "utf-8-sig"))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'id="import-report"' in html
    rejected = re.findall(r'<tr class="table-danger"><td>(\d+)</td><td>([^<]*)</td>', html)
    assert rejected == [("3", "broken@"), ("5", "choi@example.kr")]
    assert BAD_BRN in html
    assert counts(app) == before


def test_admin_sees_a_file_level_error(app: Flask, client: FlaskClient, login_as: Any) -> None:
    login_as("admin")
    before = counts(app)
    response = upload(client, FILE_ERRORS["missing business number column"])
    assert response.status_code == 400
    assert 'class="alert alert-danger"' in response.get_data(as_text=True)
    assert counts(app) == before


def test_admin_upload_without_csrf_or_with_another_extension_imports_nothing(
    app: Flask, client: FlaskClient, login_as: Any,
) -> None:
    login_as("admin")
    before = counts(app)
    assert upload(client, csv_bytes(GOOD_ROWS), token=False).status_code == 400
    upload(client, csv_bytes(GOOD_ROWS), filename="employees.xlsx")
    assert counts(app) == before


def test_official_korean_region_names_match_the_reference_codes() -> None:
    from academy.users import reference

    assert set(reference.REGION_NAMES_KO) == set(reference.REGIONS)
    assert len(set(reference.REGION_NAMES_KO.values())) == len(reference.REGION_NAMES_KO)


def test_row_errors_name_columns_in_words_not_codes(app: Flask) -> None:
    from flask_babel import gettext

    rows = [dict(GOOD_ROWS[0], company=""), dict(GOOD_ROWS[1], industry="shipbuilding")]
    report = run_import(app, csv_bytes(rows))
    [(_, empty), (_, unknown)] = [(r.line, r.errors) for r in report.rejected]
    with app.test_request_context():
        company, industry = gettext("Company name"), gettext("Industry")
    assert any(company in e for e in empty) and not any("company_name" in e for e in empty)
    assert any(industry in e for e in unknown) and not any("'industry'" in e for e in unknown)
