"""Migration b2d5f8a31c24 on a database that already holds two active enrollments of one learner in a track.

The upgrade must not fail on them: per learner and track it keeps the enrollment holding a seat
(else the most recent request), withdraws the others with a history entry and gives their seats
back, and from then on the database refuses a second active enrollment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from academy import create_app
from academy.extensions import db
from tests.support import ROOT

BEFORE = "a1c4e7f20b13"


@pytest.fixture
def old_schema_app(empty_database_url: str, tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "secret_key": "m" * 40, "database_url": empty_database_url,
                      "data_dir": tmp_path / "data", "courses_dir": ROOT / "courses"})
    with app.app_context():
        from flask_migrate import upgrade

        upgrade(revision=BEFORE)
        yield app
        db.session.remove()
        db.engine.dispose()


def _seed(conn: object) -> None:
    t0 = dt.datetime(2026, 3, 1, 9, 0)
    run = conn.execute  # type: ignore[attr-defined]
    run(text("INSERT INTO track (id, slug, title_ko, title_en, description_ko, description_en, position, active, "
             "updated_at) VALUES (1, 't1', '트랙', 'Track', '', '', 1, true, :t), "
             "(2, 't2', '트랙2', 'Track 2', '', '', 2, true, :t)"), {"t": t0})
    for cid, track, taken in ((1, 1, 1), (2, 1, 1), (3, 1, 0), (4, 2, 1)):
        run(text("INSERT INTO cohort (id, track_id, name, starts_at, ends_at, capacity, seats_taken, "
                 "requires_approval, created_at) VALUES (:id, :t, :n, :s, :e, 5, :k, false, :s)"),
            {"id": cid, "t": track, "n": f"c{cid}", "s": t0, "e": t0 + dt.timedelta(days=30), "k": taken})
    for uid in (1, 2):
        run(text("INSERT INTO \"user\" (id, email, name, password_hash, role, active, created_at) "
                 "VALUES (:id, :e, 'x', 'x', 'learner', true, :c)"), {"id": uid, "e": f"u{uid}@example.kr", "c": t0})
    rows = [  # (id, cohort, user, status, requested days after t0)
        (1, 1, 1, "enrolled", 0),    # withdrawn: two seats in the track, the more recent one is kept
        (2, 2, 1, "enrolled", 2),    # kept
        (3, 3, 1, "pending", 5),     # withdrawn: a seat beats a newer request
        (4, 4, 1, "enrolled", 0),    # another track: untouched
        (5, 3, 2, "waitlisted", 1),  # user 2: one active row, untouched
        (6, 1, 2, "withdrawn", 0),
    ]
    for eid, cohort, user, status, days in rows:
        when = t0 + dt.timedelta(days=days)
        run(text("INSERT INTO enrollment (id, cohort_id, user_id, status, requested_at, updated_at) "
                 "VALUES (:id, :c, :u, :s, :r, :r)"), {"id": eid, "c": cohort, "u": user, "s": status, "r": when})
        run(text("INSERT INTO enrollment_event (enrollment_id, from_status, to_status, created_at) "
                 "VALUES (:id, NULL, :s, :r)"), {"id": eid, "s": status, "r": when})


def test_upgrade_keeps_one_active_enrollment_per_track_and_then_enforces_it(old_schema_app: Flask) -> None:
    from flask_migrate import downgrade, upgrade

    with db.engine.begin() as conn:
        _seed(conn)
    upgrade()
    with db.engine.connect() as conn:
        status = dict(conn.execute(text("SELECT id, status FROM enrollment")).all())
        tracks = dict(conn.execute(text("SELECT id, track_id FROM enrollment")).all())
        seats = dict(conn.execute(text("SELECT id, seats_taken FROM cohort")).all())
        events = conn.execute(text("SELECT enrollment_id, from_status, to_status FROM enrollment_event "
                                   "WHERE from_status IS NOT NULL ORDER BY enrollment_id")).all()
        history = conn.scalar(text("SELECT count(*) FROM enrollment_event WHERE from_status IS NULL"))
    assert status == {1: "withdrawn", 2: "enrolled", 3: "withdrawn", 4: "enrolled", 5: "waitlisted", 6: "withdrawn"}
    assert tracks == {1: 1, 2: 1, 3: 1, 4: 2, 5: 1, 6: 1}
    assert seats == {1: 0, 2: 1, 3: 0, 4: 1}  # the withdrawn duplicate's seat is given back
    assert [tuple(e) for e in events] == [(1, "enrolled", "withdrawn"), (3, "pending", "withdrawn")]
    assert history == 6  # the history that was there is still there (no table rebuild cascading to it)

    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(text("UPDATE enrollment SET status = 'pending' WHERE id = 3"))
    with db.engine.begin() as conn:  # a second active row in another track is fine
        conn.execute(text("UPDATE enrollment SET status = 'withdrawn' WHERE id = 2"))
        conn.execute(text("UPDATE enrollment SET status = 'pending' WHERE id = 3"))

    downgrade(revision=BEFORE)
    upgrade()
