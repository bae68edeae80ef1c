"""view stamps: one token per scope, new with every change to what kept pages show

Revision ID: 922a9533b49f
Revises: 57c3bc9998aa
Create Date: 2026-12-06 04:56:21.560737

The learner dashboard is kept rendered per process under these tokens (``academy.stamps``,
``academy.dashboard.kept``): derived data only; an empty table just means every page is built again.

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '922a9533b49f'
down_revision = '57c3bc9998aa'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('view_stamp',
    sa.Column('scope', sa.String(length=40), nullable=False),
    sa.Column('token', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('scope', name=op.f('pk_view_stamp'))
    )


def downgrade():
    op.drop_table('view_stamp')
