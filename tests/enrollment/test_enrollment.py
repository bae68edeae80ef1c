"""Enrollment workflows: capacity, waitlist promotion, approval, withdrawal, history."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from academy.enrollment import services
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.errors import Conflict, ValidationFailed
from academy.extensions import db
from academy.mail.models import OutboxMessage
from academy.users.models import User

S = EnrollmentStatus


def _enroll(app: Flask, cohort_id: int, user_id: int) -> EnrollmentStatus:
    with app.app_context():
        enrollment = services.request_enrollment(db.session, db.session.get(Cohort, cohort_id),
                                                 db.session.get(User, user_id))
        db.session.commit()
        return enrollment.status


def _status(app: Flask, cohort_id: int, user_id: int) -> EnrollmentStatus:
    with app.app_context():
        return db.session.scalar(
            db.select(Enrollment.status).where(Enrollment.cohort_id == cohort_id, Enrollment.user_id == user_id)
        )


def test_open_cohort_enrolls_until_full_then_waitlists(app: Flask, make_user: Any, make_cohort: Any) -> None:
    cohort_id = make_cohort(capacity=2)
    users = [make_user() for _ in range(4)]
    assert [_enroll(app, cohort_id, u) for u in users] == [S.enrolled, S.enrolled, S.waitlisted, S.waitlisted]
    with app.app_context():
        cohort = db.session.get(Cohort, cohort_id)
        assert cohort.seats_taken == 2
        rows = {e.user_id: e for e in services.roster(db.session, cohort)}
        assert services.waitlist_position(db.session, rows[users[2]]) == 1
        assert services.waitlist_position(db.session, rows[users[3]]) == 2


def test_withdrawal_promotes_the_first_waiting_learner(app: Flask, make_user: Any, make_cohort: Any) -> None:
    cohort_id = make_cohort(capacity=1)
    first, second, third = make_user(), make_user(), make_user()
    for u in (first, second, third):
        _enroll(app, cohort_id, u)
    with app.app_context():
        enrollment = db.session.scalar(db.select(Enrollment).where(Enrollment.user_id == first))
        services.withdraw(db.session, enrollment, actor=db.session.get(User, first))
        db.session.commit()
    assert _status(app, cohort_id, first) is S.withdrawn
    assert _status(app, cohort_id, second) is S.enrolled
    assert _status(app, cohort_id, third) is S.waitlisted
    with app.app_context():
        assert db.session.get(Cohort, cohort_id).seats_taken == 1
        promoted = db.session.scalar(db.select(Enrollment).where(Enrollment.user_id == second))
        assert [(e.from_status, e.to_status) for e in promoted.events] == [
            (None, "waitlisted"), ("waitlisted", "enrolled")
        ]
        assert promoted.events[-1].actor_id == first
        second_email = db.session.get(User, second).email
        assert db.session.scalar(db.select(OutboxMessage).where(OutboxMessage.recipient == second_email))


def test_withdrawing_from_the_waitlist_frees_no_seat(app: Flask, make_user: Any, make_cohort: Any) -> None:
    cohort_id = make_cohort(capacity=1)
    a, b, c = make_user(), make_user(), make_user()
    for u in (a, b, c):
        _enroll(app, cohort_id, u)
    with app.app_context():
        enrollment = db.session.scalar(db.select(Enrollment).where(Enrollment.user_id == b))
        services.withdraw(db.session, enrollment, actor=db.session.get(User, b))
        db.session.commit()
        assert db.session.get(Cohort, cohort_id).seats_taken == 1
    assert _status(app, cohort_id, a) is S.enrolled
    assert _status(app, cohort_id, c) is S.waitlisted


def test_double_request_is_a_conflict_and_changes_nothing(app: Flask, make_user: Any, make_cohort: Any) -> None:
    cohort_id = make_cohort(capacity=5)
    user = make_user()
    _enroll(app, cohort_id, user)
    with pytest.raises(Conflict):
        _enroll(app, cohort_id, user)
    with app.app_context():
        assert db.session.get(Cohort, cohort_id).seats_taken == 1


def test_rejoining_after_withdrawal_reuses_the_row(app: Flask, make_user: Any, make_cohort: Any) -> None:
    cohort_id = make_cohort(capacity=5)
    user = make_user()
    _enroll(app, cohort_id, user)
    with app.app_context():
        enrollment = db.session.scalar(db.select(Enrollment).where(Enrollment.user_id == user))
        services.withdraw(db.session, enrollment, actor=db.session.get(User, user))
        db.session.commit()
    assert _enroll(app, cohort_id, user) is S.enrolled
    with app.app_context():
        enrollment = db.session.scalar(db.select(Enrollment).where(Enrollment.user_id == user))
        assert [e.to_status for e in enrollment.events] == ["enrolled", "withdrawn", "enrolled"]


def test_approval_cohort_goes_through_an_admin(app: Flask, make_user: Any, make_cohort: Any) -> None:
    cohort_id = make_cohort(capacity=1, requires_approval=True)
    admin = make_user("admin")
    a, b, c = make_user(), make_user(), make_user()
    for u in (a, b, c):
        assert _enroll(app, cohort_id, u) is S.pending
    with app.app_context():
        actor = db.session.get(User, admin)
        rows = {e.user_id: e for e in services.pending_requests(db.session)}
        services.approve(db.session, rows[a], actor=actor)
        services.approve(db.session, rows[b], actor=actor)
        services.reject(db.session, rows[c], actor=actor, note="기업 추천서가 필요합니다")
        db.session.commit()
        with pytest.raises(Conflict):
            services.approve(db.session, rows[c], actor=actor)
    assert _status(app, cohort_id, a) is S.enrolled
    assert _status(app, cohort_id, b) is S.waitlisted
    assert _status(app, cohort_id, c) is S.rejected
    with app.app_context():
        c_email = db.session.get(User, c).email
        body = db.session.scalar(db.select(OutboxMessage.body).where(OutboxMessage.recipient == c_email))
        assert "기업 추천서가 필요합니다" in body


def test_raising_capacity_promotes_waiting_learners(app: Flask, make_user: Any, make_cohort: Any) -> None:
    cohort_id = make_cohort(capacity=1)
    users = [make_user() for _ in range(3)]
    for u in users:
        _enroll(app, cohort_id, u)
    with app.app_context():
        cohort = db.session.get(Cohort, cohort_id)
        with pytest.raises(ValidationFailed):
            services.set_capacity(db.session, cohort, 0, actor=None)
        services.set_capacity(db.session, cohort, 3, actor=None)
        db.session.commit()
    assert [_status(app, cohort_id, u) for u in users] == [S.enrolled] * 3


def test_closed_cohort_refuses_requests(app: Flask, make_user: Any, make_cohort: Any) -> None:
    from academy.db import utcnow

    cohort_id = make_cohort(capacity=5, enroll_closes_at=utcnow())
    with pytest.raises(ValidationFailed):
        _enroll(app, cohort_id, make_user())


def test_capacity_constraint_holds_in_the_database(app: Flask, make_cohort: Any) -> None:
    from sqlalchemy.exc import IntegrityError

    cohort_id = make_cohort(capacity=1)
    with app.app_context():
        cohort = db.session.get(Cohort, cohort_id)
        cohort.seats_taken = 2
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_enrollment_mails_speak_the_learners_language_not_the_admins(
        app: Flask, make_user: Any, make_cohort: Any) -> None:
    from flask_babel import force_locale

    cohort_id = make_cohort(capacity=1, requires_approval=True)
    admin = make_user("admin")
    korean, english, third = make_user(), make_user(), make_user()
    with app.app_context():
        db.session.get(User, english).locale = "en"
        db.session.get(User, korean).locale = "ko"
        db.session.commit()
    for u in (korean, english, third):
        _enroll(app, cohort_id, u)
    with app.app_context(), app.test_request_context():
        actor = db.session.get(User, admin)
        rows = {e.user_id: e for e in services.pending_requests(db.session)}
        with force_locale("en"):  # the admin works in English
            services.approve(db.session, rows[korean], actor=actor)
        with force_locale("ko"):  # and this one in Korean
            services.reject(db.session, rows[english], actor=actor, note="Please ask your company first.")
        db.session.commit()

        def mail(user_id: int) -> OutboxMessage:
            email = db.session.get(User, user_id).email
            return db.session.scalar(db.select(OutboxMessage).where(OutboxMessage.recipient == email))

        approved, rejected = mail(korean), mail(english)
        assert "승인" in approved.subject and "approved" not in approved.subject
        assert "was not approved" in rejected.subject and "Please ask your company first." in rejected.body
        assert "승인" not in rejected.body
