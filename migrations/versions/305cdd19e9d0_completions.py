"""completions of courses and tracks, withdrawn ones kept as history

Revision ID: 305cdd19e9d0
Revises: c3e9a7d15f42
Create Date: 2026-12-05 23:37:11.821790

One row each time a learner completes a course (``course_id`` set) or a track (``course_id``
NULL); a withdrawal sets ``withdrawn_at`` instead of deleting.  Partial unique indexes keep at
most one completion in force per learner and course, and per learner and track.  Existing
learners get their completions from ``academy completion recompute`` (``academy init`` does not
judge courses whose rule did not change).
"""
from alembic import op
import sqlalchemy as sa

import academy.db


# revision identifiers, used by Alembic.
revision = '305cdd19e9d0'
down_revision = 'c3e9a7d15f42'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('completion',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('track_id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), nullable=True),
    sa.Column('completed_at', academy.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', academy.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('score_percent', sa.Float(), nullable=True),
    sa.Column('lab_hours', sa.Float(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('withdrawn_at', academy.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('withdrawn_reason', sa.String(length=40), nullable=True),
    sa.Column('withdrawn_detail', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['course_id'], ['course.id'], name=op.f('fk_completion_course_id_course')),
    sa.ForeignKeyConstraint(['track_id'], ['track.id'], name=op.f('fk_completion_track_id_track')),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_completion_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_completion'))
    )
    with op.batch_alter_table('completion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_completion_course_id'), ['course_id'], unique=False)
        batch_op.create_index('ix_completion_track_completed', ['track_id', 'completed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_completion_user_id'), ['user_id'], unique=False)
        batch_op.create_index('uq_completion_course_in_force', ['user_id', 'course_id'], unique=True, sqlite_where=sa.text('withdrawn_at IS NULL AND course_id IS NOT NULL'), postgresql_where=sa.text('withdrawn_at IS NULL AND course_id IS NOT NULL'))
        batch_op.create_index('uq_completion_track_in_force', ['user_id', 'track_id'], unique=True, sqlite_where=sa.text('withdrawn_at IS NULL AND course_id IS NULL'), postgresql_where=sa.text('withdrawn_at IS NULL AND course_id IS NULL'))



def downgrade():
    with op.batch_alter_table('completion', schema=None) as batch_op:
        batch_op.drop_index('uq_completion_track_in_force', sqlite_where=sa.text('withdrawn_at IS NULL AND course_id IS NULL'), postgresql_where=sa.text('withdrawn_at IS NULL AND course_id IS NULL'))
        batch_op.drop_index('uq_completion_course_in_force', sqlite_where=sa.text('withdrawn_at IS NULL AND course_id IS NOT NULL'), postgresql_where=sa.text('withdrawn_at IS NULL AND course_id IS NOT NULL'))
        batch_op.drop_index(batch_op.f('ix_completion_user_id'))
        batch_op.drop_index('ix_completion_track_completed')
        batch_op.drop_index(batch_op.f('ix_completion_course_id'))

    op.drop_table('completion')
