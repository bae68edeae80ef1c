"""Parallel enrollment requests never exceed a cohort's capacity.

Real threads, each with its own database connection and transaction, released at
once by a barrier; on PostgreSQL the transactions truly overlap.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask

from academy.enrollment import services
from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus
from academy.errors import AcademyError
from academy.extensions import db
from academy.users.models import User

S = EnrollmentStatus


def _in_parallel(app: Flask, work: list[Any]) -> list[BaseException]:
    barrier = threading.Barrier(len(work))
    errors: list[BaseException] = []

    def runner(job: Any) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                job()
                db.session.commit()
            except AcademyError:
                db.session.rollback()
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                db.session.rollback()
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=runner, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_parallel_requests_fill_exactly_the_capacity(app: Flask, make_user: Any, make_cohort: Any) -> None:
    capacity, learners = 5, 24
    cohort_id = make_cohort(capacity=capacity)
    user_ids = [make_user() for _ in range(learners)]

    def request(user_id: int) -> Any:
        return lambda: services.request_enrollment(
            db.session, db.session.get(Cohort, cohort_id), db.session.get(User, user_id)
        )

    errors = _in_parallel(app, [request(u) for u in user_ids])
    assert not errors, errors
    with app.app_context():
        statuses = list(db.session.scalars(db.select(Enrollment.status).where(Enrollment.cohort_id == cohort_id)))
        assert statuses.count(S.enrolled) == capacity
        assert statuses.count(S.waitlisted) == learners - capacity
        assert db.session.get(Cohort, cohort_id).seats_taken == capacity
        positions = sorted(
            services.waitlist_position(db.session, e)
            for e in db.session.scalars(db.select(Enrollment).where(Enrollment.status == S.waitlisted))
        )
        assert positions == list(range(1, learners - capacity + 1))


def test_parallel_double_clicks_create_one_enrollment(app: Flask, make_user: Any, make_cohort: Any) -> None:
    cohort_id = make_cohort(capacity=3)
    user_id = make_user()
    job = lambda: services.request_enrollment(  # noqa: E731
        db.session, db.session.get(Cohort, cohort_id), db.session.get(User, user_id)
    )
    errors = _in_parallel(app, [job] * 6)
    assert not errors, errors
    with app.app_context():
        rows = list(db.session.scalars(db.select(Enrollment).where(Enrollment.cohort_id == cohort_id)))
        assert len(rows) == 1 and rows[0].status is S.enrolled
        assert db.session.get(Cohort, cohort_id).seats_taken == 1


def test_parallel_withdrawals_promote_each_waiting_learner_once(
    app: Flask, make_user: Any, make_cohort: Any
) -> None:
    cohort_id = make_cohort(capacity=4)
    enrolled = [make_user() for _ in range(4)]
    waiting = [make_user() for _ in range(6)]
    with app.app_context():
        cohort = db.session.get(Cohort, cohort_id)
        for u in enrolled + waiting:
            services.request_enrollment(db.session, cohort, db.session.get(User, u))
            db.session.commit()

    def withdraw(user_id: int) -> Any:
        def job() -> None:
            enrollment = db.session.scalar(
                db.select(Enrollment).where(Enrollment.cohort_id == cohort_id, Enrollment.user_id == user_id)
            )
            services.withdraw(db.session, enrollment, actor=db.session.get(User, user_id))
        return job

    errors = _in_parallel(app, [withdraw(u) for u in enrolled])
    assert not errors, errors
    with app.app_context():
        status = dict(db.session.execute(
            db.select(Enrollment.user_id, Enrollment.status).where(Enrollment.cohort_id == cohort_id)
        ).all())
        assert [status[u] for u in enrolled] == [S.withdrawn] * 4
        assert [status[u] for u in waiting] == [S.enrolled] * 4 + [S.waitlisted] * 2
        assert db.session.get(Cohort, cohort_id).seats_taken == 4


def test_parallel_requests_for_two_cohorts_of_one_track_enroll_once(
    app: Flask, make_user: Any, make_track: Any, make_cohort: Any
) -> None:
    """One learner, two cohorts of one track, requests at once: the database lets exactly one through."""
    track_id = make_track()
    cohort_ids = [make_cohort(capacity=5, track_id=track_id) for _ in range(2)]
    user_id = make_user()
    outcomes: list[str] = []

    def request(cohort_id: int) -> Any:
        def job() -> None:
            try:
                services.request_enrollment(db.session, db.session.get(Cohort, cohort_id),
                                            db.session.get(User, user_id))
            except AcademyError:
                outcomes.append("refused")
                raise
            outcomes.append("ok")
        return job

    errors = _in_parallel(app, [request(cohort_ids[i % 2]) for i in range(8)])
    assert not errors, errors
    assert sorted(outcomes) == ["ok"] + ["refused"] * 7
    with app.app_context():
        rows = list(db.session.scalars(db.select(Enrollment).where(Enrollment.user_id == user_id)))
        assert [r.status for r in rows] == [S.enrolled]
        seats = [db.session.get(Cohort, c).seats_taken for c in cohort_ids]
        assert sorted(seats) == [0, 1] and seats[cohort_ids.index(rows[0].cohort_id)] == 1
