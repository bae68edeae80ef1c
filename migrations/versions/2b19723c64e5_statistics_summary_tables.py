"""statistics summary tables

Revision ID: 2b19723c64e5
Revises: ccda5d4988b8
Create Date: 2026-12-06 02:43:09.712127

The summary tables the statistics read (``academy.stats``): one row per learner and course of a
track they hold or held a seat in, one per learner, course and week they were active, and when
they were last rebuilt.  They hold nothing that is not derived from other tables: the first
rebuild (the job, ``academy stats --refresh`` or the statistics page) fills them.
"""
from alembic import op
import sqlalchemy as sa

import academy.db


# revision identifiers, used by Alembic.
revision = '2b19723c64e5'
down_revision = 'ccda5d4988b8'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('stats_learner_course',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('track_id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), nullable=False),
    sa.Column('cohort_id', sa.Integer(), nullable=False),
    sa.Column('company_id', sa.Integer(), nullable=True),
    sa.Column('region', sa.String(length=40), nullable=True),
    sa.Column('industry', sa.String(length=40), nullable=True),
    sa.Column('job_role', sa.String(length=40), nullable=True),
    sa.Column('enrolled_on', sa.Date(), nullable=False),
    sa.Column('enrolled_month', sa.String(length=7), nullable=False),
    sa.Column('started', sa.Boolean(), nullable=False),
    sa.Column('submitted', sa.Boolean(), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('completed_course', sa.Boolean(), nullable=False),
    sa.Column('completed_track', sa.Boolean(), nullable=False),
    sa.Column('days_to_complete', sa.Float(), nullable=True),
    sa.Column('lab_hours', sa.Float(), nullable=False),
    sa.Column('gpu_hours', sa.Float(), nullable=False),
    sa.Column('gpu_shared_hours', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stats_learner_course'))
    )
    with op.batch_alter_table('stats_learner_course', schema=None) as batch_op:
        batch_op.create_index('ix_stats_lc_company', ['company_id'], unique=False)
        batch_op.create_index('ix_stats_lc_track_course', ['track_id', 'course_id'], unique=False)
        batch_op.create_index('ix_stats_lc_user', ['user_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stats_learner_course_cohort_id'), ['cohort_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stats_learner_course_enrolled_on'), ['enrolled_on'], unique=False)

    op.create_table('stats_refresh',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('refreshed_at', academy.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stats_refresh'))
    )
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



def downgrade():
    with op.batch_alter_table('stats_weekly_activity', schema=None) as batch_op:
        batch_op.drop_index('ix_stats_wa_week')

    op.drop_table('stats_weekly_activity')
    op.drop_table('stats_refresh')
    with op.batch_alter_table('stats_learner_course', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stats_learner_course_enrolled_on'))
        batch_op.drop_index(batch_op.f('ix_stats_learner_course_cohort_id'))
        batch_op.drop_index('ix_stats_lc_user')
        batch_op.drop_index('ix_stats_lc_track_course')
        batch_op.drop_index('ix_stats_lc_company')

    op.drop_table('stats_learner_course')
