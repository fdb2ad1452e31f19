"""Data set inspection is counted: deliveries of the inspection task (before the work starts)
and when the last one began, so a data set that keeps killing workers ends `failed`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 12:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('inspect_attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('inspect_started_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_column('inspect_started_at')
        batch_op.drop_column('inspect_attempts')
