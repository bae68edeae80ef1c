"""oidc: codes used up by their first exchange attempt, tokens traced to their code, nonces of any length

Revision ID: 7e2b4c1d9a30
Revises: 5c1e7a9d3f20
Create Date: 2026-12-05 09:40:00.000000

"""
from alembic import op
import sqlalchemy as sa

import academy.db


# revision identifiers, used by Alembic.
revision = '7e2b4c1d9a30'
down_revision = '5c1e7a9d3f20'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('oauth_code', schema=None) as batch_op:
        batch_op.add_column(sa.Column('used_at', academy.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.alter_column('nonce', existing_type=sa.String(length=255), type_=sa.Text(),
                              existing_nullable=True)
    with op.batch_alter_table('oauth_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('code_hash', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_oauth_token_code_hash'), ['code_hash'], unique=False)


def downgrade():
    with op.batch_alter_table('oauth_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_token_code_hash'))
        batch_op.drop_column('code_hash')
    with op.batch_alter_table('oauth_code', schema=None) as batch_op:
        batch_op.alter_column('nonce', existing_type=sa.Text(), type_=sa.String(length=255),
                              existing_nullable=True)
        batch_op.drop_column('used_at')
