"""One active enrollment per learner and track, and the admin's explicit move between cohorts.

A learner enrolled, waitlisted or awaiting approval in one cohort of a track is refused another
cohort of that track with a message naming the cohort they hold, and nothing is stored.  An
admin moves a learner between cohorts of a track from the cohort page, within the capacity
rules, audited.  (Parallel requests: tests/enrollment/test_concurrency.py.)
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from academy.audit.models import AuditEntry
from academy.enrollment import services
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.errors import Conflict, PermissionDenied, ValidationFailed
from academy.extensions import db
from academy.mail.models import OutboxMessage
from academy.users.models import User
from tests.conftest import csrf_token

S = EnrollmentStatus


def _enroll(app: Flask, cohort_id: int, user_id: int) -> EnrollmentStatus:
    with app.app_context():
        enrollment = services.request_enrollment(db.session, db.session.get(Cohort, cohort_id),
                                                 db.session.get(User, user_id))
        db.session.commit()
        return enrollment.status


def _state(app: Flask) -> tuple[list[tuple[int, int, str]], dict[int, int], int]:
    """(enrollment rows as (cohort, user, status), seats taken by cohort, outbox size)."""
    with app.app_context():
        rows = [(e.cohort_id, e.user_id, e.status.value)
                for e in db.session.scalars(db.select(Enrollment).order_by(Enrollment.id))]
        seats = dict(db.session.execute(db.select(Cohort.id, Cohort.seats_taken)).all())
        mail = db.session.scalar(db.select(db.func.count()).select_from(OutboxMessage)) or 0
        return rows, seats, mail


def _move(app: Flask, enrollment_user: int, source: int, target: int, admin: int) -> Enrollment:
    with app.app_context():
        enrollment = db.session.scalar(db.select(Enrollment).where(
            Enrollment.cohort_id == source, Enrollment.user_id == enrollment_user))
        moved = services.move_enrollment(db.session, enrollment, db.session.get(Cohort, target),
                                         actor=db.session.get(User, admin))
        db.session.commit()
        db.session.refresh(moved)
        db.session.expunge(moved)
        return moved


@pytest.mark.parametrize(("requires_approval", "capacity", "held_status"), [
    (False, 2, S.enrolled), (False, 0, S.waitlisted), (True, 2, S.pending),
])
def test_a_second_cohort_of_the_same_track_is_refused_naming_the_first(
    app: Flask, make_user: Any, make_track: Any, make_cohort: Any, requires_approval: bool, capacity: int,
    held_status: EnrollmentStatus,
) -> None:
    track = make_track()
    first = make_cohort(capacity=max(capacity, 1), requires_approval=requires_approval, track_id=track)
    second = make_cohort(capacity=5, track_id=track)
    learner = make_user()
    if capacity == 0:  # a full first cohort: someone else holds its only seat
        _enroll(app, first, make_user())
    assert _enroll(app, first, learner) is held_status
    before = _state(app)
    with app.app_context(), pytest.raises(Conflict) as refused:
        services.request_enrollment(db.session, db.session.get(Cohort, second), db.session.get(User, learner))
    with app.app_context():
        first_name = db.session.get(Cohort, first).name
    assert first_name in str(refused.value)
    assert _state(app) == before  # nothing stored, no seat taken, no mail


def test_withdrawn_or_rejected_enrollments_do_not_count(app: Flask, make_user: Any, make_track: Any,
                                                        make_cohort: Any) -> None:
    track = make_track()
    first = make_cohort(capacity=2, track_id=track)
    gated = make_cohort(capacity=2, requires_approval=True, track_id=track)
    second = make_cohort(capacity=2, track_id=track)
    admin, learner = make_user("admin"), make_user()
    _enroll(app, first, learner)
    with app.app_context():
        row = db.session.scalar(db.select(Enrollment).where(Enrollment.user_id == learner))
        services.withdraw(db.session, row, actor=db.session.get(User, learner))
        db.session.commit()
    assert _enroll(app, gated, learner) is S.pending
    with app.app_context():
        row = db.session.scalar(db.select(Enrollment).where(Enrollment.cohort_id == gated))
        services.reject(db.session, row, actor=db.session.get(User, admin))
        db.session.commit()
    assert _enroll(app, second, learner) is S.enrolled
    # and back to the first cohort after leaving the second: the old withdrawn row is reused
    with app.app_context():
        row = db.session.scalar(db.select(Enrollment).where(Enrollment.cohort_id == second))
        services.withdraw(db.session, row, actor=db.session.get(User, learner))
        db.session.commit()
    assert _enroll(app, first, learner) is S.enrolled
    rows, seats, _ = _state(app)
    assert [status for _c, _u, status in rows] == ["enrolled", "rejected", "withdrawn"]
    assert seats == {first: 1, gated: 0, second: 0}


def test_cohorts_of_different_tracks_are_independent(app: Flask, make_user: Any, make_cohort: Any) -> None:
    learner = make_user()
    assert _enroll(app, make_cohort(), learner) is S.enrolled
    assert _enroll(app, make_cohort(), learner) is S.enrolled


def test_the_enroll_button_refusal_names_the_cohort_and_stores_nothing(
    app: Flask, client: FlaskClient, login_as: Any, make_track: Any, make_cohort: Any,
) -> None:
    track = make_track()
    first, second = make_cohort(track_id=track), make_cohort(track_id=track)
    login_as("learner")
    token = csrf_token(client, "/profile")
    assert client.post(f"/cohorts/{first}/enroll", data={"csrf_token": token}).status_code == 302
    before = _state(app)
    response = client.post(f"/cohorts/{second}/enroll", data={"csrf_token": token}, follow_redirects=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'alert-danger' in html and "cohort 1" in html  # make_cohort names them "cohort N"
    assert _state(app) == before
    # the track page offers no second enroll button, and says which cohort the learner is in
    with app.app_context():
        slug = db.session.get(Cohort, first).track.slug
    page = client.get(f"/tracks/{slug}").get_data(as_text=True)
    assert f'action="/cohorts/{second}/enroll"' not in page
    assert page.count('data-held-elsewhere') == 1


# --- the admin's move ---------------------------------------------------------------------


def test_admin_moves_an_enrolled_learner_and_the_old_seat_goes_to_the_waitlist(
    app: Flask, make_user: Any, make_track: Any, make_cohort: Any,
) -> None:
    track = make_track()
    source, target = make_cohort(capacity=1, track_id=track), make_cohort(capacity=2, track_id=track)
    admin, learner, waiting = make_user("admin"), make_user(), make_user()
    _enroll(app, source, learner)
    assert _enroll(app, source, waiting) is S.waitlisted
    moved = _move(app, learner, source, target, admin)
    assert moved.cohort_id == target and moved.status is S.enrolled
    rows, seats, _ = _state(app)
    assert sorted(rows) == sorted([(source, learner, "withdrawn"), (source, waiting, "enrolled"),
                                   (target, learner, "enrolled")])
    assert seats == {source: 1, target: 1}
    with app.app_context():
        [entry] = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "enrollment.move")).all()
        assert entry.actor_id == admin and entry.target_id == str(moved.id)
        assert entry.data["from_cohort_id"] == source and entry.data["to_cohort_id"] == target
        email = db.session.get(User, learner).email
        mails = db.session.scalars(db.select(OutboxMessage).where(OutboxMessage.recipient == email)).all()
        target_name = db.session.get(Cohort, target).name
        assert any(target_name in m.body for m in mails)


def test_a_learner_holding_a_seat_is_not_moved_into_a_full_cohort(
    app: Flask, make_user: Any, make_track: Any, make_cohort: Any,
) -> None:
    track = make_track()
    source, target = make_cohort(capacity=1, track_id=track), make_cohort(capacity=1, track_id=track)
    admin, learner = make_user("admin"), make_user()
    _enroll(app, source, learner)
    _enroll(app, target, make_user())
    before = _state(app)
    with pytest.raises(Conflict):
        _move(app, learner, source, target, admin)
    assert _state(app) == before


def test_a_waiting_learner_moved_into_a_full_cohort_waits_there(
    app: Flask, make_user: Any, make_track: Any, make_cohort: Any,
) -> None:
    track = make_track()
    source = make_cohort(capacity=1, requires_approval=True, track_id=track)
    target = make_cohort(capacity=1, track_id=track)
    admin, learner = make_user("admin"), make_user()
    assert _enroll(app, source, learner) is S.pending
    _enroll(app, target, make_user())
    moved = _move(app, learner, source, target, admin)
    assert moved.status is S.waitlisted
    with app.app_context():
        assert services.waitlist_position(db.session, db.session.get(Enrollment, moved.id)) == 1
    _rows, seats, _ = _state(app)
    assert seats == {source: 0, target: 1}


def test_moves_outside_the_rules_are_refused(app: Flask, make_user: Any, make_track: Any,
                                             make_cohort: Any) -> None:
    track = make_track()
    source, target = make_cohort(track_id=track), make_cohort(track_id=track)
    other_track = make_cohort()
    admin, learner = make_user("admin"), make_user()
    _enroll(app, source, learner)
    before = _state(app)
    with pytest.raises(ValidationFailed):
        _move(app, learner, source, other_track, admin)
    with pytest.raises(ValidationFailed):
        _move(app, learner, source, source, admin)
    with pytest.raises(PermissionDenied):
        _move(app, learner, source, target, learner)
    assert _state(app) == before


def test_admin_moves_from_the_cohort_page(app: Flask, client: FlaskClient, login_as: Any, make_user: Any,
                                          make_track: Any, make_cohort: Any) -> None:
    track = make_track()
    source, target = make_cohort(capacity=2, track_id=track), make_cohort(capacity=2, track_id=track)
    learner = make_user(name="김학습")
    _enroll(app, source, learner)
    login_as("admin")
    page = client.get(f"/admin/cohorts/{source}").get_data(as_text=True)
    assert f'<option value="{target}">' in page
    assert ">enrolled<" not in page and "status-enrolled" in page  # the badge shows a label, not the code
    with app.app_context():
        enrollment_id = db.session.scalar(db.select(Enrollment.id).where(Enrollment.user_id == learner))
    token = csrf_token(client, f"/admin/cohorts/{source}")
    response = client.post(f"/admin/cohorts/{source}", data={
        "csrf_token": token, "enrollment_id": enrollment_id, "target": target}, follow_redirects=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "alert-success" in html
    rows, seats, _ = _state(app)
    assert (target, learner, "enrolled") in rows and seats == {source: 0, target: 1}
    # a bad target is a message on the page, not an error page, and changes nothing
    before = _state(app)
    with app.app_context():
        moved_id = db.session.scalar(db.select(Enrollment.id).where(Enrollment.cohort_id == target))
    response = client.post(f"/admin/cohorts/{target}", data={
        "csrf_token": token, "enrollment_id": moved_id, "target": "not-a-number"}, follow_redirects=True)
    assert response.status_code == 200 and "alert-danger" in response.get_data(as_text=True)
    assert _state(app) == before
    # the history on the source's roster names where the learner went (no move form is left there)
    html = client.get(f"/admin/cohorts/{source}").get_data(as_text=True)
    with app.app_context():
        target_name = db.session.get(Cohort, target).name
    assert 'name="target"' not in html and target_name in html
