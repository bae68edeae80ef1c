"""certificates and course competencies

Revision ID: ccda5d4988b8
Revises: 305cdd19e9d0
Create Date: 2026-12-06 02:30:54.328618

A certificate per completion, with what it states frozen at issue, its signed Open Badges 3.0
credential and its revocation; and each course's competencies from ``course.toml`` (existing
courses get an empty list until ``academy init`` loads the manifests again).  Completions that
exist already get their certificates from ``academy completion recompute``.
"""
from alembic import op
import sqlalchemy as sa

import academy.db


# revision identifiers, used by Alembic.
revision = 'ccda5d4988b8'
down_revision = '305cdd19e9d0'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('certificate',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('completion_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('holder_name', sa.String(length=100), nullable=False),
    sa.Column('title_ko', sa.String(length=200), nullable=False),
    sa.Column('title_en', sa.String(length=200), nullable=False),
    sa.Column('track_title_ko', sa.String(length=200), nullable=False),
    sa.Column('track_title_en', sa.String(length=200), nullable=False),
    sa.Column('hours', sa.Float(), nullable=False),
    sa.Column('competencies', sa.JSON(), nullable=False),
    sa.Column('completed_at', academy.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('issued_at', academy.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('credential', sa.Text(), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('revoked_at', academy.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.Text(), nullable=True),
    sa.Column('revoked_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['completion_id'], ['completion.id'], name=op.f('fk_certificate_completion_id_completion')),
    sa.ForeignKeyConstraint(['revoked_by_id'], ['user.id'], name=op.f('fk_certificate_revoked_by_id_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_certificate_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificate')),
    sa.UniqueConstraint('code', name=op.f('uq_certificate_code')),
    sa.UniqueConstraint('completion_id', name=op.f('uq_certificate_completion_id'))
    )
    with op.batch_alter_table('certificate', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_certificate_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('course', schema=None) as batch_op:
        batch_op.add_column(sa.Column('competencies', sa.JSON(), nullable=False, server_default='[]'))



def downgrade():
    with op.batch_alter_table('course', schema=None) as batch_op:
        batch_op.drop_column('competencies')

    with op.batch_alter_table('certificate', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificate_user_id'))

    op.drop_table('certificate')
