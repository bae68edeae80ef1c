"""GPU grading holds, grading profile, GPU budgets

A GPU course's grading job holds a seat of the labs' devices (``gpu_grading_hold``, counted with running labs);
``course.grading_profile`` says whether a course grades on a GPU (``cpu``, the default, for every existing
course); a cohort and a company may have a GPU-hour budget (``gpu_budget_hours``, none: no limit).

Revision ID: 3f57d47044b7
Revises: 463aad952efe
Create Date: 2026-12-07 06:24:55.958554

"""
from alembic import op
import sqlalchemy as sa

import academy.db


# revision identifiers, used by Alembic.
revision = '3f57d47044b7'
down_revision = '463aad952efe'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('gpu_grading_hold',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device', sa.String(length=40), nullable=False),
    sa.Column('profile', sa.String(length=40), nullable=False),
    sa.Column('gpu_memory_mb', sa.Integer(), nullable=True),
    sa.Column('grading_job_id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=200), nullable=False),
    sa.Column('acquired_at', academy.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', academy.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['course_id'], ['course.id'], name=op.f('fk_gpu_grading_hold_course_id_course')),
    sa.ForeignKeyConstraint(['grading_job_id'], ['grading_job.id'], name=op.f('fk_gpu_grading_hold_grading_job_id_grading_job'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gpu_grading_hold'))
    )
    with op.batch_alter_table('gpu_grading_hold', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gpu_grading_hold_device'), ['device'], unique=False)
        batch_op.create_index(batch_op.f('ix_gpu_grading_hold_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_gpu_grading_hold_grading_job_id'), ['grading_job_id'], unique=False)

    with op.batch_alter_table('cohort', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gpu_budget_hours', sa.Float(), nullable=True))

    with op.batch_alter_table('company', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gpu_budget_hours', sa.Float(), nullable=True))

    with op.batch_alter_table('course', schema=None) as batch_op:
        batch_op.add_column(sa.Column('grading_profile', sa.String(length=20), server_default='cpu', nullable=False))



def downgrade():
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later, PostgreSQL): batch mode would copy cohort and
    # company into new tables and drop the old ones, which SQLite refuses while enrollments and users refer
    # to their rows.
    op.drop_column('course', 'grading_profile')
    op.drop_column('company', 'gpu_budget_hours')
    op.drop_column('cohort', 'gpu_budget_hours')

    with op.batch_alter_table('gpu_grading_hold', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gpu_grading_hold_grading_job_id'))
        batch_op.drop_index(batch_op.f('ix_gpu_grading_hold_expires_at'))
        batch_op.drop_index(batch_op.f('ix_gpu_grading_hold_device'))

    op.drop_table('gpu_grading_hold')
