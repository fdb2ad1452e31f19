"""Who promoted a model version: a token's identity, or flipguard itself for automatic promotions.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 09:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('promoted_by', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_column('promoted_by')
