"""Sweeps in update jobs: the grid, the selection policy and its choice on the job; one row per candidate.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 04:10:00.000000
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('update_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sweep', JSON, nullable=True))
        batch_op.add_column(sa.Column('selection', JSON, nullable=True))
        batch_op.add_column(sa.Column('choice', JSON, nullable=True))
    op.create_table('update_candidates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('params', JSON, nullable=False),
    sa.Column('validation', JSON, nullable=False),
    sa.Column('history', JSON, nullable=False),
    sa.Column('chosen', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['update_jobs.id'], name=op.f('fk_update_candidates_job_id_update_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_update_candidates')),
    sa.UniqueConstraint('job_id', 'index', name=op.f('uq_update_candidates_job_id_index'))
    )
    with op.batch_alter_table('update_candidates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_update_candidates_job_id'), ['job_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('update_candidates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_update_candidates_job_id'))
    op.drop_table('update_candidates')
    with op.batch_alter_table('update_jobs', schema=None) as batch_op:
        batch_op.drop_column('choice')
        batch_op.drop_column('selection')
        batch_op.drop_column('sweep')
