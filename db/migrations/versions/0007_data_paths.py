"""Photos of any size: the data path a job's images took, and a data set's image summary.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 12:00:00.000000
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('update_jobs', sa.Column('data_path', sa.String(length=20), nullable=True))
    op.add_column('datasets', sa.Column('image_summary', JSON, nullable=True))


def downgrade() -> None:
    op.drop_column('datasets', 'image_summary')
    op.drop_column('update_jobs', 'data_path')
