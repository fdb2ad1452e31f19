"""The worker gives up on an update job that every earlier claim left without a result (each
delivery counted in the row's `attempts` before the work starts)."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from contracts.jobs import Gate, JobRequest
from db.base import make_engine, make_session_factory
from db.datasets.models import DatasetFormat
from db.datasets.service import create_dataset, mark_dataset_ready
from db.migrate import upgrade
from db.updates.models import JobStatus, UpdateJob
from db.updates.submission import create_job, get_job
from worker import jobs, runtime


@pytest.fixture
def worker_settings(tmp_path, monkeypatch):
    """The worker process's settings, from the environment as in a real worker."""
    monkeypatch.setenv("FLIPGUARD_DATABASE_URL", f"sqlite:///{tmp_path / 'w.db'}")
    monkeypatch.setenv("FLIPGUARD_ARTIFACT_ROOT", str(tmp_path))
    monkeypatch.setenv("FLIPGUARD_MAX_JOB_ATTEMPTS", "2")
    runtime.settings.cache_clear()
    runtime.session_factory.cache_clear()
    yield runtime.settings()
    runtime.session_factory().kw["bind"].dispose()
    runtime.settings.cache_clear()
    runtime.session_factory.cache_clear()


def test_a_job_past_its_attempts_is_failed_without_running(worker_settings, monkeypatch):
    upgrade(worker_settings.database_url)
    factory = make_session_factory(make_engine(worker_settings.database_url))
    monkeypatch.setattr(jobs, "_train_and_register", lambda *args: (_ for _ in ()).throw(AssertionError("ran")))
    with factory() as session:
        dataset = create_dataset(session, name="d", uri="/data/d", format=DatasetFormat.NPZ)
        mark_dataset_ready(
            session, dataset_id=dataset.id, classes=["a"], train_size=1, test_size=1, image_shape=[1, 2, 2], digest="x"
        )
        request = JobRequest(
            base_model_id=None,
            family="f",
            architecture="small_cnn",
            dataset_id=dataset.id,
            classes=None,
            method="independent",
            method_params={},
            recipe={},
            gate=Gate(),
            seed=0,
        )
        job, _ = create_job(session, request=request)
        # Two claims already ran and died (the job is still marked running, its heartbeat stale).
        session.execute(update(UpdateJob).where(UpdateJob.id == job.id).values(status=JobStatus.RUNNING, attempts=2))
        session.commit()
    outcome = jobs.execute_update(job_id=job.id)
    assert outcome.startswith("failed: given up after 2 runs"), outcome
    with factory() as session:
        failed = get_job(session, job_id=job.id)
    assert failed.status == JobStatus.FAILED and failed.attempts == 3
    assert "FLIPGUARD_MAX_JOB_ATTEMPTS=2" in failed.error
