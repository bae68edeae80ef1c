"""statistics per seat: stats_learner_track, and indexes for the filters a funnel is asked by

Revision ID: 31c6663d9b72
Revises: 922a9533b49f
Create Date: 2026-12-06 05:38:41.128867

Derived data only (``academy.stats.refresh`` fills it): a learner's course rows of one seat added up, so
that counting learners reads a third as many rows.  ``academy stats --refresh`` (or the next scheduled
rebuild) fills it after the upgrade.

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '31c6663d9b72'
down_revision = '922a9533b49f'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('stats_learner_track',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('track_id', sa.Integer(), nullable=False),
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
    sa.Column('courses', sa.Integer(), nullable=False),
    sa.Column('completed_courses', sa.Integer(), nullable=False),
    sa.Column('lab_hours', sa.Float(), nullable=False),
    sa.Column('gpu_hours', sa.Float(), nullable=False),
    sa.Column('gpu_shared_hours', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stats_learner_track'))
    )
    with op.batch_alter_table('stats_learner_track', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stats_learner_track_cohort_id'), ['cohort_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stats_learner_track_enrolled_on'), ['enrolled_on'], unique=False)
        batch_op.create_index('ix_stats_lt_company', ['company_id'], unique=False)
        batch_op.create_index('ix_stats_lt_industry_job', ['industry', 'job_role'], unique=False)
        batch_op.create_index('ix_stats_lt_job', ['job_role'], unique=False)
        batch_op.create_index('ix_stats_lt_region', ['region'], unique=False)
        batch_op.create_index('ix_stats_lt_track', ['track_id'], unique=False)
        batch_op.create_index('ix_stats_lt_user', ['user_id'], unique=False)

    with op.batch_alter_table('stats_learner_course', schema=None) as batch_op:
        batch_op.create_index('ix_stats_lc_course', ['course_id'], unique=False)
        batch_op.create_index('ix_stats_lc_industry_job', ['industry', 'job_role'], unique=False)
        batch_op.create_index('ix_stats_lc_region', ['region'], unique=False)

    with op.batch_alter_table('stats_weekly_activity', schema=None) as batch_op:
        batch_op.create_index('ix_stats_wa_track', ['track_id'], unique=False)
        batch_op.create_index('ix_stats_wa_company', ['company_id'], unique=False)
        batch_op.create_index('ix_stats_wa_course', ['course_id'], unique=False)
        batch_op.create_index('ix_stats_wa_cohort', ['cohort_id'], unique=False)
        batch_op.create_index('ix_stats_wa_industry_job', ['industry', 'job_role', 'week'], unique=False)

    # Filled from the course rows already there, so that the figures stay whole until the next rebuild.
    flag = "max(CASE WHEN {0} THEN 1 ELSE 0 END) > 0"
    op.execute(
        "INSERT INTO stats_learner_track (user_id, track_id, cohort_id, company_id, region, industry, job_role, "
        "enrolled_on, enrolled_month, started, submitted, passed, completed_course, completed_track, courses, "
        "completed_courses, lab_hours, gpu_hours, gpu_shared_hours) "
        "SELECT user_id, track_id, max(cohort_id), max(company_id), max(region), max(industry), max(job_role), "
        "max(enrolled_on), max(enrolled_month), "
        + ", ".join(flag.format(c) for c in ("started", "submitted", "passed", "completed_course", "completed_track"))
        + ", count(*), sum(CASE WHEN completed_course THEN 1 ELSE 0 END), sum(lab_hours), sum(gpu_hours), "
        "sum(gpu_shared_hours) FROM stats_learner_course GROUP BY user_id, track_id")


def downgrade():
    with op.batch_alter_table('stats_weekly_activity', schema=None) as batch_op:
        batch_op.drop_index('ix_stats_wa_industry_job')
        batch_op.drop_index('ix_stats_wa_cohort')
        batch_op.drop_index('ix_stats_wa_course')
        batch_op.drop_index('ix_stats_wa_company')
        batch_op.drop_index('ix_stats_wa_track')

    with op.batch_alter_table('stats_learner_course', schema=None) as batch_op:
        batch_op.drop_index('ix_stats_lc_region')
        batch_op.drop_index('ix_stats_lc_industry_job')
        batch_op.drop_index('ix_stats_lc_course')

    with op.batch_alter_table('stats_learner_track', schema=None) as batch_op:
        batch_op.drop_index('ix_stats_lt_user')
        batch_op.drop_index('ix_stats_lt_track')
        batch_op.drop_index('ix_stats_lt_region')
        batch_op.drop_index('ix_stats_lt_job')
        batch_op.drop_index('ix_stats_lt_industry_job')
        batch_op.drop_index('ix_stats_lt_company')
        batch_op.drop_index(batch_op.f('ix_stats_learner_track_enrolled_on'))
        batch_op.drop_index(batch_op.f('ix_stats_learner_track_cohort_id'))

    op.drop_table('stats_learner_track')
