"""labs: the start_lab job (progress step, when the job was sent, how often)

Revision ID: 5c1e7a9d3f20
Revises: 5d1e7a3c9b20
Create Date: 2026-12-04 18:10:00.000000

"""
from alembic import op
import sqlalchemy as sa

import academy.db


# revision identifiers, used by Alembic.
revision = '5c1e7a9d3f20'
down_revision = '5d1e7a3c9b20'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('lab_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('progress_step', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('start_sent_at', academy.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('start_attempts', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('lab_session', schema=None) as batch_op:
        batch_op.drop_column('start_attempts')
        batch_op.drop_column('start_sent_at')
        batch_op.drop_column('progress_step')
