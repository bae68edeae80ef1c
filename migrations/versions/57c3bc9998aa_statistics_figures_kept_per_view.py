"""statistics figures kept per view

Revision ID: 57c3bc9998aa
Revises: 420f15816c8b
Create Date: 2026-12-06 03:34:46.253769

The figures of each view of the statistics dashboard, kept until the next rebuild of the summary
tables (``academy.stats.page.cached``): derived data only, emptied by every rebuild.
"""
from alembic import op
import sqlalchemy as sa

import academy.db


# revision identifiers, used by Alembic.
revision = '57c3bc9998aa'
down_revision = '420f15816c8b'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('stats_cache',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('refreshed_at', academy.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_stats_cache'))
    )


def downgrade():
    op.drop_table('stats_cache')
