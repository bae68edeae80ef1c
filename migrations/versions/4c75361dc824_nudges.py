"""nudges

Revision ID: 4c75361dc824
Revises: 983d6513dbcf
Create Date: 2026-12-06 18:16:02.179126

An instructor's nudge to a learner at risk (``nudge``): who, in which course and cohort, sent by
whom, with the inbox message and the at-risk reasons the learner had then.

"""
from alembic import op
import sqlalchemy as sa

import academy.db


# revision identifiers, used by Alembic.
revision = '4c75361dc824'
down_revision = '983d6513dbcf'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('nudge',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), nullable=False),
    sa.Column('cohort_id', sa.Integer(), nullable=False),
    sa.Column('sender_id', sa.Integer(), nullable=True),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('sent_at', academy.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cohort_id'], ['cohort.id'], name=op.f('fk_nudge_cohort_id_cohort'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['course_id'], ['course.id'], name=op.f('fk_nudge_course_id_course'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['inbox_message.id'], name=op.f('fk_nudge_message_id_inbox_message'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['sender_id'], ['user.id'], name=op.f('fk_nudge_sender_id_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_nudge_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_nudge'))
    )
    with op.batch_alter_table('nudge', schema=None) as batch_op:
        batch_op.create_index('ix_nudge_course_cohort', ['course_id', 'cohort_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_nudge_user_id'), ['user_id'], unique=False)



def downgrade():
    with op.batch_alter_table('nudge', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nudge_user_id'))
        batch_op.drop_index('ix_nudge_course_cohort')

    op.drop_table('nudge')
