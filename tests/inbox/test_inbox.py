"""The learners' inbox: messages, the unread count, mail per kind, announcements and deadline reminders."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from academy.extensions import db
from tests.conftest import PASSWORD, csrf_token, login

TEACHER = "teacher@example.kr"


def _mail_to(email: str) -> list[str]:
    from academy.mail.models import OutboxMessage

    return list(db.session.scalars(db.select(OutboxMessage.subject).where(OutboxMessage.recipient == email)))


def test_a_message_lands_in_the_inbox_and_by_mail_unless_turned_off(app: Flask, make_user: Any) -> None:
    from academy.inbox.services import mail_kinds, set_mail_kinds, tell, unread_count
    from academy.users.models import User

    user_id = make_user(email="reader@example.kr")
    with app.app_context():
        user = db.session.get(User, user_id)
        tell(db.session, user, "score", "점수 도착", "본문", link="/dashboard")
        assert _mail_to(user.email) == ["점수 도착"]
        set_mail_kinds(db.session, user.id, ["score"])
        assert mail_kinds(db.session, user.id) == {"score"}
        tell(db.session, user, "nudge", "다시 시작해요", "본문")
        assert _mail_to(user.email) == ["점수 도착"]  # nudges by mail were turned off
        # A keyed message goes out once.
        assert tell(db.session, user, "deadline", "마감", "본문", key="deadline:1:x") is not None
        assert tell(db.session, user, "deadline", "마감", "본문", key="deadline:1:x") is None
        assert unread_count(db.session, user.id) == 3
        with pytest.raises(ValueError):
            tell(db.session, user, "no-such-kind", "s", "b")
        db.session.commit()


def test_the_inbox_pages_count_open_and_mark_read(app: Flask, client: FlaskClient, login_as: Any,
                                                  make_user: Any) -> None:
    from academy.inbox.models import InboxMessage
    from academy.inbox.services import tell
    from academy.users.models import User

    me = login_as("learner")
    other = make_user()
    with app.app_context():
        for n in range(2):
            tell(db.session, db.session.get(User, me), "announcement", f"공지 {n}", f"첫 줄\n둘째 줄 {n}",
                 link="/tracks")
        theirs = tell(db.session, db.session.get(User, other), "nudge", "남의 메시지", "비밀")
        db.session.commit()
        theirs_id = theirs.id
        mine = db.session.scalars(db.select(InboxMessage.id).where(InboxMessage.user_id == me)).all()
    page = client.get("/dashboard").get_data(as_text=True)
    assert "data-unread-count>2<" in page
    inbox = client.get("/inbox").get_data(as_text=True)
    assert inbox.count("data-unread>") == 2 and "남의 메시지" not in inbox  # two unread rows
    opened = client.get(f"/inbox/{mine[0]}").get_data(as_text=True)
    assert "둘째 줄" in opened and 'href="/tracks"' in opened
    assert "data-unread-count>1<" in client.get("/inbox").get_data(as_text=True)
    assert client.get(f"/inbox/{theirs_id}").status_code == 404
    token = csrf_token(client, "/inbox")
    assert client.post("/inbox/read-all", data={"csrf_token": token}).status_code == 303
    assert "data-unread-count" not in client.get("/inbox").get_data(as_text=True)
    # Mail settings: untick everything but scores.
    assert client.post("/inbox/settings", data={"csrf_token": token, "mail": ["score"]}).status_code == 303
    settings = client.get("/inbox/settings").get_data(as_text=True)
    assert 'value="score" id="mail-score" checked' in settings and 'value="nudge" id="mail-nudge">' in settings


@pytest.fixture
def cohort_of_two(app: Flask, make_track: Any, make_cohort: Any, make_user: Any) -> dict[str, Any]:
    from academy.catalog.models import Course
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import request_enrollment
    from academy.users.models import User

    track_id = make_track(instructors=(TEACHER,))
    cohort_id = make_cohort(capacity=5, track_id=track_id)
    make_user("instructor", email=TEACHER)
    learners = [make_user(email=f"cohort{n}@example.kr", locale="ko") for n in range(2)]
    with app.app_context():
        for user_id in learners:
            request_enrollment(db.session, db.session.get(Cohort, cohort_id), db.session.get(User, user_id))
        db.session.commit()
        course_id = db.session.scalar(db.select(Course.id).where(Course.track_id == track_id))
    return {"cohort_id": cohort_id, "course_id": course_id, "learners": learners, "track_id": track_id}


def test_an_instructor_announces_to_a_cohort(app: Flask, cohort_of_two: dict[str, Any]) -> None:
    from academy.audit.models import AuditEntry
    from academy.inbox.models import InboxMessage

    teacher = app.test_client()
    assert login(teacher, TEACHER, PASSWORD).status_code == 302
    course_id, cohort_id = cohort_of_two["course_id"], cohort_of_two["cohort_id"]
    roster = f"/teach/courses/{course_id}/gradebook?cohort={cohort_id}"
    token = csrf_token(teacher, roster)
    url = f"/teach/courses/{course_id}/cohorts/{cohort_id}/announce"
    refused = teacher.post(url, data={"csrf_token": token, "subject": " ", "body": "내용"}, follow_redirects=True)
    assert refused.status_code == 200
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(InboxMessage)) == 0
    sent = teacher.post(url, data={"csrf_token": token, "subject": "실습실 점검 안내",
                                   "body": "목요일 실습은 2층에서 합니다."})
    assert sent.status_code == 303
    with app.app_context():
        rows = db.session.scalars(db.select(InboxMessage)).all()
        assert sorted(r.user_id for r in rows) == sorted(cohort_of_two["learners"])
        assert {r.kind for r in rows} == {"announcement"} and rows[0].subject == "실습실 점검 안내"
        assert db.session.scalar(db.select(AuditEntry).where(AuditEntry.action == "inbox.announce"))
    learner = app.test_client()
    login(learner, "cohort0@example.kr", PASSWORD)
    assert "실습실 점검 안내" in learner.get("/inbox").get_data(as_text=True)
    assert learner.post(url, data={"csrf_token": csrf_token(learner, "/inbox"), "subject": "x",
                                   "body": "y"}).status_code == 403


def test_deadlines_in_the_next_48_hours_are_told_once_and_not_to_those_who_passed(
    app: Flask, cohort_of_two: dict[str, Any]
) -> None:
    from academy.catalog.models import Assignment
    from academy.enrollment.models import Cohort
    from academy.grading.models import AssignmentRelease, Submission, SubmissionStatus
    from academy.grading.services import cohort_deadline
    from academy.inbox.models import InboxMessage
    from academy.inbox.reminders import remind_deadlines

    with app.app_context():
        cohort = db.session.get(Cohort, cohort_of_two["cohort_id"])
        assignment = db.session.scalar(db.select(Assignment).where(Assignment.course_id == cohort_of_two["course_id"]))
        due = cohort_deadline(assignment, cohort)
        passed_id = cohort_of_two["learners"][1]
        release = AssignmentRelease(assignment=assignment, version=1, source_hash="h", path="/nonexistent")
        db.session.add(release)
        db.session.add(Submission(assignment=assignment, user_id=passed_id, release=release, attempt=1,
                                  status=SubmissionStatus.graded, raw_score=10.0, score=10.0, max_score=10.0,
                                  submitted_at=due - dt.timedelta(days=2)))
        db.session.commit()
        assert remind_deadlines(db.session, now=due - dt.timedelta(hours=72)) == 0  # not yet within 48 hours
        assert remind_deadlines(db.session, now=due - dt.timedelta(hours=30)) == 1
        assert remind_deadlines(db.session, now=due - dt.timedelta(hours=20)) == 0  # told once
        assert remind_deadlines(db.session, now=due + dt.timedelta(hours=1)) == 0  # past: nothing to remind
        [row] = db.session.scalars(db.select(InboxMessage)).all()
        assert row.user_id == cohort_of_two["learners"][0] and row.kind == "deadline"
        assert row.link == f"/assignments/{assignment.id}" and "KST" in row.body
