"""Initial schema: data sets, model versions, reference cache, update jobs, flip reports.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 17:16:36.368753
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# JSONB on PostgreSQL, JSON text elsewhere (as db.base.JSONType).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('datasets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('uri', sa.Text(), nullable=False),
    sa.Column('format', sa.Enum('fashion-mnist', 'imagefolder', 'cifar', 'npz', name='dataset_format', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('status', sa.Enum('pending', 'ready', 'failed', name='dataset_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('classes', JSON, nullable=True),
    sa.Column('train_size', sa.Integer(), nullable=True),
    sa.Column('test_size', sa.Integer(), nullable=True),
    sa.Column('image_shape', JSON, nullable=True),
    sa.Column('digest', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint('name', name=op.f('uq_datasets_name'))
    )
    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('family', sa.String(length=200), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('architecture', sa.String(length=100), nullable=False),
    sa.Column('classes', JSON, nullable=False),
    sa.Column('artifact_uri', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('candidate', 'production', 'rejected', 'archived', name='model_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('recipe', JSON, nullable=True),
    sa.Column('method', sa.String(length=40), nullable=True),
    sa.Column('gate_verdict', JSON, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('promoted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('promotion_reason', sa.Text(), nullable=True),
    sa.Column('forced', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['models.id'], name=op.f('fk_models_parent_id_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
    sa.UniqueConstraint('family', 'version', name=op.f('uq_models_family_version'))
    )
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_models_family'), ['family'], unique=False)
        batch_op.create_index('uq_models_family_production', ['family'], unique=True, postgresql_where=sa.text("status = 'production'"), sqlite_where=sa.text("status = 'production'"))

    op.create_table('reference_models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cache_key', sa.String(length=200), nullable=False),
    sa.Column('artifact_uri', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('architecture', sa.String(length=100), nullable=False),
    sa.Column('classes', JSON, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reference_models')),
    sa.UniqueConstraint('cache_key', name=op.f('uq_reference_models_cache_key'))
    )
    op.create_table('flip_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('baseline_model_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.Enum('model', 'reference', name='report_role', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('split', sa.String(length=40), nullable=False),
    sa.Column('k_old', sa.Integer(), nullable=False),
    sa.Column('classes', JSON, nullable=False),
    sa.Column('summary', JSON, nullable=False),
    sa.Column('nfr_old_classes', sa.Float(), nullable=False),
    sa.Column('nfr_all', sa.Float(), nullable=False),
    sa.Column('relative_nfr_old_classes', sa.Float(), nullable=False),
    sa.Column('accuracy', sa.Float(), nullable=True),
    sa.Column('accuracy_old_classes', sa.Float(), nullable=True),
    sa.Column('accuracy_new_classes', sa.Float(), nullable=True),
    sa.Column('negative_flips', sa.Integer(), nullable=False),
    sa.Column('samples', sa.Integer(), nullable=False),
    sa.Column('images_uri', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['baseline_model_id'], ['models.id'], name=op.f('fk_flip_reports_baseline_model_id_models'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_flip_reports_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flip_reports'))
    )
    with op.batch_alter_table('flip_reports', schema=None) as batch_op:
        batch_op.create_index('ix_flip_reports_model_baseline', ['model_id', 'baseline_model_id'], unique=False)

    op.create_table('update_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('base_model_id', sa.Integer(), nullable=True),
    sa.Column('family', sa.String(length=200), nullable=False),
    sa.Column('architecture', sa.String(length=100), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('classes', JSON, nullable=True),
    sa.Column('method', sa.String(length=40), nullable=False),
    sa.Column('method_params', JSON, nullable=False),
    sa.Column('recipe', JSON, nullable=False),
    sa.Column('gate', JSON, nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('queued', 'running', 'evaluating', 'succeeded', 'failed', 'cancelled', name='job_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('phase', sa.String(length=40), nullable=True),
    sa.Column('progress', sa.Float(), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=True),
    sa.Column('epochs', sa.Integer(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('worker_id', sa.String(length=200), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('result_model_id', sa.Integer(), nullable=True),
    sa.Column('reference_model_id', sa.Integer(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['base_model_id'], ['models.id'], name=op.f('fk_update_jobs_base_model_id_models')),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_update_jobs_dataset_id_datasets')),
    sa.ForeignKeyConstraint(['reference_model_id'], ['reference_models.id'], name=op.f('fk_update_jobs_reference_model_id_reference_models')),
    sa.ForeignKeyConstraint(['result_model_id'], ['models.id'], name=op.f('fk_update_jobs_result_model_id_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_update_jobs')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_update_jobs_idempotency_key'))
    )
    with op.batch_alter_table('update_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_update_jobs_status'), ['status'], unique=False)

    op.create_table('flip_samples',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('report_id', sa.Integer(), nullable=False),
    sa.Column('sample_index', sa.Integer(), nullable=False),
    sa.Column('label', sa.Integer(), nullable=False),
    sa.Column('old_prediction', sa.Integer(), nullable=False),
    sa.Column('new_prediction', sa.Integer(), nullable=False),
    sa.Column('old_confidence', sa.Float(), nullable=False),
    sa.Column('new_confidence', sa.Float(), nullable=False),
    sa.Column('kind', sa.Enum('negative', 'positive', name='flip_kind', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('is_intrusion', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['report_id'], ['flip_reports.id'], name=op.f('fk_flip_samples_report_id_flip_reports'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flip_samples'))
    )
    with op.batch_alter_table('flip_samples', schema=None) as batch_op:
        batch_op.create_index('ix_flip_samples_report_kind_label', ['report_id', 'kind', 'label'], unique=False)
        batch_op.create_index('ix_flip_samples_report_sample', ['report_id', 'sample_index'], unique=False)

    op.create_table('job_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('phase', sa.String(length=40), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=True),
    sa.Column('metrics', JSON, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['update_jobs.id'], name=op.f('fk_job_events_job_id_update_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_events'))
    )
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.create_index('ix_job_events_job_id_id', ['job_id', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.drop_index('ix_job_events_job_id_id')

    op.drop_table('job_events')
    with op.batch_alter_table('flip_samples', schema=None) as batch_op:
        batch_op.drop_index('ix_flip_samples_report_sample')
        batch_op.drop_index('ix_flip_samples_report_kind_label')

    op.drop_table('flip_samples')
    with op.batch_alter_table('update_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_update_jobs_status'))

    op.drop_table('update_jobs')
    with op.batch_alter_table('flip_reports', schema=None) as batch_op:
        batch_op.drop_index('ix_flip_reports_model_baseline')

    op.drop_table('flip_reports')
    op.drop_table('reference_models')
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_index('uq_models_family_production', postgresql_where=sa.text("status = 'production'"), sqlite_where=sa.text("status = 'production'"))
        batch_op.drop_index(batch_op.f('ix_models_family'))

    op.drop_table('models')
    op.drop_table('datasets')
