"""The one seam for queueing work: ``enqueue_after_commit`` sends after the outermost commit, never on rollback.

The broker is the boundary faked here (``academy.jobs._send`` records instead of sending);
tests/grading/test_queue.py and tests/mail/test_mail.py run the same seam against real workers.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from academy.extensions import db
from academy.jobs import celery_config, enqueue_after_commit
from academy.mail.models import OutboxMessage
from tests.grading.regrading import regrade_a_graded_submission


@pytest.fixture
def sent(sent_jobs: list[tuple[str, tuple[Any, ...]]]) -> list[tuple[str, tuple[Any, ...]]]:
    """What reached the broker, in order (conftest's ``sent_jobs``)."""
    return sent_jobs


def _row(subject: str) -> None:
    db.session.add(OutboxMessage(recipient="a@example.kr", subject=subject, body="-"))
    db.session.flush()


def _subjects() -> set[str]:
    return set(db.session.scalars(db.select(OutboxMessage.subject)))


def test_messages_leave_after_the_commit_in_order_and_once(app: Flask, sent: list[Any]) -> None:
    with app.app_context():
        _row("one")
        enqueue_after_commit(db.session, "academy.grade", 2)
        enqueue_after_commit(db.session, "academy.grade", 1)
        enqueue_after_commit(db.session, "academy.grade", 2)  # the same job twice in one transaction
        enqueue_after_commit(db.session, "academy.release_upload", 7, {"a.ipynb": "d1"}, None)
        enqueue_after_commit(db.session, "academy.release_upload", 7, {"a.ipynb": "d1"}, None)
        assert sent == []  # nothing before the commit
        db.session.commit()
        assert sent == [("academy.grade", (2,)), ("academy.grade", (1,)),
                        ("academy.release_upload", (7, {"a.ipynb": "d1"}, None))]
        db.session.commit()  # a later, empty commit sends nothing again
        assert len(sent) == 3


def test_a_rolled_back_or_closed_transaction_sends_nothing_ever(app: Flask, sent: list[Any]) -> None:
    with app.app_context():
        _row("gone")
        enqueue_after_commit(db.session, "academy.grade", 1)
        db.session.rollback()
        _row("closed")
        enqueue_after_commit(db.session, "academy.grade", 2)
        db.session.close()  # a session closed without commit, then used again
        _row("kept")
        enqueue_after_commit(db.session, "academy.grade", 3)
        db.session.commit()
        assert sent == [("academy.grade", (3,))]
        assert _subjects() == {"kept"}


def test_a_released_savepoint_waits_for_the_outer_commit(app: Flask, sent: list[Any]) -> None:
    with app.app_context():
        enqueue_after_commit(db.session, "academy.grade", 1)
        with db.session.begin_nested():
            _row("inner")
            enqueue_after_commit(db.session, "academy.grade", 2)
        assert sent == []  # releasing the savepoint is not the commit: a worker would not see the rows yet
        db.session.rollback()
        assert sent == []  # and the outer rollback takes the savepoint's work with it
        enqueue_after_commit(db.session, "academy.grade", 3)
        with db.session.begin_nested():
            enqueue_after_commit(db.session, "academy.grade", 4)
        db.session.commit()
        assert sent == [("academy.grade", (3,)), ("academy.grade", (4,))]


def test_a_rolled_back_savepoint_drops_only_its_own_work(app: Flask, sent: list[Any]) -> None:
    with app.app_context():
        _row("outer")
        enqueue_after_commit(db.session, "academy.grade", 1)
        savepoint = db.session.begin_nested()
        _row("inner")
        enqueue_after_commit(db.session, "academy.grade", 2)
        with db.session.begin_nested():  # a savepoint inside it, released, then the outer one rolled back
            enqueue_after_commit(db.session, "academy.grade", 3)
        savepoint.rollback()
        with db.session.begin_nested():
            enqueue_after_commit(db.session, "academy.grade", 4)
        db.session.commit()
        assert sent == [("academy.grade", (1,)), ("academy.grade", (4,))]
        assert _subjects() == {"outer"}


def test_a_failed_insert_in_a_savepoint_keeps_the_work_queued_before_it(
    app: Flask, sent: list[Any], make_user: Any, make_cohort: Any
) -> None:
    """request_enrollment's savepoint against a double request (an IntegrityError rolled back inside)."""
    from academy.enrollment.models import Cohort
    from academy.enrollment.services import request_enrollment
    from academy.errors import Conflict
    from academy.users.models import User

    cohort_id, user_id = make_cohort(capacity=5), make_user("learner")
    with app.app_context():
        cohort, user = db.session.get(Cohort, cohort_id), db.session.get(User, user_id)
        request_enrollment(db.session, cohort, user)
        db.session.commit()
        sent.clear()
        enqueue_after_commit(db.session, "academy.grade", 9)
        with pytest.raises(Conflict):
            request_enrollment(db.session, cohort, user)
        db.session.commit()
        assert sent == [("academy.grade", (9,))]


def test_a_broker_that_is_down_is_logged_and_the_rest_still_go(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    delivered: list[Any] = []

    def flaky(task: str, args: tuple[Any, ...]) -> None:
        if args == (1,):
            raise ConnectionError("broker down")
        delivered.append(args)

    monkeypatch.setattr("academy.jobs._send", flaky)
    with app.app_context(), caplog.at_level(logging.ERROR, logger="academy.jobs"):
        _row("committed anyway")
        enqueue_after_commit(db.session, "academy.grade", 1)
        enqueue_after_commit(db.session, "academy.grade", 2)
        db.session.commit()
        assert delivered == [(2,)]
        assert _subjects() == {"committed anyway"}
    assert "could not send academy.grade(1,)" in caplog.text


def test_a_plain_session_works_the_same(app: Flask, sent: list[Any]) -> None:
    with app.app_context(), Session(db.engine) as session:
        enqueue_after_commit(session, "academy.grade", 5)
        session.rollback()
        enqueue_after_commit(session, "academy.grade", 6)
        session.commit()
    assert sent == [("academy.grade", (6,))]


def test_the_beat_runs_every_sweep(tmp_path: Any) -> None:
    schedule = celery_config(None, tmp_path)["beat_schedule"]
    assert {entry["task"] for entry in schedule.values()} >= {
        "academy.requeue_stale_jobs", "academy.sweep_labs", "academy.retry_mail"}


# -- grading jobs: queued with their rows, re-sent by the sweeper when their message is lost -----------------------

def test_the_sweeper_resends_a_job_whose_message_was_lost_and_only_that(
    app: Flask, monkeypatch: pytest.MonkeyPatch, make_user: Any, make_track: Any
) -> None:
    from academy.grading.models import GradingJob, JobState
    from academy.grading.worker import REQUEUE_QUEUED_AFTER, requeue_stale

    attempts: list[Any] = []

    def broker_down(task: str, args: tuple[Any, ...]) -> None:
        attempts.append((task, args))
        raise ConnectionError("broker down")

    monkeypatch.setattr("academy.jobs._send", broker_down)
    make_track()
    job_id = regrade_a_graded_submission(app, make_user("learner"), make_user("instructor"))
    assert attempts == [("academy.grade", (job_id,))]  # tried at the commit, and lost
    sent: list[Any] = []
    monkeypatch.setattr("academy.jobs._send", lambda task, args: sent.append((task, args)))
    with app.app_context():
        job = db.session.get(GradingJob, job_id)
        published = job.published_at
        assert job.state is JobState.queued and published is not None
        assert requeue_stale(now=published + REQUEUE_QUEUED_AFTER / 2) == 0  # it may just be waiting its turn
        assert sent == []
        later = published + REQUEUE_QUEUED_AFTER * 1.5
        assert requeue_stale(now=later) == 1
        assert sent == [("academy.grade", (job_id,))]
        db.session.expire_all()
        assert db.session.get(GradingJob, job_id).published_at == later  # so it is not re-sent at every sweep
        assert requeue_stale(now=later + REQUEUE_QUEUED_AFTER / 2) == 0
        # A worker that died holding it: the lease runs out and the job goes out again.
        job = db.session.get(GradingJob, job_id)
        job.state, job.attempts, job.lease_until = JobState.running, 1, later
        db.session.commit()
        assert requeue_stale(now=later + dt.timedelta(seconds=1)) == 1
        assert sent == [("academy.grade", (job_id,))] * 2
