"""feedback in the portal: the graded notebooks of a submission and the instructor's comment per cell

Revision ID: c3e9a7d15f42
Revises: b2d5f8a31c24
Create Date: 2026-12-05 16:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c3e9a7d15f42'
down_revision = 'b2d5f8a31c24'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.add_column(sa.Column('graded_notebooks', sa.JSON(), nullable=True))
    with op.batch_alter_table('cell_score', schema=None) as batch_op:
        batch_op.add_column(sa.Column('comment', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('cell_score', schema=None) as batch_op:
        batch_op.drop_column('comment')
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.drop_column('graded_notebooks')
