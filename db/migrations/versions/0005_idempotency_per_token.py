"""Idempotency keys are scoped to their API token: the stored key becomes "<token id>:<key>",
so the column widens from 200 to 240 characters (a 200-character header plus the prefix).

Keys stored before this revision carry no prefix: a retry of such a request after the upgrade
is a new request.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 13:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('update_jobs', schema=None) as batch_op:
        batch_op.alter_column('idempotency_key', existing_type=sa.String(length=200), type_=sa.String(length=240),
                              existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('update_jobs', schema=None) as batch_op:
        batch_op.alter_column('idempotency_key', existing_type=sa.String(length=240), type_=sa.String(length=200),
                              existing_nullable=True)
