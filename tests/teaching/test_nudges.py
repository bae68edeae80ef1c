"""Nudges to learners at risk: sent to one or all, refused for a withdrawn learner, and who came back."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask

from academy.extensions import db
from tests.teaching.builders import DAY, add_assignments, add_attempt, add_lab, get_cohort, get_course, seat

SUBJECT = "과제가 기다리고 있어요"
BODY = "지난주부터 소식이 없네요. 도움이 필요하면 알려 주세요."


def _send(course_id: int, user_ids: list[int], sender_id: int, *, now: dt.datetime,
          subject: str = SUBJECT, body: str = BODY) -> list[Any]:
    from academy.teaching.nudges import send_nudges
    from academy.users.models import User

    return send_nudges(db.session, get_course(course_id), user_ids, subject, body,
                       sender=db.session.get(User, sender_id), link="/courses/x",
                       reasons={user_ids[0]: ["idle"]}, now=now)


def _outcomes(course_id: int, now: dt.datetime, **kwargs: Any) -> dict[str, Any]:
    from academy.teaching.nudges import outcomes

    return {o.nudge.user.name: o for o in outcomes(db.session, get_course(course_id), now=now, **kwargs)}


def _counts() -> tuple[int, int, int]:
    """Nudges, nudge messages in inboxes and mails queued."""
    from academy.inbox.models import InboxMessage
    from academy.mail.models import OutboxMessage
    from academy.teaching.models import Nudge

    return (db.session.scalar(db.select(db.func.count(Nudge.id))),
            db.session.scalar(db.select(db.func.count(InboxMessage.id)).where(InboxMessage.kind == "nudge")),
            db.session.scalar(db.select(db.func.count(OutboxMessage.id))))


def test_a_nudge_reaches_the_inbox_and_came_back_is_read_from_activity(
        app: Flask, course_of: Any, make_cohort: Any, make_user: Any, learner: Any) -> None:
    from academy.audit.models import AuditEntry
    from academy.inbox.models import InboxMessage
    from academy.teaching.nudges import BACK, NOT_BACK, WAITING, shares

    track_id, course_id = course_of()
    cohort_id = make_cohort(capacity=10, track_id=track_id, starts_in_days=-20)
    teacher = make_user("instructor")
    ids = {key: learner(key) for key in ("submits", "labs", "late", "silent", "early")}
    with app.app_context():
        (assignment,) = add_assignments(course_id, 1)
        start = get_cohort(cohort_id).starts_at
        for user_id in ids.values():
            seat(cohort_id, user_id, requested_at=start)
        sent_at = start + 20 * DAY
        add_attempt(ids["early"], assignment, 1, {"q1": 0.0}, at=sent_at - DAY)  # before the nudge: not an answer
        nudges = _send(course_id, list(ids.values()), teacher, now=sent_at)
        assert [n.user_id for n in nudges] == list(ids.values())
        assert nudges[0].reasons == ["idle"] and nudges[1].reasons == []
        messages = db.session.scalars(db.select(InboxMessage).where(InboxMessage.kind == "nudge")).all()
        assert sorted(m.user_id for m in messages) == sorted(ids.values())
        assert {m.subject for m in messages} == {SUBJECT} and {m.sender_id for m in messages} == {teacher}
        entry = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "teaching.nudge")).one()
        assert entry.actor_id == teacher and sorted(entry.data["recipients"]) == sorted(ids.values())

        add_attempt(ids["submits"], assignment, 1, {"q1": 5.0}, at=sent_at + 3 * DAY)
        add_lab(ids["labs"], course_id, at=sent_at + 6 * DAY)
        add_attempt(ids["late"], assignment, 1, {"q1": 5.0}, at=sent_at + 8 * DAY)  # after the week
        db.session.commit()

        during = _outcomes(course_id, sent_at + 4 * DAY)
        assert during["submits"].state == BACK and during["submits"].came_back_at == sent_at + 3 * DAY
        assert {during[k].state for k in ("labs", "late", "silent", "early")} == {WAITING}
        (share,) = shares(list(during.values()))
        assert (share.nudged, share.came_back, share.waiting, share.share) == (5, 1, 4, 1.0)

        after = _outcomes(course_id, sent_at + 10 * DAY)
        assert after["labs"].state == BACK and after["labs"].came_back_at == sent_at + 6 * DAY
        assert after["late"].state == NOT_BACK and after["late"].came_back_at is None
        assert after["silent"].state == NOT_BACK and after["early"].state == NOT_BACK
        (share,) = shares(list(after.values()))
        assert (share.nudged, share.came_back, share.waiting) == (5, 2, 0) and share.share == pytest.approx(0.4)


def test_a_learner_counts_once_per_cohort_and_cohorts_apart(
        app: Flask, course_of: Any, make_cohort: Any, make_user: Any, learner: Any) -> None:
    from academy.teaching.nudges import outcomes, shares

    track_id, course_id = course_of()
    first = make_cohort(capacity=10, track_id=track_id, starts_in_days=-20)
    second = make_cohort(capacity=10, track_id=track_id, starts_in_days=-20)
    teacher = make_user("instructor")
    ids = {key: learner(key) for key in ("twice", "other")}
    with app.app_context():
        (assignment,) = add_assignments(course_id, 1)
        start = get_cohort(first).starts_at
        seat(first, ids["twice"], requested_at=start)
        seat(second, ids["other"], requested_at=start)
        t0 = start + 5 * DAY
        _send(course_id, [ids["twice"]], teacher, now=t0)  # ignored
        _send(course_id, [ids["twice"]], teacher, now=t0 + 10 * DAY)  # answered
        add_attempt(ids["twice"], assignment, 1, {"q1": 5.0}, at=t0 + 12 * DAY)
        _send(course_id, [ids["other"]], teacher, now=t0)
        db.session.commit()
        found = outcomes(db.session, get_course(course_id), now=t0 + 20 * DAY)
        assert len(found) == 3 and found[0].nudge.sent_at == t0 + 10 * DAY  # newest first
        by_cohort = {s.cohort.id: s for s in shares(found)}
        assert (by_cohort[first].nudged, by_cohort[first].came_back, by_cohort[first].share) == (1, 1, 1.0)
        assert (by_cohort[second].nudged, by_cohort[second].came_back, by_cohort[second].share) == (1, 0, 0.0)
        only_first = outcomes(db.session, get_course(course_id), cohort_id=first, now=t0 + 20 * DAY)
        assert {o.nudge.cohort_id for o in only_first} == {first}


def test_a_withdrawn_learner_stops_the_whole_batch(
        app: Flask, course_of: Any, make_cohort: Any, make_user: Any, learner: Any) -> None:
    from academy.enrollment.services import withdraw
    from academy.errors import Conflict, ValidationFailed
    from academy.users.models import User

    track_id, course_id = course_of()
    cohort_id = make_cohort(capacity=10, track_id=track_id, starts_in_days=-20)
    teacher = make_user("instructor")
    stayed, left, stranger = learner("stayed"), learner("left"), learner("stranger")
    with app.app_context():
        add_assignments(course_id, 1)
        seat(cohort_id, stayed)
        enrollment = seat(cohort_id, left)
        withdraw(db.session, enrollment, actor=db.session.get(User, left))
        db.session.commit()
        before = _counts()
        now = get_cohort(cohort_id).starts_at + 10 * DAY
        with pytest.raises(Conflict) as refused:
            _send(course_id, [stayed, left], teacher, now=now)
        assert "left" in str(refused.value) and get_cohort(cohort_id).name in str(refused.value)
        db.session.rollback()
        with pytest.raises(Conflict, match="stranger"):
            _send(course_id, [stranger], teacher, now=now)
        db.session.rollback()
        for subject, body in (("", BODY), (SUBJECT, "  "), ("x" * 201, BODY)):
            with pytest.raises(ValidationFailed):
                _send(course_id, [stayed], teacher, now=now, subject=subject, body=body)
            db.session.rollback()
        with pytest.raises(ValidationFailed):
            from academy.teaching.nudges import send_nudges

            send_nudges(db.session, get_course(course_id), [], SUBJECT, BODY, sender=db.session.get(User, teacher),
                        link=None)
        db.session.rollback()
        assert _counts() == before


def _risky_course(app: Flask, make_track: Any, make_cohort: Any, make_user: Any, learner: Any,
                  teacher: str) -> tuple[int, int, dict[str, int]]:
    """A course taught by ``teacher`` whose running cohort has two idle learners and a busy one."""
    track_id = make_track(instructors=(teacher,))
    make_user("instructor", email=teacher)
    cohort_id = make_cohort(capacity=10, track_id=track_id, starts_in_days=-20)
    ids = {key: learner(key) for key in ("idle-a", "idle-b", "busy")}
    with app.app_context():
        from academy.catalog.models import Course
        from academy.db import utcnow

        course_id = db.session.scalar(db.select(Course.id).where(Course.track_id == track_id))
        (assignment,) = add_assignments(course_id, 1)
        start = get_cohort(cohort_id).starts_at
        for user_id in ids.values():
            seat(cohort_id, user_id, requested_at=start)
        add_attempt(ids["busy"], assignment, 1, {"q1": 5.0}, at=utcnow() - DAY)
        db.session.commit()
    return course_id, cohort_id, ids


def test_the_instructor_nudges_from_the_at_risk_page_and_sees_who_came_back(
        app: Flask, client: Any, make_track: Any, make_cohort: Any, make_user: Any, learner: Any) -> None:
    from academy.enrollment.models import Enrollment
    from academy.enrollment.services import withdraw
    from academy.users.models import User
    from tests.conftest import csrf_token, login

    teacher = "nudge-teacher@example.kr"
    course_id, cohort_id, ids = _risky_course(app, make_track, make_cohort, make_user, learner, teacher)
    assert login(client, teacher).status_code == 302
    home = client.get("/teach").get_data(as_text=True)
    assert 'data-count="at-risk">2<' in home and f"/teach/courses/{course_id}/at-risk" in home
    page_url = f"/teach/courses/{course_id}/at-risk"
    page = client.get(page_url).get_data(as_text=True)
    assert 'data-at-risk="2"' in page and 'data-nudges="0"' in page and "data-nudge-all" in page
    assert "data-nudge-one=\"idle-a@example.kr\"" in page
    token = csrf_token(client, page_url)

    answer = client.post(f"/teach/courses/{course_id}/nudge", data={
        "csrf_token": token, "user": [ids["idle-a"], ids["idle-b"]], "subject": SUBJECT, "body": BODY})
    assert answer.status_code == 303 and answer.headers["Location"].endswith(page_url)
    page = client.get(page_url).get_data(as_text=True)
    assert 'data-nudges="2"' in page and 'data-nudge-state="waiting"' in page
    assert 'data-cohort-share=' in page and "—" in page  # nobody's week is over: no share yet

    with app.app_context():  # one of them withdraws; a nudge to them now is refused, nothing sent
        enrollment = db.session.scalars(db.select(Enrollment).where(Enrollment.user_id == ids["idle-b"])).one()
        withdraw(db.session, enrollment, actor=db.session.get(User, ids["idle-b"]))
        db.session.commit()
        before = _counts()
    answer = client.post(f"/teach/courses/{course_id}/nudge", data={
        "csrf_token": token, "user": [ids["idle-b"]], "subject": SUBJECT, "body": BODY}, follow_redirects=True)
    text = answer.get_data(as_text=True)
    assert "idle-b" in text and "수강을 취소했습니다" in text and "독려 메시지를 보내지 않았습니다" in text
    with app.app_context():
        assert _counts() == before

    learner_client = app.test_client()
    assert login(learner_client, "idle-a@example.kr").status_code == 302
    inbox = learner_client.get("/inbox").get_data(as_text=True)
    assert SUBJECT in inbox
    assert learner_client.post(f"/teach/courses/{course_id}/nudge", data={
        "csrf_token": csrf_token(learner_client, "/inbox"), "user": [ids["idle-a"]], "subject": SUBJECT,
        "body": BODY}).status_code in (403, 404)
    other = app.test_client()
    make_user("instructor", email="other-nudger@example.kr")
    assert login(other, "other-nudger@example.kr").status_code == 302
    assert other.post(f"/teach/courses/{course_id}/nudge", data={
        "csrf_token": csrf_token(other, "/teach"), "user": [ids["idle-a"]], "subject": SUBJECT,
        "body": BODY}).status_code == 404
