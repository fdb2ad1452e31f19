"""On-demand comparisons of any two model versions; sample images of inspected data sets.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 10:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('comparisons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('baseline_model_id', sa.Integer(), nullable=False),
    sa.Column('split_model_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('queued', 'running', 'succeeded', 'failed', name='comparison_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('report_id', sa.Integer(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_comparisons_model_id_models'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['baseline_model_id'], ['models.id'], name=op.f('fk_comparisons_baseline_model_id_models'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['split_model_id'], ['models.id'], name=op.f('fk_comparisons_split_model_id_models'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['report_id'], ['flip_reports.id'], name=op.f('fk_comparisons_report_id_flip_reports'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_comparisons')),
    sa.UniqueConstraint('model_id', 'baseline_model_id', name=op.f('uq_comparisons_model_id_baseline_model_id'))
    )
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('samples_uri', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_column('samples_uri')
    op.drop_table('comparisons')
