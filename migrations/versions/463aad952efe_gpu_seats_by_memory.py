"""labs: GPU seats by memory (the memory granted to a lab on a shared device)

A lab on a shared GPU records the seat it was granted (``gpu_memory_mb``); None is a whole device, or a
lab from before this revision (counted as ``1 / per_device`` of its device when its profile is shared).

Revision ID: 463aad952efe
Revises: 151f08911789
Create Date: 2026-12-07 03:50:19.670603

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '463aad952efe'
down_revision = '151f08911789'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('lab_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gpu_memory_mb', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('lab_session', schema=None) as batch_op:
        batch_op.drop_column('gpu_memory_mb')
