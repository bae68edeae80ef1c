"""enrollment: the cohort's track repeated on the row, and one active enrollment per learner and track

Revision ID: b2d5f8a31c24
Revises: a1c4e7f20b13
Create Date: 2026-12-05 12:10:00.000000

A learner could join two cohorts of one track, and the dashboard then showed the track twice.
``enrollment.track_id`` (filled from the cohort) lets a partial unique index on
``(user_id, track_id)`` over the active statuses (pending, enrolled, waitlisted) refuse that in
the database, under concurrent requests too.

Existing duplicates would make the index impossible, so before it is created each learner keeps
one active enrollment per track: the one holding a seat (enrolled) before a waitlisted one before
a pending one, and among equals the most recently requested.  The others become ``withdrawn``
with an ``enrollment_event`` (no actor, a note naming this migration) and give back their seat
(``cohort.seats_taken``); nobody is promoted from a waitlist here (no mail is sent by a
migration): the next withdrawal or capacity change in that cohort does it.  The downgrade drops
the index and the column; withdrawn duplicates stay withdrawn.
"""
import sqlalchemy as sa
from alembic import op

import academy.db

# revision identifiers, used by Alembic.
revision = 'b2d5f8a31c24'
down_revision = 'a1c4e7f20b13'
branch_labels = None
depends_on = None

ACTIVE = ('pending', 'enrolled', 'waitlisted')
RANK = {'enrolled': 0, 'waitlisted': 1, 'pending': 2}
NOTE = 'second active enrollment in the same track, closed by migration b2d5f8a31c24'

enrollment = sa.table(
    'enrollment',
    sa.column('id', sa.Integer), sa.column('cohort_id', sa.Integer), sa.column('user_id', sa.Integer),
    sa.column('track_id', sa.Integer), sa.column('status', sa.String),
    sa.column('requested_at', academy.db.UTCDateTime()), sa.column('updated_at', academy.db.UTCDateTime()),
)
cohort = sa.table('cohort', sa.column('id', sa.Integer), sa.column('track_id', sa.Integer),
                  sa.column('seats_taken', sa.Integer))
event = sa.table(
    'enrollment_event',
    sa.column('enrollment_id', sa.Integer), sa.column('actor_id', sa.Integer),
    sa.column('from_status', sa.String), sa.column('to_status', sa.String), sa.column('note', sa.Text),
    sa.column('created_at', academy.db.UTCDateTime()),
)


def _close_duplicates(conn: sa.Connection) -> None:
    rows = conn.execute(
        sa.select(enrollment.c.id, enrollment.c.cohort_id, enrollment.c.user_id, enrollment.c.track_id,
                  enrollment.c.status, enrollment.c.requested_at)
        .where(enrollment.c.status.in_(ACTIVE))
    ).all()
    groups: dict[tuple[int, int], list[sa.Row]] = {}
    for row in rows:
        groups.setdefault((row.user_id, row.track_id), []).append(row)
    now = academy.db.utcnow()
    for group in groups.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda r: (RANK[r.status], -r.requested_at.timestamp(), -r.id))
        for loser in group[1:]:
            conn.execute(sa.update(enrollment).where(enrollment.c.id == loser.id)
                         .values(status='withdrawn', updated_at=now))
            conn.execute(sa.insert(event).values(enrollment_id=loser.id, actor_id=None, from_status=loser.status,
                                                 to_status='withdrawn', note=NOTE, created_at=now))
            if loser.status == 'enrolled':
                conn.execute(sa.update(cohort).where(cohort.c.id == loser.cohort_id, cohort.c.seats_taken > 0)
                             .values(seats_taken=cohort.c.seats_taken - 1))


def upgrade():
    # No batch (copy-and-move) on SQLite: rebuilding ``enrollment`` drops the old table, and with
    # foreign keys on that cascades to ``enrollment_event``, deleting every history row.  SQLite
    # adds a nullable column with an inline REFERENCES in place, so the column stays nullable
    # (the model fills it from the cohort on every insert).
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        fk = sa.ForeignKey('track.id', name=op.f('fk_enrollment_track_id_track'))
        op.add_column('enrollment', sa.Column('track_id', sa.Integer(), fk, nullable=True), inline_references=True)
    else:
        op.add_column('enrollment', sa.Column('track_id', sa.Integer(), nullable=True))
        op.create_foreign_key(op.f('fk_enrollment_track_id_track'), 'enrollment', 'track', ['track_id'], ['id'])
    conn = op.get_bind()
    conn.execute(sa.update(enrollment).values(
        track_id=sa.select(cohort.c.track_id).where(cohort.c.id == enrollment.c.cohort_id).scalar_subquery()
    ))
    _close_duplicates(conn)
    op.create_index(op.f('ix_enrollment_track_id'), 'enrollment', ['track_id'], unique=False)
    active = sa.text("status IN ('pending', 'enrolled', 'waitlisted')")
    op.create_index('uq_enrollment_active_track', 'enrollment', ['user_id', 'track_id'], unique=True,
                    sqlite_where=active, postgresql_where=active)


def downgrade():
    op.drop_index('uq_enrollment_active_track', table_name='enrollment')
    op.drop_index(op.f('ix_enrollment_track_id'), table_name='enrollment')
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint(op.f('fk_enrollment_track_id_track'), 'enrollment', type_='foreignkey')
    # SQLite 3.35+ drops the column in place (no rebuild, so no cascade to enrollment_event).
    op.drop_column('enrollment', 'track_id')
