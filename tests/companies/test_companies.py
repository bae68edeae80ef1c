"""Company contacts: appointed or requested and approved, they see their own company's employees and nothing of
any other company, on the page, in the exports and through the API."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import openpyxl
import pytest
from flask import Flask
from sqlalchemy import select

from academy.audit.models import AuditEntry
from academy.companies.models import CompanyContact, ContactStatus
from academy.companies.services import appoint, company_of, decide, employees_report, request_access, revoke
from academy.completion.models import Completion
from academy.enrollment.models import Cohort
from academy.enrollment.services import request_enrollment
from academy.errors import Conflict, ValidationFailed
from academy.extensions import db
from academy.labs.models import LabSession, LabState
from academy.mail.models import OutboxMessage
from academy.users.models import Company, User
from tests.api.test_api import assert_documented, make_token
from tests.conftest import csrf_token, login


@pytest.fixture
def two_companies(app: Flask, make_user: Any, make_cohort: Any) -> dict[str, Any]:
    """구미정밀 with two employees (one enrolled, with a lab hour and a completed course) and HR; 포항철강 with one."""
    cohort_id = make_cohort(capacity=10)
    ids = {"hr": make_user("learner", name="김인사"), "kim": make_user("learner", name="김직원"),
           "lee": make_user("learner", name="이직원"), "park": make_user("learner", name="박경쟁")}
    with app.app_context():
        gumi = Company(name="구미정밀(주)", business_number="124-81-00998")
        pohang = Company(name="포항철강(주)", business_number="220-81-62517")
        db.session.add_all([gumi, pohang])
        db.session.flush()
        for key in ("hr", "kim", "lee"):
            db.session.get(User, ids[key]).company_id = gumi.id
        db.session.get(User, ids["park"]).company_id = pohang.id
        cohort = db.session.get(Cohort, cohort_id)
        for key in ("kim", "park"):
            request_enrollment(db.session, cohort, db.session.get(User, ids[key]))
        course = cohort.track.courses[0]
        start = dt.datetime(2026, 11, 3, 1, tzinfo=dt.UTC)
        db.session.add(LabSession(user_id=ids["kim"], course_id=course.id, hub_user="kim", profile="cpu",
                                  state=LabState.stopped, queued_at=start, started_at=start,
                                  stopped_at=start + dt.timedelta(hours=1)))
        db.session.add(Completion(user_id=ids["kim"], track_id=cohort.track_id, course_id=course.id,
                                  completed_at=start, recorded_at=start, evidence={}))
        db.session.commit()
        ids.update(gumi=gumi.id, pohang=pohang.id, track=cohort.track_id)
    return ids


def test_an_employee_asks_an_admin_approves_and_access_ends_when_revoked(
        app: Flask, two_companies: dict[str, Any], make_user: Any) -> None:
    ids = two_companies
    admin_id = make_user("admin")
    with app.app_context():
        hr, admin = db.session.get(User, ids["hr"]), db.session.get(User, admin_id)
        asked = request_access(db.session, hr, note="인사팀 교육 담당")
        db.session.commit()
        assert company_of(db.session, hr) is None  # asking is not seeing
        with pytest.raises(Conflict):
            request_access(db.session, hr)  # one request at a time
        db.session.rollback()
        decide(db.session, asked, approve=True, actor=admin)
        db.session.commit()
        assert company_of(db.session, hr).id == ids["gumi"]
        revoke(db.session, asked, actor=admin, note="퇴사")
        db.session.commit()
        assert company_of(db.session, hr) is None
        actions = list(db.session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("company_contact%"))
                                          .order_by(AuditEntry.id)))
        assert actions == ["company_contact.request", "company_contact.approve", "company_contact.revoke"]
        subjects = list(db.session.scalars(select(OutboxMessage.subject).where(OutboxMessage.recipient == hr.email)))
        assert any("포항" not in s and "구미정밀(주)" in s for s in subjects) and len(subjects) == 2
        # Someone without a company cannot ask; a deactivated contact sees nothing.
        loner = db.session.get(User, make_user("learner"))
        with pytest.raises(ValidationFailed):
            request_access(db.session, loner)
        again = appoint(db.session, hr.company, hr, actor=admin)
        db.session.commit()
        hr.active = False
        assert company_of(db.session, hr) is None and again.status is ContactStatus.approved


def test_the_report_holds_only_the_contacts_own_employees(app: Flask, two_companies: dict[str, Any]) -> None:
    ids = two_companies
    with app.app_context():
        lines, total = employees_report(db.session, ids["gumi"])
        assert total == 3 and {line.user.id for line in lines} == {ids["hr"], ids["kim"], ids["lee"]}
        kim = next(line for line in lines if line.user.id == ids["kim"])
        [enrollment] = kim.enrollments
        assert enrollment.lab_hours == pytest.approx(1.0) and len(enrollment.courses_completed) == 1
        assert enrollment.status == "enrolled"
        assert ids["park"] not in {line.user.id for line in lines}
        searched, total = employees_report(db.session, ids["gumi"], search="이직원")
        assert total == 1 and searched[0].user.id == ids["lee"]
        enrolled_only, total = employees_report(db.session, ids["gumi"], track_id=ids["track"])
        assert total == 1 and enrolled_only[0].user.id == ids["kim"]


def test_the_contact_sees_the_page_and_exports_of_their_company_only(
        app: Flask, two_companies: dict[str, Any], client: Any, make_user: Any) -> None:
    ids = two_companies
    admin = make_user("admin")
    with app.app_context():
        hr = db.session.get(User, ids["hr"])
        appoint(db.session, hr.company, hr, actor=db.session.get(User, admin))
        db.session.commit()
        email = hr.email
    assert login(client, email).status_code == 302
    home = client.get("/dashboard").get_data(as_text=True)
    assert "/company" in home  # the menu leads there
    page = client.get("/company")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "김직원" in body and "이직원" in body and "박경쟁" not in body
    assert "포항철강" not in body
    csv = client.get("/company/export.csv").data.decode("utf-8-sig")
    assert "김직원" in csv and "박경쟁" not in csv
    book = openpyxl.load_workbook(io.BytesIO(client.get("/company/export.xlsx").data))
    names = {row[0].value for row in book.active.iter_rows(min_row=2)}
    assert names == {"김인사", "김직원", "이직원"}
    # Another company's contact sees their own people only, whatever they put in the address.
    other = app.test_client()
    with app.app_context():
        park = db.session.get(User, ids["park"])
        appoint(db.session, park.company, park, actor=db.session.get(User, admin))
        db.session.commit()
        park_email = park.email
    assert login(other, park_email).status_code == 302
    theirs = other.get(f"/company?company={ids['gumi']}").get_data(as_text=True)
    assert "박경쟁" in theirs and "김직원" not in theirs
    # A plain learner gets 403.
    plain = app.test_client()
    with app.app_context():
        lee_email = db.session.get(User, ids["lee"]).email
    assert login(plain, lee_email).status_code == 302
    assert plain.get("/company").status_code == 403
    assert plain.get("/company/export.csv").status_code == 403


def test_the_api_gives_a_company_contact_their_employees_a_page_at_a_time(
        app: Flask, two_companies: dict[str, Any], client: Any, make_user: Any) -> None:
    ids = two_companies
    admin = make_user("admin")
    with app.app_context():
        hr = db.session.get(User, ids["hr"])
        appoint(db.session, hr.company, hr, actor=db.session.get(User, admin))
        db.session.commit()
    token = make_token(app, ids["hr"], ["company:read"])
    headers = {"Authorization": f"Bearer {token}"}
    doc = client.get("/api/v1/openapi.json").get_json()
    first = client.get("/api/v1/company/employees?per_page=2", headers=headers)
    body = assert_documented(doc, "/api/v1/company/employees", "get", first)
    assert body["total"] == 3 and len(body["items"]) == 2 and body["company"]["business_number"] == "124-81-00998"
    second = client.get("/api/v1/company/employees?per_page=2&page=2", headers=headers).get_json()
    names = {i["name"] for i in body["items"]} | {i["name"] for i in second["items"]}
    assert names == {"김인사", "김직원", "이직원"}
    bad = client.get("/api/v1/company/employees?per_page=1000", headers=headers)
    assert bad.status_code == 400
    assert_documented(doc, "/api/v1/company/employees", "get", bad)
    with pytest.raises(Exception, match="회사 담당자"):
        make_token(app, ids["lee"], ["company:read"])  # not a contact: no such token
    with app.app_context():  # access ended: the token stops working
        contact = db.session.scalar(select(CompanyContact).where(CompanyContact.user_id == ids["hr"]))
        revoke(db.session, contact, actor=db.session.get(User, admin))
        db.session.commit()
    ended = client.get("/api/v1/company/employees", headers=headers)
    assert ended.status_code == 403
    assert_documented(doc, "/api/v1/company/employees", "get", ended)


def test_admins_appoint_approve_and_decline_on_their_page(app: Flask, two_companies: dict[str, Any],
                                                         client: Any, make_user: Any) -> None:
    ids = two_companies
    admin = make_user("admin")
    with app.app_context():
        lee = db.session.get(User, ids["lee"])
        request_access(db.session, lee, note="교육 담당자입니다")
        db.session.commit()
        lee_email, hr_email = lee.email, db.session.get(User, ids["hr"]).email
        admin_email = db.session.get(User, admin).email
    assert login(client, admin_email).status_code == 302
    page = client.get("/admin/company-contacts").get_data(as_text=True)
    assert "교육 담당자입니다" in page and "이직원" in page
    token = csrf_token(client, "/admin/company-contacts")
    with app.app_context():
        contact_id = db.session.scalar(select(CompanyContact.id).where(CompanyContact.user_id == ids["lee"]))
    client.post(f"/admin/company-contacts/{contact_id}/reject", data={"csrf_token": token})
    answer = client.post("/admin/company-contacts/appoint", data={"csrf_token": token, "email": hr_email,
                                                                   "company_id": ids["gumi"]}, follow_redirects=True)
    assert "김인사" in answer.get_data(as_text=True)
    unknown = client.post("/admin/company-contacts/appoint", data={"csrf_token": token, "email": "nobody@x.kr",
                                                                    "company_id": ids["gumi"]}, follow_redirects=True)
    assert unknown.status_code == 200 and "이 이메일" in unknown.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(CompanyContact.status).where(CompanyContact.user_id == ids["lee"])) \
            is ContactStatus.rejected
        assert company_of(db.session, db.session.get(User, ids["hr"])).id == ids["gumi"]
        assert lee_email in set(db.session.scalars(select(OutboxMessage.recipient)))
