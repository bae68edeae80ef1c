"""inbox messages and mail opt-outs

Revision ID: 2ca1c57a5a03
Revises: 3b84ac946bcc
Create Date: 2026-12-06 13:19:15.708484

What the portal tells a user (scores, changed scores, nudges, announcements, deadlines, lab
quota) is kept in their inbox; ``mail_opt_out`` lists the kinds they read there only.

"""
from alembic import op
import sqlalchemy as sa

import academy.db


# revision identifiers, used by Alembic.
revision = '2ca1c57a5a03'
down_revision = '3b84ac946bcc'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('inbox_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('link', sa.String(length=500), nullable=True),
    sa.Column('key', sa.String(length=200), nullable=True),
    sa.Column('sender_id', sa.Integer(), nullable=True),
    sa.Column('created_at', academy.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('read_at', academy.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['sender_id'], ['user.id'], name=op.f('fk_inbox_message_sender_id_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_inbox_message_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbox_message')),
    sa.UniqueConstraint('user_id', 'key', name=op.f('uq_inbox_message_user_id_key'))
    )
    with op.batch_alter_table('inbox_message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbox_message_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbox_message_user_id'), ['user_id'], unique=False)
        batch_op.create_index('ix_inbox_message_user_unread', ['user_id', 'read_at'], unique=False)

    op.create_table('mail_opt_out',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_mail_opt_out_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_opt_out')),
    sa.UniqueConstraint('user_id', 'kind', name=op.f('uq_mail_opt_out_user_id_kind'))
    )
    with op.batch_alter_table('mail_opt_out', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mail_opt_out_user_id'), ['user_id'], unique=False)



def downgrade():
    with op.batch_alter_table('mail_opt_out', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mail_opt_out_user_id'))

    op.drop_table('mail_opt_out')
    with op.batch_alter_table('inbox_message', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_message_user_unread')
        batch_op.drop_index(batch_op.f('ix_inbox_message_user_id'))
        batch_op.drop_index(batch_op.f('ix_inbox_message_created_at'))

    op.drop_table('inbox_message')
