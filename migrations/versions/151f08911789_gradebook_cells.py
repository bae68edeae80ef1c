"""gradebook cells

Revision ID: 151f08911789
Revises: 4c75361dc824
Create Date: 2026-12-06 21:26:49.915245

The gradebook's kept cells (``gradebook_cell``): per learner and assignment attempted, the attempts,
the staff standing, the attempt that counts with its score, maximum and days late, whether a flag
waits for staff, the newest attempt's time, the autograded cells failed since last passed, and
what the question statistics sum (``academy.teaching.cells`` keeps them).  A database that already holds attempts gets its cells
computed here, by the portal's own rules.  And two partial indexes for what waits for staff: the
written answers not graded yet, and the flagged attempts nobody reviewed.

"""
from alembic import op
import sqlalchemy as sa

import academy.db


# revision identifiers, used by Alembic.
revision = '151f08911789'
down_revision = '4c75361dc824'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('gradebook_cell',
    sa.Column('assignment_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('counted_submission_id', sa.Integer(), nullable=True),
    sa.Column('counted_attempt', sa.Integer(), nullable=True),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('max_score', sa.Float(), nullable=True),
    sa.Column('late_days', sa.Integer(), nullable=False),
    sa.Column('flag_unreviewed', sa.Boolean(), nullable=False),
    sa.Column('last_submitted_at', academy.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failing', sa.JSON(), nullable=True),
    sa.Column('most_failing', sa.Integer(), server_default='0', nullable=False),
    sa.Column('questions', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['assignment_id'], ['assignment.id'], name=op.f('fk_gradebook_cell_assignment_id_assignment'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['counted_submission_id'], ['submission.id'], name=op.f('fk_gradebook_cell_counted_submission_id_submission'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_gradebook_cell_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('assignment_id', 'user_id', name=op.f('pk_gradebook_cell'))
    )
    with op.batch_alter_table('gradebook_cell', schema=None) as batch_op:
        batch_op.create_index('ix_gradebook_cell_user_id', ['user_id'], unique=False)

    with op.batch_alter_table('cell_score', schema=None) as batch_op:
        batch_op.create_index('ix_cell_score_unmarked', ['submission_id'], unique=False, postgresql_where=sa.text('manual IS true AND score IS NULL'), sqlite_where=sa.text('manual IS 1 AND score IS NULL'))

    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.create_index('ix_submission_unreviewed_flag', ['assignment_id'], unique=False, postgresql_where=sa.text('flagged IS true AND flag_review IS NULL'), sqlite_where=sa.text('flagged IS 1 AND flag_review IS NULL'))

    if op.get_bind().execute(sa.text("SELECT count(*) FROM submission")).scalar():
        from sqlalchemy.orm import Session

        from academy.teaching.cells import rebuild

        with Session(bind=op.get_bind()) as session:
            rebuild(session)
            session.flush()


def downgrade():
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.drop_index('ix_submission_unreviewed_flag', postgresql_where=sa.text('flagged IS true AND flag_review IS NULL'), sqlite_where=sa.text('flagged IS 1 AND flag_review IS NULL'))

    with op.batch_alter_table('cell_score', schema=None) as batch_op:
        batch_op.drop_index('ix_cell_score_unmarked', postgresql_where=sa.text('manual IS true AND score IS NULL'), sqlite_where=sa.text('manual IS 1 AND score IS NULL'))

    with op.batch_alter_table('gradebook_cell', schema=None) as batch_op:
        batch_op.drop_index('ix_gradebook_cell_user_id')

    op.drop_table('gradebook_cell')