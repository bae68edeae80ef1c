"""company contacts

Revision ID: 420f15816c8b
Revises: 2b19723c64e5
Create Date: 2026-12-06 02:59:55.612715

Company contacts: a person bound to one company (appointed by an admin, or requested and
approved) who follows its employees' learning.  At most one request or appointment in force per
person (a partial unique index); ended and declined ones are kept.
"""
from alembic import op
import sqlalchemy as sa

import academy.db


# revision identifiers, used by Alembic.
revision = '420f15816c8b'
down_revision = '2b19723c64e5'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('company_contact',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('company_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('requested', 'approved', 'rejected', 'revoked', name='contact_status', native_enum=False, length=20), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('requested_at', academy.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', academy.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['company_id'], ['company.id'], name=op.f('fk_company_contact_company_id_company')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['user.id'], name=op.f('fk_company_contact_decided_by_id_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_company_contact_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_company_contact'))
    )
    with op.batch_alter_table('company_contact', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_company_contact_company_id'), ['company_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_company_contact_user_id'), ['user_id'], unique=False)
        batch_op.create_index('uq_company_contact_live_user', ['user_id'], unique=True, sqlite_where=sa.text("status IN ('requested', 'approved')"), postgresql_where=sa.text("status IN ('requested', 'approved')"))



def downgrade():
    with op.batch_alter_table('company_contact', schema=None) as batch_op:
        batch_op.drop_index('uq_company_contact_live_user', sqlite_where=sa.text("status IN ('requested', 'approved')"), postgresql_where=sa.text("status IN ('requested', 'approved')"))
        batch_op.drop_index(batch_op.f('ix_company_contact_user_id'))
        batch_op.drop_index(batch_op.f('ix_company_contact_company_id'))

    op.drop_table('company_contact')
