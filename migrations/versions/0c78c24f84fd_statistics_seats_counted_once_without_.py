"""statistics: seats counted once without grouping by learner, best scores per assignment, sums per course and day

Revision ID: 0c78c24f84fd
Revises: 3f57d47044b7
Create Date: 2026-12-07 11:15:35.630770

``stats_learner_track`` gains, per stage, the enrollment day of the learner's latest earlier seat that reached
it (``prev_*_on``), ``stats_best_score`` keeps each learner's best graded score per assignment and
``stats_course_day`` the learner-courses added up per course and day of enrollment; two partial indexes serve a
period's completed learner-courses and active seats.  The new tables and columns are filled by the rebuild of
the summary tables, so the upgrade empties the derived statistics (and the figures kept per view): the next
rebuild (the job, the dashboard's first view, ``academy stats``) fills them again.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0c78c24f84fd'
down_revision = '3f57d47044b7'
branch_labels = None
depends_on = None

DERIVED = ("stats_cache", "stats_refresh", "stats_learner_track", "stats_learner_course")


def upgrade():
    op.create_table('stats_best_score',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('assignment_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stats_best_score'))
    )
    op.create_index('ix_stats_best_score_assignment', 'stats_best_score', ['assignment_id'], unique=False)
    op.create_table('stats_course_day',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('track_id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), nullable=False),
    sa.Column('enrolled_on', sa.Date(), nullable=False),
    sa.Column('courses', sa.Integer(), nullable=False),
    sa.Column('completed_courses', sa.Integer(), nullable=False),
    sa.Column('lab_hours', sa.Float(), nullable=False),
    sa.Column('gpu_hours', sa.Float(), nullable=False),
    sa.Column('gpu_shared_hours', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stats_course_day'))
    )
    op.create_index('ix_stats_course_day_on', 'stats_course_day', ['enrolled_on'], unique=False)
    op.create_index('ix_stats_lc_completed_on', 'stats_learner_course', ['enrolled_on', 'days_to_complete'],
                    unique=False, postgresql_where=sa.text('days_to_complete IS NOT NULL'),
                    sqlite_where=sa.text('days_to_complete IS NOT NULL'))
    op.create_index('ix_stats_lt_active_on', 'stats_learner_track', ['enrolled_on', 'user_id', 'weeks'],
                    unique=False, postgresql_where=sa.text('weeks <> 0'), sqlite_where=sa.text('weeks <> 0'))

    with op.batch_alter_table('stats_learner_track', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prev_enrolled_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('prev_started_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('prev_submitted_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('prev_passed_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('prev_completed_course_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('prev_completed_track_on', sa.Date(), nullable=True))
    # Seats without their earlier seats' days would count a learner once per seat: rebuilt from scratch.
    for table in DERIVED:
        op.execute(sa.text(f"DELETE FROM {table}"))


def downgrade():
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later, PostgreSQL), as in 3f57d47044b7.
    for column in ('prev_completed_track_on', 'prev_completed_course_on', 'prev_passed_on', 'prev_submitted_on',
                   'prev_started_on', 'prev_enrolled_on'):
        op.drop_column('stats_learner_track', column)
    op.drop_index('ix_stats_lt_active_on', table_name='stats_learner_track')
    op.drop_index('ix_stats_lc_completed_on', table_name='stats_learner_course')
    op.drop_index('ix_stats_course_day_on', table_name='stats_course_day')
    op.drop_table('stats_course_day')
    op.drop_index('ix_stats_best_score_assignment', table_name='stats_best_score')
    op.drop_table('stats_best_score')
