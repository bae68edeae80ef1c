"""cell scores: the result of a test's visible part, shown to the learner before the deadline

Revision ID: a1c4e7f20b13
Revises: 7e2b4c1d9a30
Create Date: 2026-12-05 11:55:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a1c4e7f20b13'
down_revision = '7e2b4c1d9a30'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('cell_score', schema=None) as batch_op:
        batch_op.add_column(sa.Column('visible_passed', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('visible_error', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('cell_score', schema=None) as batch_op:
        batch_op.drop_column('visible_error')
        batch_op.drop_column('visible_passed')
