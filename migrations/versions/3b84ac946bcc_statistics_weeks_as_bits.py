"""statistics weeks as bits: weekly activity on the learner-course and seat rows, stats_weekly_activity dropped

Revision ID: 3b84ac946bcc
Revises: 31c6663d9b72
Create Date: 2026-12-06 06:34:29.914486

Weekly activity was a table of its own (one row per learner, course and week), scanned once more for every view
of the statistics; it is now a column of bits on the rows the other figures read (bit i: active i weeks before
the rebuild's week, Asia/Seoul).  The upgrade carries the weeks already counted over, so the figures stay whole
until the next rebuild; the downgrade leaves the table empty until the next rebuild (derived data).
"""
import datetime as dt
from collections import defaultdict
from zoneinfo import ZoneInfo

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '3b84ac946bcc'
down_revision = '31c6663d9b72'
branch_labels = None
depends_on = None

WEEKS = 13


def _as_datetime(value):
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def _as_date(value):
    return dt.date.fromisoformat(str(value)[:10]) if not isinstance(value, dt.date) else value


def upgrade():
    with op.batch_alter_table('stats_learner_course', schema=None) as batch_op:
        batch_op.add_column(sa.Column('weeks', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('stats_learner_track', schema=None) as batch_op:
        batch_op.add_column(sa.Column('weeks', sa.Integer(), nullable=False, server_default='0'))

    bind = op.get_bind()
    refreshed = bind.execute(sa.text("SELECT refreshed_at FROM stats_refresh WHERE id = 1")).scalar()
    if refreshed is not None:
        day = _as_datetime(refreshed).astimezone(ZoneInfo("Asia/Seoul")).date()
        anchor = day - dt.timedelta(days=day.weekday())
        courses, seats = defaultdict(int), defaultdict(int)
        for user_id, course_id, track_id, week in bind.execute(sa.text(
                "SELECT user_id, course_id, track_id, week FROM stats_weekly_activity")):
            index = (anchor - _as_date(week)).days // 7
            if 0 <= index < WEEKS:
                courses[(user_id, course_id)] |= 1 << index
                seats[(user_id, track_id)] |= 1 << index
        if courses:
            bind.execute(sa.text("UPDATE stats_learner_course SET weeks = :w WHERE user_id = :u AND course_id = :c"),
                         [{"w": w, "u": u, "c": c} for (u, c), w in courses.items()])
            bind.execute(sa.text("UPDATE stats_learner_track SET weeks = :w WHERE user_id = :u AND track_id = :t"),
                         [{"w": w, "u": u, "t": t} for (u, t), w in seats.items()])

    with op.batch_alter_table('stats_weekly_activity', schema=None) as batch_op:
        for name in ('ix_stats_wa_cohort', 'ix_stats_wa_company', 'ix_stats_wa_course', 'ix_stats_wa_industry_job',
                     'ix_stats_wa_track', 'ix_stats_wa_week'):
            batch_op.drop_index(name)
    op.drop_table('stats_weekly_activity')


def downgrade():
    op.create_table('stats_weekly_activity',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('week', sa.Date(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('track_id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), nullable=False),
    sa.Column('cohort_id', sa.Integer(), nullable=False),
    sa.Column('company_id', sa.Integer(), nullable=True),
    sa.Column('region', sa.String(length=40), nullable=True),
    sa.Column('industry', sa.String(length=40), nullable=True),
    sa.Column('job_role', sa.String(length=40), nullable=True),
    sa.Column('enrolled_on', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stats_weekly_activity'))
    )
    with op.batch_alter_table('stats_weekly_activity', schema=None) as batch_op:
        batch_op.create_index('ix_stats_wa_week', ['week'], unique=False)
        batch_op.create_index('ix_stats_wa_track', ['track_id'], unique=False)
        batch_op.create_index('ix_stats_wa_company', ['company_id'], unique=False)
        batch_op.create_index('ix_stats_wa_course', ['course_id'], unique=False)
        batch_op.create_index('ix_stats_wa_cohort', ['cohort_id'], unique=False)
        batch_op.create_index('ix_stats_wa_industry_job', ['industry', 'job_role', 'week'], unique=False)

    with op.batch_alter_table('stats_learner_track', schema=None) as batch_op:
        batch_op.drop_column('weeks')
    with op.batch_alter_table('stats_learner_course', schema=None) as batch_op:
        batch_op.drop_column('weeks')
