"""score overrides and flag reviews

Revision ID: 983d6513dbcf
Revises: 2ca1c57a5a03
Create Date: 2026-12-06 13:30:10.469714

Staff override an autograded cell's points with a reason (``score_override``, applied again after a
regrade; ``cell_score.auto_score`` keeps what the grader gave), and confirm or reject the score of an
attempt the grader flagged (``submission.flag_review``).

"""
from alembic import op
import sqlalchemy as sa

import academy.db


# revision identifiers, used by Alembic.
revision = '983d6513dbcf'
down_revision = '2ca1c57a5a03'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('score_override',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('notebook', sa.String(length=200), nullable=False),
    sa.Column('grade_id', sa.String(length=200), nullable=False),
    sa.Column('points', sa.Float(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('created_at', academy.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['user.id'], name=op.f('fk_score_override_actor_id_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['submission_id'], ['submission.id'], name=op.f('fk_score_override_submission_id_submission'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_score_override')),
    sa.UniqueConstraint('submission_id', 'notebook', 'grade_id', name=op.f('uq_score_override_submission_id_notebook_grade_id'))
    )
    with op.batch_alter_table('score_override', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_score_override_submission_id'), ['submission_id'], unique=False)

    with op.batch_alter_table('cell_score', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auto_score', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('overridden', sa.Boolean(), server_default='0', nullable=False))

    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flag_review', sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column('flag_review_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('flag_reviewed_at', academy.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('flag_reviewed_by_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_submission_flag_reviewed_by_id_user'), 'user', ['flag_reviewed_by_id'], ['id'], ondelete='SET NULL')


def downgrade():
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_submission_flag_reviewed_by_id_user'), type_='foreignkey')
        batch_op.drop_column('flag_reviewed_by_id')
        batch_op.drop_column('flag_reviewed_at')
        batch_op.drop_column('flag_review_reason')
        batch_op.drop_column('flag_review')

    with op.batch_alter_table('cell_score', schema=None) as batch_op:
        batch_op.drop_column('overridden')
        batch_op.drop_column('auto_score')

    with op.batch_alter_table('score_override', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_score_override_submission_id'))

    op.drop_table('score_override')
