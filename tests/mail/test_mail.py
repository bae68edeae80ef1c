"""Outgoing mail: written to the outbox in the caller's transaction, delivered by a job right after the commit.

A real SMTP server (aiosmtpd on 127.0.0.1) receives it.  Enrollment promotion, a regrade
notice and a GPU quota warning each arrive without anyone resetting a password: once
through a real ``academy worker`` process, and otherwise through the real Celery task
run as the worker would, right after the commit.  A server that refuses a message leaves
it in the outbox with its error and attempt count, and the retry sweep delivers it later.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Iterator
from email.message import Message
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from academy.extensions import db
from academy.mail.models import OutboxMessage
from academy.mail.services import MAX_ATTEMPTS, queue_mail, retry_wait
from tests.conftest import csrf_token
from tests.grading.regrading import regrade_a_graded_submission

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PROMOTED = "수강 자리가 생겼습니다"  # "A seat opened up for you", in the default locale
REGRADED = "점수가 변경되었습니다"  # "Your score for … was updated"
COMPLETED = "과정을 수료했습니다"  # "You completed …"


class Mailbox:
    """aiosmtpd handler: keeps what it accepts; refuses every recipient with 550 while ``refuse`` is set."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.refuse = False

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(BytesParser(policy=default_policy).parsebytes(envelope.original_content))
        return "250 Message accepted"

    def subjects(self, to: str | None = None) -> list[str]:
        return [str(m["Subject"]) for m in self.received if to is None or m["To"] == to]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on 127.0.0.1 at a free port: (its mailbox, its port)."""
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield mailbox, controller.port
    controller.stop()


@pytest.fixture
def mailbox(app: Flask, smtp_server: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch) -> Mailbox:
    """The app configured to use the SMTP server; returns its mailbox."""
    box, port = smtp_server
    settings = app.config["ACADEMY_SETTINGS"]
    monkeypatch.setattr(settings, "smtp_host", "127.0.0.1")
    monkeypatch.setattr(settings, "smtp_port", port)
    return box


@pytest.fixture
def jobs(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The broker replaced by a list; ``jobs.run()`` runs what was sent with the real Celery tasks, as a worker."""
    from academy.jobs import tasks

    class Sent(list):  # type: ignore[type-arg]
        def run(self, name: str = "academy.deliver_mail") -> int:
            """Run (and take off the list) the messages for task ``name``; returns how many ran."""
            mine = [(task, args) for task, args in self if task == name]
            for entry in mine:
                self.remove(entry)
            with app.app_context():
                celery = tasks.worker_celery(lambda: app)
            for task, args in mine:
                celery.tasks[task](*args)  # the task body a worker runs, in this process
            return len(mine)

    sent = Sent()
    monkeypatch.setattr("academy.jobs._send", lambda task, args: sent.append((task, args)))
    monkeypatch.setattr(tasks, "_flask_app", app)
    return sent


def _outbox(app: Flask) -> list[OutboxMessage]:
    with app.app_context():
        messages = list(db.session.scalars(db.select(OutboxMessage).order_by(OutboxMessage.id)))
        db.session.expunge_all()
        return messages


# -- the outbox and its delivery job ------------------------------------------------------------------------------

def test_a_committed_message_is_delivered_by_its_job_and_marked_sent(app: Flask, mailbox: Mailbox,
                                                                     jobs: Any) -> None:
    with app.app_context():
        message = queue_mail(db.session, "learner@example.kr", "비밀번호 재설정", "링크: https://academy.test/reset/x")
        assert jobs == []  # not before the commit
        db.session.commit()
        assert jobs == [("academy.deliver_mail", (message.id,))]
    assert jobs.run() == 1
    [mail] = mailbox.received
    assert mail["To"] == "learner@example.kr" and mail["Subject"] == "비밀번호 재설정"
    [row] = _outbox(app)
    assert row.sent_at is not None and row.error is None and row.attempts == 1 and row.next_attempt_at is None
    with app.app_context():
        from academy.mail.worker import deliver, retry_due

        settings = app.config["ACADEMY_SETTINGS"]
        assert not deliver(db.session, settings, row.id)  # a duplicate message sends nothing
        assert retry_due(db.session, settings, now=row.created_at + dt.timedelta(hours=1)) == 0
    assert len(mailbox.received) == 1


def test_a_rolled_back_transaction_sends_nothing(app: Flask, mailbox: Mailbox, jobs: Any) -> None:
    with app.app_context():
        queue_mail(db.session, "learner@example.kr", "subject", "body")
        db.session.rollback()
        db.session.commit()
    assert jobs == [] and _outbox(app) == []
    with app.app_context():
        from academy.mail.worker import retry_due

        assert retry_due(db.session, app.config["ACADEMY_SETTINGS"],
                         now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)) == 0
    assert mailbox.received == []


def test_a_refused_message_keeps_its_error_and_a_later_retry_delivers_it(app: Flask, mailbox: Mailbox,
                                                                          jobs: Any, client: FlaskClient,
                                                                          login_as: Any) -> None:
    from academy.mail.worker import retry_due

    with app.app_context():
        queue_mail(db.session, "learner@example.kr", "수료 안내", "본문")
        db.session.commit()
    mailbox.refuse = True
    jobs.run()
    [row] = _outbox(app)
    assert row.sent_at is None and row.attempts == 1 and "550" in (row.error or "")
    assert row.next_attempt_at is not None
    tried_at = row.next_attempt_at - retry_wait(1)
    # The admin sees it, with the error and the count, on the outbox page.
    login_as("admin")
    page = client.get("/admin/outbox").get_data(as_text=True)
    assert "550" in page and "1회" in page and "수료 안내" in page
    with app.app_context():
        settings = app.config["ACADEMY_SETTINGS"]
        assert retry_due(db.session, settings, now=tried_at + retry_wait(1) / 2) == 0  # not due yet
        assert retry_due(db.session, settings, now=row.next_attempt_at) == 0  # still refused
    [row] = _outbox(app)
    assert row.attempts == 2 and row.sent_at is None and row.next_attempt_at is not None
    mailbox.refuse = False
    with app.app_context():
        assert retry_due(db.session, app.config["ACADEMY_SETTINGS"], now=row.next_attempt_at) == 1
    [row] = _outbox(app)
    assert row.sent_at is not None and row.attempts == 3 and row.error is None
    assert mailbox.subjects("learner@example.kr") == ["수료 안내"]


def test_the_retries_are_bounded_and_the_message_stays_for_the_admin(app: Flask, mailbox: Mailbox,
                                                                     jobs: Any) -> None:
    from academy.mail.worker import retry_due

    with app.app_context():
        queue_mail(db.session, "learner@example.kr", "subject", "body")
        db.session.commit()
    mailbox.refuse = True
    jobs.run()
    for _ in range(MAX_ATTEMPTS + 2):
        [row] = _outbox(app)
        with app.app_context():
            retry_due(db.session, app.config["ACADEMY_SETTINGS"], now=row.next_attempt_at or row.created_at)
    [row] = _outbox(app)
    assert row.attempts == MAX_ATTEMPTS and row.next_attempt_at is None and row.sent_at is None
    assert "550" in (row.error or "")
    assert retry_wait(2) == 2 * retry_wait(1) and retry_wait(MAX_ATTEMPTS) <= dt.timedelta(hours=6)


def test_a_lost_delivery_message_is_picked_up_by_the_retry_sweep(app: Flask, mailbox: Mailbox, jobs: Any) -> None:
    from academy.mail.worker import retry_due

    with app.app_context():
        queue_mail(db.session, "learner@example.kr", "subject", "body")
        db.session.commit()
    jobs.clear()  # the broker lost it
    [row] = _outbox(app)
    with app.app_context():
        settings = app.config["ACADEMY_SETTINGS"]
        assert retry_due(db.session, settings, now=row.created_at) == 0  # the job's own try comes first
        assert retry_due(db.session, settings, now=row.next_attempt_at) == 1
    assert mailbox.subjects() == ["subject"]


def test_without_smtp_the_outbox_is_the_delivery(app: Flask, jobs: Any) -> None:
    with app.app_context():
        queue_mail(db.session, "learner@example.kr", "subject", "body")
        db.session.commit()
    assert jobs.run() == 1  # the job runs and has nothing to do
    [row] = _outbox(app)
    assert row.sent_at is None and row.attempts == 0 and row.error is None


def test_the_reset_link_is_mailed_by_the_job_not_by_the_view(app: Flask, client: FlaskClient, mailbox: Mailbox,
                                                            jobs: Any, make_user: Any) -> None:
    make_user("learner", email="forgot@example.kr")
    token = csrf_token(client, "/password/forgot")
    response = client.post("/password/forgot", data={"email": "forgot@example.kr", "csrf_token": token})
    assert response.status_code == 302
    assert mailbox.received == []  # the view only commits
    assert jobs.run() == 1
    assert mailbox.subjects("forgot@example.kr")


# -- what the portal mails, without anyone resetting a password ---------------------------------------------------

def test_a_learner_promoted_from_the_waitlist_is_mailed(app: Flask, mailbox: Mailbox, jobs: Any, make_user: Any,
                                                        make_cohort: Any) -> None:
    cohort_id = make_cohort(capacity=1)
    seated, waiting = make_user("learner"), make_user("learner", email="waiting@example.kr")
    _enroll_then_withdraw(app, cohort_id, seated, waiting)
    jobs.run()
    assert PROMOTED in mailbox.subjects("waiting@example.kr")


def _enroll_then_withdraw(app: Flask, cohort_id: int, seated: int, waiting: int) -> None:
    """``seated`` takes the only seat, ``waiting`` waits, ``seated`` leaves (and ``waiting`` is promoted)."""
    from academy.enrollment.models import Cohort, EnrollmentStatus
    from academy.enrollment.services import request_enrollment, withdraw
    from academy.users.models import User

    with app.app_context():
        cohort = db.session.get(Cohort, cohort_id)
        first = request_enrollment(db.session, cohort, db.session.get(User, seated))
        second = request_enrollment(db.session, cohort, db.session.get(User, waiting))
        assert second.status is EnrollmentStatus.waitlisted
        db.session.commit()
        withdraw(db.session, first, actor=db.session.get(User, seated))
        db.session.commit()
        assert second.status is EnrollmentStatus.enrolled


def test_a_regrade_that_changes_the_score_is_mailed(app: Flask, mailbox: Mailbox, jobs: Any, make_user: Any,
                                                    make_track: Any) -> None:
    from academy.grading.worker import _finish, claim, worker_name

    make_track()
    job_id = regrade_a_graded_submission(app, make_user("learner", email="graded@example.kr"),
                                         make_user("instructor"))
    assert ("academy.grade", (job_id,)) in jobs  # the worker is driven by hand below
    jobs.remove(("academy.grade", (job_id,)))
    with app.app_context():
        attempt = claim(job_id, worker_name())
        fixed = {"status": "graded", "score": 9.0, "max_score": 10.0, "problems": [], "notebooks": []}
        assert _finish(job_id, worker_name(), attempt, fixed, None, None) == "done"
    assert mailbox.received == []  # written with the result, sent by its own job
    jobs.run()
    to_learner = [m for m in mailbox.received if m["To"] == "graded@example.kr"]
    [mail] = [m for m in to_learner if m["Subject"].endswith(REGRADED)]
    body = mail.get_content()
    assert "4" in body and "9" in body
    # 9 of 10 now passes the track's only course: each completion it brings is its own mail
    others = [m["Subject"] for m in to_learner if m is not mail]
    assert others and all(COMPLETED in subject for subject in others), others


def _sweep_labs(session: Any, hub: Any, settings: Any, now: dt.datetime) -> Any:
    """The labs sweep that warns about GPU quota (the one place this test names the labs module)."""
    from academy.labs.usage import sweep

    return sweep(session, hub, settings, now=now)


LABS = {"hub_url": "http://127.0.0.1:9", "hub_api_token": "h" * 40, "hub_client_secret": "c" * 40,
        "gpu_devices": "0,1"}


@pytest.mark.app_config(**{**LABS, "lab_quota_warning_minutes": 10})
def test_a_gpu_quota_warning_is_mailed(app: Flask, mailbox: Mailbox, jobs: Any, make_user: Any, make_track: Any,
                                       make_cohort: Any) -> None:
    from academy.catalog.models import Course
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import request_enrollment
    from academy.labs.models import LabSession, LabState
    from academy.users.models import User
    from tests.labs.fakehub import FakeHub

    track_id = make_track()
    cohort_id = make_cohort(capacity=5, track_id=track_id)
    learner = make_user("learner", email="gpu@example.kr")
    hub = FakeHub()
    hub.running[f"u{learner}"] = {}
    now = dt.datetime.now(dt.UTC)
    with app.app_context():
        course = db.session.scalar(db.select(Course).where(Course.track_id == track_id))
        course.lab_profile, course.gpu_hour_quota = "gpu", 1.0
        request_enrollment(db.session, db.session.get(Cohort, cohort_id), db.session.get(User, learner))
        db.session.add(LabSession(user_id=learner, course_id=course.id, hub_user=f"u{learner}", profile="gpu", gpus=1,
                                  device="0", state=LabState.running, started_at=now - dt.timedelta(minutes=55)))
        db.session.commit()
        jobs.run()  # the enrollment mail
        report = _sweep_labs(db.session, hub, app.config["ACADEMY_SETTINGS"], now)
        assert report.warned == 1
        db.session.commit()  # as the sweep_labs task does: the sweep only flushes
    jobs.run()
    assert "GPU 사용 시간이 거의 다 되었습니다" in mailbox.subjects("gpu@example.kr")


# -- a real worker ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_real_worker_mails_the_promoted_learner(tmp_path: Path, smtp_server: tuple[Mailbox, int]) -> None:
    """`academy worker` on the embedded broker delivers what a commit in the portal queued."""
    from tests.workers import Workers, dispose, portal_app, worker_env

    box, port = smtp_server
    data_dir = tmp_path / "data"
    database_url = f"sqlite:///{tmp_path / 'academy.sqlite3'}"
    app = portal_app(database_url, data_dir, None)
    with app.app_context():
        import academy.models  # noqa: F401

        db.create_all()
    workers = Workers(worker_env(database_url, data_dir, None, ACADEMY_SMTP_HOST="127.0.0.1",
                                   ACADEMY_SMTP_PORT=str(port)), tmp_path)
    try:
        workers.start("--no-beat")
        cohort_id, seated, waiting = _cohort_and_two_learners(app)
        _enroll_then_withdraw(app, cohort_id, seated, waiting)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and PROMOTED not in box.subjects("waiting2@example.kr"):
            time.sleep(0.3)
        assert box.subjects("waiting2@example.kr").count(PROMOTED) == 1, workers.logs()

        def promoted() -> OutboxMessage:
            [row] = [m for m in _outbox(app) if m.recipient == "waiting2@example.kr" and m.subject == PROMOTED]
            return row

        while time.monotonic() < deadline and promoted().sent_at is None:  # the worker commits after SMTP took it
            time.sleep(0.1)
        row = promoted()
        assert row.sent_at is not None and row.attempts == 1
    finally:
        workers.stop_all()
        dispose(app)


def _cohort_and_two_learners(app: Flask) -> tuple[int, int, int]:
    from academy.catalog.models import Course, Track
    from academy.db import utcnow
    from academy.enrollment.services import create_cohort
    from academy.users.models import Role
    from academy.users.services import create_user

    with app.app_context():
        track = Track(slug="mail", title_ko="메일", title_en="Mail", position=1)
        db.session.add_all([track, Course(slug="mail-course", track=track, title_ko="과정", title_en="Course",
                                          source_path="/nonexistent/mail", hours=1.0)])
        cohort = create_cohort(db.session, track, name="one seat", starts_at=utcnow(),
                               ends_at=utcnow() + dt.timedelta(days=30), capacity=1, actor=None)
        seated = create_user(db.session, "seated2@example.kr", "seated-pass-123", Role.learner)
        waiting = create_user(db.session, "waiting2@example.kr", "waiting-pass-123", Role.learner)
        db.session.commit()
        return cohort.id, seated.id, waiting.id

