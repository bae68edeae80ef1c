"""Role × route matrix: every route declares who may use it, and the rule holds.

Adding a route without an access decorator fails ``test_every_route_has_an_access_rule``;
adding one without an entry in ``EXPECTED`` fails ``test_matrix_covers_every_route``.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from academy import permissions
from academy.catalog.models import Course, CourseInstructor
from academy.users.models import Role, User
from academy.web.access import access_rule

# endpoint -> expected rule (what the decorator must say)
EXPECTED: dict[str, tuple[str, ...]] = {
    "web.index": ("public",),
    "web.set_language": ("public",),
    "web.healthz": ("public",),
    "auth.login": ("anonymous",),
    "auth.consent": ("roles", "admin", "instructor", "learner"),
    "auth.register": ("anonymous",),
    "auth.forgot_password": ("anonymous",),
    "auth.reset_password": ("public",),
    "auth.logout": ("roles", "admin", "instructor", "learner"),
    "auth.profile": ("roles", "admin", "instructor", "learner"),
    "auth.change_password": ("roles", "admin", "instructor", "learner"),
    "auth.create_token": ("roles", "admin", "instructor", "learner"),
    "auth.revoke_token": ("roles", "admin", "instructor", "learner"),
    "catalog.index": ("public",),
    "catalog.track": ("public",),
    "catalog.course": ("public",),
    "dashboard.index": ("roles", "admin", "instructor", "learner"),
    "enrollment.enroll": ("roles", "admin", "instructor", "learner"),
    "enrollment.mine": ("roles", "admin", "instructor", "learner"),
    "enrollment.withdraw": ("roles", "admin", "instructor", "learner"),
    "grading.assignment": ("roles", "admin", "instructor", "learner"),
    "grading.download": ("roles", "admin", "instructor", "learner"),
    "grading.submit": ("roles", "admin", "instructor", "learner"),
    "grading.submission": ("roles", "admin", "instructor", "learner"),
    "grading.submission_status": ("roles", "admin", "instructor", "learner"),
    "grading.feedback": ("roles", "admin", "instructor", "learner"),
    "grading.nbgrader_feedback": ("roles", "admin", "instructor"),
    "grading.gradebook": ("roles", "admin", "instructor"),
    "grading.regrade": ("roles", "admin", "instructor"),
    "grading.upload_version": ("roles", "admin", "instructor"),
    "grading.grant_extension": ("roles", "admin", "instructor"),
    "grading.grade_by_hand": ("roles", "admin", "instructor"),
    "grading.override": ("roles", "admin", "instructor"),
    "grading.review_flag": ("roles", "admin", "instructor"),
    "admin.home": ("roles", "admin"),
    "admin.users": ("roles", "admin"),
    "admin.set_role": ("roles", "admin"),
    "admin.set_active": ("roles", "admin"),
    "admin.import_users": ("roles", "admin"),
    "admin.cohorts": ("roles", "admin"),
    "admin.cohort": ("roles", "admin"),
    "admin.cohort_capacity": ("roles", "admin"),
    "admin.cohort_gpu_budget": ("roles", "admin"),
    "admin.gpu_budgets": ("roles", "admin"),
    "admin.company_gpu_budget": ("roles", "admin"),
    "admin.approvals": ("roles", "admin"),
    "admin.decide": ("roles", "admin"),
    "admin.outbox": ("roles", "admin"),
    "admin.audit": ("roles", "admin"),
    "api.openapi": ("public",),
    "api.me": ("token", "profile:read"),
    "api.tracks": ("token", "catalog:read"),
    "api.list_enrollments": ("token", "enrollments:read"),
    "api.create_enrollment": ("token", "enrollments:write"),
    "api.cohort": ("token", "catalog:read"),
    "oidc.discovery": ("public",),
    "oidc.jwks": ("public",),
    # decides itself: a signed-out visitor is sent to the login page, or told login_required (prompt=none)
    "oidc.authorize": ("public",),
    "oidc.end_session": ("public",),  # signs out whoever is signed in, after asking or with a valid id_token_hint
    "oidc.token": ("oauth",),
    "oidc.userinfo": ("oauth",),
    "oidc.revoke": ("oauth",),
    "labs.open_lab": ("roles", "admin", "instructor", "learner"),
    "labs.launch_page": ("roles", "admin", "instructor", "learner"),
    "labs.status": ("roles", "admin", "instructor", "learner"),
    "labs.stop": ("roles", "admin", "instructor", "learner"),
    "labs.take_cpu": ("roles", "admin", "instructor", "learner"),
    "labs.submit_from_lab": ("roles", "admin", "instructor", "learner"),
    "labs.reset_notebook": ("roles", "admin", "instructor", "learner"),
    "labs.manage": ("roles", "admin", "instructor"),
    "labs.hub_events": ("hub-service",),
    # anyone may check a certificate: an employer has no account
    "certificates.verify_form": ("public",),
    "certificates.verify": ("public",),
    "certificates.jwks": ("public",),
    "certificates.issuer": ("public",),
    "api.certificate": ("public",),
    # the holder's files; the view itself answers 404 to anyone but the holder and admins
    "certificates.pdf": ("roles", "admin", "instructor", "learner"),
    "certificates.credential": ("roles", "admin", "instructor", "learner"),
    "certificates.admin_list": ("roles", "admin"),
    "stats.export_table": ("roles", "admin"),
    # a company contact's own company only (the view asks academy.companies.services.company_of)
    "companies.report": ("company",),
    "companies.export_report": ("company",),
    "companies.request_access": ("roles", "admin", "instructor", "learner"),
    "companies.admin_contacts": ("roles", "admin"),
    "companies.appoint": ("roles", "admin"),
    "companies.decide": ("roles", "admin"),
    "api.company_employees": ("token", "company:read"),
    "stats.refresh": ("roles", "admin"),
    "teaching.home": ("roles", "admin", "instructor"),
    "teaching.gradebook": ("roles", "admin", "instructor"),
    "teaching.export_gradebook": ("roles", "admin", "instructor"),
    "teaching.learner": ("roles", "admin", "instructor"),
    "teaching.at_risk": ("roles", "admin", "instructor"),
    "teaching.question_statistics": ("roles", "admin", "instructor"),
    "teaching.export_questions": ("roles", "admin", "instructor"),
    "teaching.announce": ("roles", "admin", "instructor"),
    "teaching.nudge": ("roles", "admin", "instructor"),
    "teaching.grading_queue": ("roles", "admin", "instructor"),
    "teaching.publish": ("roles", "admin", "instructor"),
    "teaching.start_publish": ("roles", "admin", "instructor"),
    "teaching.publish_draft": ("roles", "admin", "instructor"),
    "teaching.publish_status": ("roles", "admin", "instructor"),
    "teaching.confirm_publish": ("roles", "admin", "instructor"),
    "teaching.retry_publish": ("roles", "admin", "instructor"),
    "inbox.index": ("roles", "admin", "instructor", "learner"),
    "inbox.message": ("roles", "admin", "instructor", "learner"),
    "inbox.read_all": ("roles", "admin", "instructor", "learner"),
    "inbox.settings": ("roles", "admin", "instructor", "learner"),
    "api.stats_funnel": ("token", "stats:read"),
    "api.stats_by": ("token", "stats:read"),
    "certificates.revoke": ("roles", "admin"),
}


def _endpoints(app: Flask) -> set[str]:
    return {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint != "static"}


def test_every_route_has_an_access_rule(app: Flask) -> None:
    missing = sorted(e for e in _endpoints(app) if access_rule(app.view_functions[e]) is None)
    assert not missing, f"routes without an access decorator: {missing}"


def test_matrix_covers_every_route(app: Flask) -> None:
    assert _endpoints(app) == set(EXPECTED), "update EXPECTED (and think about who may use the new route)"
    for endpoint, rule in EXPECTED.items():
        assert access_rule(app.view_functions[endpoint]) == rule, endpoint


def _url_args(app: Flask, ids: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "catalog.track": {"slug": ids["track_slug"]},
        "catalog.course": {"slug": ids["course_slug"]},
        "admin.cohort": {"cohort_id": ids["cohort_id"]},
        "admin.cohort_capacity": {"cohort_id": ids["cohort_id"]},
        "admin.cohort_gpu_budget": {"cohort_id": ids["cohort_id"]},
        "admin.set_role": {"user_id": ids["other_id"]},
        "admin.set_active": {"user_id": ids["other_id"]},
        "admin.decide": {"enrollment_id": ids["enrollment_id"], "decision": "approve"},
        "enrollment.enroll": {"cohort_id": ids["cohort_id"]},
        "enrollment.withdraw": {"enrollment_id": ids["enrollment_id"]},
        "auth.revoke_token": {"token_id": 999999},
        "auth.reset_password": {"token": "not-a-token"},
        "web.set_language": {"code": "en"},
        "api.cohort": {"cohort_id": ids["cohort_id"]},
        "grading.assignment": {"assignment_id": ids["assignment_id"]},
        "grading.download": {"assignment_id": ids["assignment_id"], "name": "intro.ipynb"},
        "grading.submit": {"assignment_id": ids["assignment_id"]},
        "grading.submission": {"public_id": "00000000-0000-0000-0000-000000000000"},
        "grading.submission_status": {"public_id": "00000000-0000-0000-0000-000000000000"},
        "grading.feedback": {"public_id": "00000000-0000-0000-0000-000000000000"},
        "grading.nbgrader_feedback": {"public_id": "00000000-0000-0000-0000-000000000000"},
        "grading.gradebook": {"assignment_id": ids["assignment_id"]},
        "grading.regrade": {"assignment_id": ids["assignment_id"]},
        "grading.upload_version": {"assignment_id": ids["assignment_id"]},
        "grading.grant_extension": {"assignment_id": ids["assignment_id"]},
        "grading.grade_by_hand": {"public_id": "00000000-0000-0000-0000-000000000000"},
        "grading.override": {"public_id": "00000000-0000-0000-0000-000000000000"},
        "grading.review_flag": {"public_id": "00000000-0000-0000-0000-000000000000"},
        "labs.open_lab": {"course_id": ids["course_id"]},
        "labs.launch_page": {"lab_id": 999999},
        "labs.status": {"lab_id": 999999},
        "labs.stop": {"lab_id": 999999},
        "labs.take_cpu": {"lab_id": 999999},
        "labs.submit_from_lab": {"assignment_id": ids["assignment_id"]},
        "labs.reset_notebook": {"assignment_id": ids["assignment_id"], "name": "intro.ipynb"},
        "certificates.verify": {"code": "ABCD-2345-WXYZ"},
        "certificates.pdf": {"code": "ABCD-2345-WXYZ"},
        "certificates.credential": {"code": "ABCD-2345-WXYZ"},
        "certificates.revoke": {"code": "ABCD-2345-WXYZ"},
        "api.certificate": {"code": "ABCD-2345-WXYZ"},
        "stats.export_table": {"name": "funnel", "fmt": "csv"},
        "companies.export_report": {"fmt": "csv"},
        "companies.decide": {"contact_id": 999999, "action": "approve"},
        "api.stats_by": {"dimension": "region"},
        "teaching.gradebook": {"course_id": ids["course_id"]},
        "teaching.export_gradebook": {"course_id": ids["course_id"], "fmt": "csv"},
        "teaching.learner": {"course_id": ids["course_id"], "user_id": ids["other_id"]},
        "teaching.at_risk": {"course_id": ids["course_id"]},
        "teaching.question_statistics": {"assignment_id": ids["assignment_id"]},
        "teaching.export_questions": {"assignment_id": ids["assignment_id"], "fmt": "xlsx"},
        "teaching.announce": {"course_id": ids["course_id"], "cohort_id": ids["cohort_id"]},
        "teaching.nudge": {"course_id": ids["course_id"]},
        "teaching.publish": {"assignment_id": ids["assignment_id"]},
        "teaching.start_publish": {"assignment_id": ids["assignment_id"]},
        "teaching.publish_draft": {"assignment_id": ids["assignment_id"], "token": "A" * 24},
        "teaching.publish_status": {"assignment_id": ids["assignment_id"], "token": "A" * 24},
        "teaching.confirm_publish": {"assignment_id": ids["assignment_id"], "token": "A" * 24},
        "teaching.retry_publish": {"assignment_id": ids["assignment_id"], "token": "A" * 24},
        "inbox.message": {"message_id": 999999},
    }


# "company_contact": a learner account bound (approved) to a company as its contact.
ROLES = ("anonymous", "learner", "instructor", "admin", "company_contact")


def _allowed(rule: tuple[str, ...], role: str) -> bool:
    if rule[0] == "public":
        return True
    if rule[0] == "anonymous":
        return role == "anonymous"
    if rule[0] == "roles":
        return ("learner" if role == "company_contact" else role) in rule[1:]
    if rule[0] == "company":
        return role == "company_contact"
    return False  # token routes: cookies never authenticate the API


@pytest.mark.app_config(WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)
@pytest.mark.parametrize("role", ROLES)
def test_role_route_matrix(
    app: Flask, client: Any, make_user: Any, make_track: Any, make_cohort: Any, role: str
) -> None:
    from academy.catalog.models import Assignment, Course, Track
    from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
    from academy.extensions import db
    from academy.users.models import User
    from tests.conftest import login

    # The instructor of this role matrix teaches the course, so role-level access is what is tested.
    track_id = make_track(instructors=("matrix-instructor@example.kr",))
    cohort_id = make_cohort(capacity=3, track_id=track_id)
    other_id = make_user("learner")
    with app.app_context():
        cohort = db.session.get(Cohort, cohort_id)
        enrollment = Enrollment(cohort_id=cohort_id, user_id=other_id, status=EnrollmentStatus.pending)
        db.session.add(enrollment)
        db.session.commit()
        track = db.session.get(Track, cohort.track_id)
        ids = {"cohort_id": cohort_id, "other_id": other_id, "enrollment_id": enrollment.id,
               "track_slug": track.slug, "course_slug": db.session.scalars(db.select(Course.slug)).first(),
               "assignment_id": db.session.scalars(db.select(Assignment.id)).first(),
               "course_id": db.session.scalars(db.select(Course.id)).first()}
    if role != "anonymous":
        account_role = "learner" if role == "company_contact" else role
        user_id = make_user(account_role, email="matrix-instructor@example.kr" if role == "instructor" else None)
        with app.app_context():
            email = db.session.get(User, user_id).email
            if role == "company_contact":
                from academy.companies.services import appoint
                from academy.users.models import Company

                user = db.session.get(User, user_id)
                user.company = Company(name="매트릭스(주)", business_number="124-81-00998")
                appoint(db.session, user.company, user, actor=user)
                db.session.commit()
        assert login(client, email).status_code == 302

    args = _url_args(app, ids)
    failures = []
    # Signing out last, so the other routes are tried while signed in.
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.endpoint == "auth.logout", r.endpoint)):
        if rule.endpoint == "static":
            continue
        expected = EXPECTED[rule.endpoint]
        with app.test_request_context():
            from flask import url_for

            url = url_for(rule.endpoint, **args.get(rule.endpoint, {}))
        method = "GET" if "GET" in rule.methods else "POST"
        response = client.open(url, method=method, data={})
        status = response.status_code
        allowed = _allowed(expected, role)
        if expected[0] == "token":
            ok = status == 401
        elif expected[0] == "oauth":
            # OpenID Connect endpoints authenticate clients and bearer tokens, never the portal's cookie.
            ok = status in (400, 401, 404)
        elif expected[0] == "hub-service":
            ok = status == 401  # no hub token presented (and no hub configured here)
        elif allowed:
            # Allowed: anything but a refusal (a redirect after a form action is fine,
            # but not a redirect to the sign-in page).
            ok = status not in (401, 403) and "/login" not in response.headers.get("Location", "")
            if expected[0] == "anonymous":
                ok = ok and status == 200
        elif role == "anonymous":
            ok = status == 302 and "/login" in response.headers.get("Location", "")
        elif expected[0] == "anonymous":
            ok = status == 302 and "/login" not in response.headers.get("Location", "")
        else:
            ok = status == 403
        if not ok:
            failures.append(f"{role} {method} {url} -> {status}")
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------- the predicates behind the rules


@pytest.mark.parametrize("active", [True, False])
@pytest.mark.parametrize("role", list(Role))
def test_role_predicates_agree_on_inactive_accounts(role: Role, active: bool) -> None:
    """``User.is_admin`` is the one answer; ``permissions`` asks it, so a deactivated admin is no admin anywhere."""
    user = User(email="someone@example.kr", name="someone", password_hash="x", role=role, active=active)
    course = Course(slug="c", title_ko="c", title_en="c")
    course.instructors = [CourseInstructor(email="SomeOne@example.kr")]

    admin = active and role is Role.admin
    instructor = active and role is Role.instructor
    assert user.is_admin is admin
    assert permissions.is_admin(user) is admin
    assert user.is_instructor is instructor
    assert permissions.teaches(user, course) is instructor
    assert permissions.can_manage_course(user, course) is (admin or instructor)
    assert permissions.can_manage_enrollments(user) is admin
    assert permissions.can_enroll(user) is active
    assert not permissions.is_admin(None)
    assert not permissions.can_enroll(None)
