"""Certificates: issued with each completion, a PDF whose text and QR code are read back, an Open Badges
credential checked with a JOSE library the portal does not sign with (PyJWT), public verification,
revocation by an admin (with a reason) and by a withdrawn completion.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import jwt
import pypdf
import pypdfium2
import pytest
import zxingcpp
from flask import Flask
from sqlalchemy import func, select

from academy.audit.models import AuditEntry
from academy.catalog.models import Course
from academy.certificates.models import Certificate
from academy.certificates.services import issue_missing, normalise_code
from academy.completion.models import Completion
from academy.completion.services import recompute, refresh
from academy.extensions import db
from academy.grading.models import Submission
from academy.mail.models import OutboxMessage
from academy.users.models import User
from tests.completion.conftest import T0, _graded
from tests.conftest import login

COMPETENCIES = [{"ko": "로지스틱 회귀로 불량 판정하기", "en": "Classify defective parts with logistic regression"}]


def _complete_everything(app: Flask, ids: dict[str, Any]) -> dict[str, Certificate]:
    """Pass every assignment of both courses; returns the certificates by ``a``, ``b`` and ``track``."""
    with app.app_context():
        learner = db.session.get(User, ids["learner"])
        learner.name = "김민준"
        course_a, course_b = db.session.get(Course, ids["a"]), db.session.get(Course, ids["b"])
        course_a.competencies = COMPETENCIES
        course_a.hours = 16.0
        now = ids["due_a2"] + dt.timedelta(days=1)
        _graded(ids, "a1", 9.0)
        _graded(ids, "a2", 8.0)
        _graded(ids, "b1", 7.0, at=T0 + dt.timedelta(days=5))
        refresh(db.session, learner, course_a, now=now)
        refresh(db.session, learner, course_b, now=now)
        db.session.commit()
        rows = db.session.scalars(select(Certificate).join(Completion)).all()
        by = {("track" if r.completion.course_id is None else "a" if r.completion.course_id == ids["a"] else "b"): r
              for r in rows}
        db.session.expunge_all()
        return by


def _email(app: Flask, user_id: int) -> str:
    with app.app_context():
        return db.session.get(User, user_id).email


def test_codes_are_read_the_way_people_type_them() -> None:
    assert normalise_code("abcd-2345-wxyz") == "ABCD-2345-WXYZ"
    assert normalise_code(" ABCD 2345 WXYZ ") == "ABCD-2345-WXYZ"
    assert normalise_code("ABCD2345WXYZ") == "ABCD-2345-WXYZ"
    assert normalise_code("OBCD-2345-WXYL") == "0BCD-2345-WXY1"  # O and L read as 0 and 1
    for bad in ("", "ABCD-2345", "ABCD-2345-WXYZ-0", "ABCD-2345-WXYU", "<script>", "x" * 500):
        assert normalise_code(bad) is None


def test_a_completion_issues_a_pdf_whose_text_and_qr_code_state_it(app: Flask, academy: dict[str, Any],
                                                                    client: Any, make_user: Any) -> None:
    ids = academy
    certificates = _complete_everything(app, ids)
    assert set(certificates) == {"a", "b", "track"}
    cert = certificates["a"]
    assert cert.holder_name == "김민준" and cert.kind == "course" and cert.competencies == COMPETENCIES
    assert certificates["track"].kind == "track" and certificates["track"].hours == pytest.approx(16.0 + 6.0)

    assert login(client, _email(app, ids["learner"])).status_code == 302
    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert f'data-certificate-pdf="{cert.code}"' in dashboard and "My certificates" in dashboard  # learner: English
    response = client.get(f"/certificates/{cert.code}/pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    pdf = response.data

    text = " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    day = cert.completed_at.replace(tzinfo=dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=9))).date()
    for expected in ("수 료 증", "Certificate of Completion", "김민준", cert.title_ko, cert.title_en, "16시간",
                     "16 hours", f"{day.year}년 {day.month}월 {day.day}일", COMPETENCIES[0]["ko"],
                     COMPETENCIES[0]["en"], "경상북도 AI 새마을 아카데미", cert.code):
        assert expected in text, expected
    fonts = {str(font.get("/BaseFont")) for page in pypdf.PdfReader(io.BytesIO(pdf)).pages
             for font in page["/Resources"]["/Font"].values()}
    assert any("Pretendard" in name for name in fonts), fonts  # the Korean font travels inside the PDF

    image = pypdfium2.PdfDocument(pdf)[0].render(scale=2).to_pil()
    [qr] = zxingcpp.read_barcodes(image)
    assert qr.text == f"http://127.0.0.1:5000/verify/{cert.code}"

    credential = client.get(f"/certificates/{cert.code}/credential")
    assert credential.status_code == 200 and credential.data.decode().strip() == cert.credential


def test_only_the_holder_and_admins_download_it(app: Flask, academy: dict[str, Any], client: Any,
                                               make_user: Any) -> None:
    code = _complete_everything(app, academy)["a"].code
    other = make_user("learner")
    assert login(client, _email(app, other)).status_code == 302
    assert client.get(f"/certificates/{code}/pdf").status_code == 404
    assert client.get(f"/certificates/{code}/credential").status_code == 404
    admin = make_user("admin")
    with app.test_client() as admin_client:
        assert login(admin_client, _email(app, admin)).status_code == 302
        assert admin_client.get(f"/certificates/{code}/pdf").status_code == 200


def test_the_credential_verifies_with_an_independent_jose_library(app: Flask, academy: dict[str, Any],
                                                                   client: Any) -> None:
    cert = _complete_everything(app, academy)["track"]
    jwks = client.get("/certificates/jwks.json").get_json()
    header = jwt.get_unverified_header(cert.credential)
    assert header["alg"] == "RS256" and header["kid"] in {k["kid"] for k in jwks["keys"]}
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]].key
    # The academy's clock in these tests runs ahead of the real one: the issue time is checked by hand.
    lenient = {"verify_iat": False, "verify_nbf": False}
    claims = jwt.decode(cert.credential, key, algorithms=["RS256"], options=lenient)
    assert claims["nbf"] == int(cert.issued_at.replace(tzinfo=dt.UTC).timestamp())
    vc = claims["vc"]
    assert vc["type"] == ["VerifiableCredential", "OpenBadgeCredential"]
    assert "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json" in vc["@context"]
    assert claims["iss"] == vc["issuer"]["id"] == "http://127.0.0.1:5000/certificates/issuer"
    assert claims["jti"] == vc["id"] == f"http://127.0.0.1:5000/api/v1/certificates/{cert.code}"
    subject = vc["credentialSubject"]
    assert subject["achievement"]["humanCode"] == cert.code
    assert subject["achievement"]["achievementType"] == "Certificate"
    assert {"type": "IdentityObject", "identityType": "name", "hashed": False, "identityHash": "김민준"} in \
        subject["identifier"]
    assert "@example.kr" not in json.dumps(vc, ensure_ascii=False)  # the e-mail travels only as a salted hash
    assert client.get("/certificates/issuer").get_json()["id"] == vc["issuer"]["id"]

    # A changed claim no longer matches the signature.
    head, payload, signature = cert.credential.split(".")
    forged = json.loads(jwt.utils.base64url_decode(payload))
    forged["vc"]["credentialSubject"]["identifier"][0]["identityHash"] = "홍길동"
    forged_payload = jwt.utils.base64url_encode(json.dumps(forged).encode()).decode()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{head}.{forged_payload}.{signature}", key, algorithms=["RS256"], options=lenient)
    # A credential signed by some other key is refused with the academy's.
    from cryptography.hazmat.primitives.asymmetric import rsa

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    impostor = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": header["kid"]})
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(impostor, key, algorithms=["RS256"], options=lenient)


def test_anyone_can_verify_a_code(app: Flask, academy: dict[str, Any], client: Any) -> None:
    cert = _complete_everything(app, academy)["a"]
    page = client.get(f"/verify/{cert.code}")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-certificate-status="valid"' in body
    assert "김민준" in body and cert.title_ko in body and "@example.kr" not in body  # only what it states
    typed = client.get(f"/verify/{cert.code.lower().replace('-', '')}")
    assert typed.status_code == 302 and typed.headers["Location"].endswith(f"/verify/{cert.code}")
    assert client.get(f"/verify?code={cert.code.lower()}").headers["Location"].endswith(f"/verify/{cert.code}")

    api = client.get(f"/api/v1/certificates/{cert.code}")
    answer = api.get_json()
    assert api.status_code == 200 and answer["status"] == "valid" and answer["credential"] == cert.credential
    assert answer["title"] == {"ko": cert.title_ko, "en": cert.title_en} and answer["holder"] == "김민준"
    from tests.api.test_api import assert_documented

    doc = client.get("/api/v1/openapi.json").get_json()
    assert_documented(doc, "/api/v1/certificates/{code}", "get", api)

    for bad in ("ABCD-2345-WXYZ", "not-a-code", "%3Cscript%3E", "A" * 300):
        missing = client.get(f"/verify/{bad}")
        assert missing.status_code == 404, bad
        assert "이 확인 코드의 수료증이 없습니다" in missing.get_data(as_text=True), bad  # said, in Korean
        error = client.get(f"/api/v1/certificates/{bad}")
        assert error.status_code == 404 and error.get_json()["error"]["status"] == 404
        assert_documented(doc, "/api/v1/certificates/{code}", "get", error)
    form = client.get("/verify?code=nonsense")
    assert form.status_code == 200 and "ABCD-2345-WXYZ" in form.get_data(as_text=True)


@pytest.mark.app_config(RATELIMIT_ENABLED=False)
def test_an_admin_revokes_with_a_reason_and_the_learner_is_told(app: Flask, academy: dict[str, Any], client: Any,
                                                               make_user: Any) -> None:
    ids = academy
    cert = _complete_everything(app, ids)["a"]
    admin = make_user("admin")
    assert login(client, _email(app, admin)).status_code == 302
    listing = client.get(f"/admin/certificates?q={cert.code.lower()}").get_data(as_text=True)
    assert cert.code in listing and "김민준" in listing
    token = client.get("/admin/certificates").get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]

    refused = client.post(f"/admin/certificates/{cert.code}/revoke", data={"csrf_token": token, "reason": "  "},
                          follow_redirects=True)
    assert "수료증을 취소하는 사유를 입력해 주세요" in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Certificate, cert.id).revoked_at is None  # nothing changed

    reason = "수료 기준 검토 결과 과제 표절이 확인됨"
    done = client.post(f"/admin/certificates/{cert.code}/revoke", data={"csrf_token": token, "reason": reason})
    assert done.status_code == 302
    again = client.post(f"/admin/certificates/{cert.code}/revoke", data={"csrf_token": token, "reason": reason},
                        follow_redirects=True)
    assert again.status_code == 200  # already revoked: told so, nothing changes
    with app.app_context():
        row = db.session.get(Certificate, cert.id)
        assert row.status == "revoked" and row.revoked_reason == reason and row.revoked_by_id == admin
        [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "certificate.revoke")).all()
        assert entry.actor_id == admin and entry.data["reason"] == reason
        learner = db.session.get(User, ids["learner"])
        [mail] = db.session.scalars(select(OutboxMessage).where(
            OutboxMessage.recipient == learner.email, OutboxMessage.subject.like("%revoked%"))).all()
        assert cert.code in mail.body and reason in mail.body

    page = client.get(f"/verify/{cert.code}").get_data(as_text=True)
    assert 'data-certificate-status="revoked"' in page and reason not in page  # the reason stays internal
    assert client.get(f"/api/v1/certificates/{cert.code}").get_json()["status"] == "revoked"
    assert client.get(f"/certificates/{cert.code}/pdf").status_code == 410

    from academy.cli import certificate_group

    runner = app.test_cli_runner()
    result = runner.invoke(certificate_group, ["list", "--json"])
    rows = {r["code"]: r for r in map(json.loads, result.output.splitlines())}
    assert rows[cert.code]["status"] == "revoked" and rows[cert.code]["holder"] == "김민준"
    assert {r["status"] for code, r in rows.items() if code != cert.code} == {"valid"}
    refused_cli = runner.invoke(certificate_group, ["revoke", "NOPE-NOPE-NOPE", "--reason", "x"])
    assert refused_cli.exit_code == 2 and "Traceback" not in refused_cli.output


def test_a_withdrawn_completion_revokes_its_certificate_and_a_new_one_gets_a_new_code(
        app: Flask, academy: dict[str, Any]) -> None:
    ids = academy
    certificates = _complete_everything(app, ids)
    with app.app_context():
        learner = db.session.get(User, ids["learner"])
        first = db.session.scalar(select(Submission).where(Submission.assignment_id == ids["a1"]))
        first.score = first.raw_score = 3.0
        first.cells[0].score = 3.0
        later = ids["due_a2"] + dt.timedelta(days=3)
        refresh(db.session, learner, db.session.get(Course, ids["a"]), now=later, reason="score_changed")
        db.session.commit()
        for key in ("a", "track"):
            row = db.session.get(Certificate, certificates[key].id)
            assert (row.status, row.revoked_reason, row.revoked_by_id) == ("revoked", "completion_withdrawn", None)
        assert db.session.get(Certificate, certificates["b"].id).status == "valid"
        _graded(ids, "a1", 9.0, attempt=2, at=later + dt.timedelta(hours=1))
        refresh(db.session, learner, db.session.get(Course, ids["a"]), now=later + dt.timedelta(days=1))
        db.session.commit()
        valid = db.session.scalars(select(Certificate).where(Certificate.revoked_at.is_(None))).all()
        assert len(valid) == 3 and certificates["a"].code not in {c.code for c in valid}


def test_recompute_issues_missing_certificates_once(app: Flask, academy: dict[str, Any]) -> None:
    ids = academy
    with app.app_context():
        _graded(ids, "a1", 9.0)
        _graded(ids, "a2", 8.0)
        # A completion recorded before certificates existed (as after the upgrade): no certificate yet.
        db.session.add(Completion(user_id=ids["learner"], track_id=ids["track"], course_id=ids["a"],
                                  completed_at=ids["due_a2"], recorded_at=ids["due_a2"], lab_hours=0.0, evidence={}))
        db.session.commit()
        report = recompute(db.session, now=ids["due_a2"] + dt.timedelta(days=1))
        db.session.commit()
        assert (report.recorded, report.certificates) == (0, 1)
        assert issue_missing(db.session) == 0
        assert recompute(db.session, now=ids["due_a2"] + dt.timedelta(days=2)).certificates == 0
        assert db.session.scalar(select(func.count()).select_from(Certificate)) == 1
