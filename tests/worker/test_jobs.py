"""worker/jobs.py's edge paths, run in this process through execute_update on a SQLite database,
a local artifact store and a tiny npz data set: another worker taking the job over, a cancel
arriving as evaluation starts, a data set changed on disk since registration, the same worker
claiming its job again, and a heartbeat on a job that is no longer active.

The moments "another worker claims the job after epoch 2" and "a user cancels as evaluation
starts" are placed with SQLite triggers, which do in the database exactly what the other
worker's claim and the API's cancel do, at a point fixed by the job's own writes rather than
by timing.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, text, update

torch = pytest.importorskip("torch")

from contracts.jobs import JobRequest  # noqa: E402
from db.base import utcnow  # noqa: E402
from db.comparisons.models import Comparison, ComparisonStatus  # noqa: E402
from db.comparisons.service import claim_comparison, get_comparison  # noqa: E402
from db.datasets.models import DatasetFormat  # noqa: E402
from db.datasets.service import create_dataset  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.model_versions.models import ModelVersion  # noqa: E402
from db.updates.lifecycle import claim_job, fail_job  # noqa: E402
from db.updates.models import JobEvent, JobStatus, UpdateJob  # noqa: E402
from db.updates.submission import create_job, get_job, request_cancel  # noqa: E402
from tests.db.db_helpers import queued_comparisons  # noqa: E402
from worker import comparisons, inspection, jobs, runtime  # noqa: E402

CLASSES = ["a", "b", "c", "d"]
COMPARISON_TIMEOUT_S = 120
RECIPE = {"epochs": 4, "batch_size": 32, "lr": 0.05, "crop_padding": 2, "poll_every_steps": 2}


def striped_npz(path: Path, *, seed: int) -> Path:
    """16x16 grey images: class c is a bright bar at its own rows, over noise."""
    rng = np.random.default_rng(seed)

    def split(per_class: int):
        labels = np.repeat(np.arange(len(CLASSES)), per_class)
        images = rng.integers(0, 60, size=(labels.size, 16, 16), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, 1 + 3 * c : 3 + 3 * c, 2:14] = 220
        return images, labels

    x_train, y_train = split(40)
    x_test, y_test = split(10)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, classes=np.array(CLASSES))
    return path


class Service:
    """The worker's settings pointed at a temporary home, and the rows the tests start from."""

    def __init__(self, home: Path):
        self.home = home
        self.database_url = f"sqlite:///{home / 'flipguard.db'}"
        self.artifacts = home / "artifacts"

    def session(self):
        return runtime.session_factory()()

    def register_dataset(self, name: str, path: Path) -> int:
        with self.session() as session:
            dataset_id = create_dataset(session, name=name, uri=str(path), format=DatasetFormat.NPZ).id
        assert inspection.inspect_dataset(dataset_id=dataset_id) == "ready"
        return dataset_id

    def submit(self, **fields) -> int:
        fields.setdefault("recipe", RECIPE)
        with self.session() as session:
            return create_job(session, request=JobRequest(**fields))[0].id

    def job(self, job_id: int) -> UpdateJob:
        with self.session() as session:
            return get_job(session, job_id=job_id)

    def versions(self, *, job_id: int) -> int:
        """How many model versions the job registered."""
        with self.session() as session:
            return session.scalar(select(func.count()).select_from(ModelVersion).where(ModelVersion.job_id == job_id))

    def training_epochs(self, job_id: int, phase: str = "training") -> list[int]:
        """The epochs the job's student (or, in a sweep, its students) finished, in order."""
        with self.session() as session:
            return list(
                session.scalars(
                    select(JobEvent.epoch)
                    .where(JobEvent.job_id == job_id, JobEvent.phase == phase)
                    .order_by(JobEvent.id)
                )
            )

    def execute(self, sql: str) -> None:
        with self.session() as session:
            session.execute(text(sql))
            session.commit()

    def job_files(self, job_id: int) -> list[Path]:
        """Model and report files this job's runs wrote into the artifact store."""
        return sorted(
            path for folder in ("models", "reports") for path in (self.artifacts / folder).glob(f"job-{job_id}-*")
        )

    def checkpoints(self, job_id: int) -> Path:
        return self.artifacts / "checkpoints" / f"job-{job_id}"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    home = tmp_path_factory.mktemp("worker-jobs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets on a shared 2-core machine
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLIPGUARD_DATABASE_URL", f"sqlite:///{home / 'flipguard.db'}")
        patch.setenv("FLIPGUARD_ARTIFACT_ROOT", str(home / "artifacts"))
        patch.setenv("FLIPGUARD_BROKER_URL", f"filesystem://{home / 'broker'}")
        patch.setenv("FLIPGUARD_DEVICE", "cpu")
        patch.setenv("FLIPGUARD_HEARTBEAT_TIMEOUT_S", "60")
        patch.setenv("FLIPGUARD_COMPARISON_TIMEOUT_S", str(COMPARISON_TIMEOUT_S))
        runtime.settings.cache_clear()
        runtime.session_factory.cache_clear()
        upgrade(runtime.settings().database_url)
        try:
            yield Service(home)
        finally:
            runtime.session_factory().kw["bind"].dispose()
            runtime.settings.cache_clear()
            runtime.session_factory.cache_clear()
            torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def v1(service):
    """A first version trained on classes a and b: (model id, data set id)."""
    dataset_id = service.register_dataset("stripes", striped_npz(service.home / "data" / "stripes.npz", seed=0))
    job_id = service.submit(
        family="stripes",
        architecture="small_cnn",
        dataset_id=dataset_id,
        classes=("a", "b"),
        method="independent",
        recipe=RECIPE | {"epochs": 1},
    )
    outcome = jobs.execute_update(job_id=job_id)
    assert outcome.startswith("succeeded"), outcome
    return service.job(job_id).result_model_id, dataset_id


# A job that names b trains one student (phase "training"); one that does not sweeps b
# (phase "sweep", every candidate checkpointed together): both paths stop and cancel alike.
RUNS = pytest.mark.parametrize(
    "method_params, phase", [({"bias": 4.0}, "training"), ({}, "sweep")], ids=["single", "sweep"]
)
SEEDS = {"training": 1, "sweep": 21}


@RUNS
def test_a_worker_whose_job_was_taken_over_stops_and_leaves_the_checkpoints_to_the_new_owner(
    service, v1, method_params, phase
):
    base_id, dataset_id = v1
    job_id = service.submit(
        # A seed of its own: its reference is trained here, not taken from another test's cache.
        base_model_id=base_id,
        dataset_id=dataset_id,
        method="mpt-kl",
        method_params=method_params,
        seed=SEEDS[phase],
    )
    # Another worker claims the job the moment this one records its second training epoch
    # (the claim_job UPDATE: a new worker id and one more attempt).
    service.execute(
        f"""CREATE TRIGGER takeover AFTER INSERT ON job_events
        WHEN NEW.job_id = {job_id} AND NEW.phase = '{phase}' AND NEW.epoch = 2
        BEGIN UPDATE update_jobs SET worker_id = 'other-host:7', attempts = attempts + 1 WHERE id = NEW.job_id; END"""
    )
    try:
        outcome = jobs.execute_update(job_id=job_id)
    finally:
        service.execute("DROP TRIGGER takeover")

    assert outcome == "stopped: the job was taken over by another worker"
    job = service.job(job_id)
    # The first worker wrote nothing after losing the job: the row is the new owner's.
    assert (job.status, job.worker_id, job.attempts) == (JobStatus.RUNNING, "other-host:7", 2)
    assert (job.error, job.result_model_id, job.finished_at, job.cancel_requested) == (None, None, None, False)
    assert sorted(set(service.training_epochs(job_id, phase))) == [1, 2]
    assert service.job_files(job_id) == []
    assert service.versions(job_id=job_id) == 0
    # The checkpoints stay for the new owner: the reference's and the student's after epoch 2.
    checkpoints = service.checkpoints(job_id)
    assert sorted(path.name for path in checkpoints.iterdir()) == ["reference.ckpt", f"{phase}.ckpt"]
    from safetensors import safe_open

    with safe_open(str(checkpoints / f"{phase}.ckpt"), framework="pt") as handle:
        assert handle.metadata()["epochs_done"] == "2"

    # The new owner dies too; a worker claims the stale job and resumes from epoch 3.
    with service.session() as session:
        session.execute(
            update(UpdateJob).where(UpdateJob.id == job_id).values(heartbeat_at=utcnow() - timedelta(days=1))
        )
        session.commit()
    outcome = jobs.execute_update(job_id=job_id)
    assert outcome.startswith("succeeded"), outcome
    job = service.job(job_id)
    assert (job.status, job.attempts, job.worker_id) == (JobStatus.SUCCEEDED, 3, jobs.WORKER_ID)
    # Epochs 1 and 2 were not trained again.
    assert sorted(set(service.training_epochs(job_id, phase))) == [1, 2, 3, 4]
    epochs = service.training_epochs(job_id, phase)
    assert epochs == sorted(epochs) and epochs.count(1) == epochs.count(4)
    assert not checkpoints.exists()
    assert service.versions(job_id=job_id) == 1


@RUNS
def test_a_cancel_arriving_as_evaluation_starts_registers_nothing(service, v1, method_params, phase):
    base_id, dataset_id = v1
    job_id = service.submit(
        base_model_id=base_id,
        dataset_id=dataset_id,
        method="mpt-kl",
        method_params=method_params,
        seed=SEEDS[phase] + 1,
    )
    # The user cancels when the job turns to evaluating: after the training loop's last poll.
    service.execute(
        f"""CREATE TRIGGER cancel_in_evaluation AFTER UPDATE OF status ON update_jobs
        WHEN NEW.id = {job_id} AND NEW.status = 'evaluating' AND OLD.status != 'evaluating'
        BEGIN UPDATE update_jobs SET cancel_requested = 1 WHERE id = NEW.id; END"""
    )
    try:
        outcome = jobs.execute_update(job_id=job_id)
    finally:
        service.execute("DROP TRIGGER cancel_in_evaluation")

    assert outcome == "cancelled"
    job = service.job(job_id)
    assert (job.status, job.phase, job.result_model_id) == (JobStatus.CANCELLED, "cancelled", None)
    assert sorted(set(service.training_epochs(job_id, phase))) == [1, 2, 3, 4]  # trained to the end
    assert service.versions(job_id=job_id) == 0
    assert service.job_files(job_id) == []
    assert not service.checkpoints(job_id).exists()


def test_a_data_set_changed_on_disk_since_registration_fails_the_job(service):
    path = striped_npz(service.home / "data" / "changing.npz", seed=3)
    dataset_id = service.register_dataset("changing", path)
    striped_npz(path, seed=4)  # the same classes and shapes, other images
    job_id = service.submit(
        family="changing", architecture="small_cnn", dataset_id=dataset_id, method="independent", seed=3
    )
    outcome = jobs.execute_update(job_id=job_id)
    job = service.job(job_id)
    assert job.status == JobStatus.FAILED
    assert f"data set {dataset_id} changed on disk since it was registered" in job.error
    assert job.error.endswith("register it again")
    assert outcome == f"failed: {job.error}"
    assert service.training_epochs(job_id) == []
    assert service.versions(job_id=job_id) == 0
    assert not service.checkpoints(job_id).exists()


def first_version_job(service, v1, *, seed: int) -> int:
    _, dataset_id = v1
    return service.submit(
        family=f"again-{seed}",
        architecture="small_cnn",
        dataset_id=dataset_id,
        classes=("a", "b"),
        method="independent",
        recipe=RECIPE | {"epochs": 1},
        seed=seed,
    )


def test_the_same_worker_receiving_its_running_job_again_runs_it(service, v1):
    # A worker restarted under the same id (a container's host name and pid) while its
    # heartbeat is still fresh: the redelivered job is its own, not another live worker's.
    job_id = first_version_job(service, v1, seed=11)
    with service.session() as session:
        assert claim_job(session, job_id=job_id, worker_id=jobs.WORKER_ID, heartbeat_timeout_s=60)
    outcome = jobs.execute_update(job_id=job_id)
    assert outcome.startswith("succeeded"), outcome
    job = service.job(job_id)
    assert (job.status, job.attempts, job.worker_id) == (JobStatus.SUCCEEDED, 2, jobs.WORKER_ID)


def test_a_job_held_by_another_live_worker_or_finished_is_dropped_untouched(service, v1):
    held = first_version_job(service, v1, seed=12)
    with service.session() as session:
        assert claim_job(session, job_id=held, worker_id="other-host:9", heartbeat_timeout_s=60)
    dropped = "dropped: another live worker holds it, or it has finished"
    assert jobs.execute_update(job_id=held) == dropped
    job = service.job(held)
    assert (job.status, job.attempts, job.worker_id) == (JobStatus.RUNNING, 1, "other-host:9")

    cancelled = first_version_job(service, v1, seed=13)
    with service.session() as session:
        request_cancel(session, job_id=cancelled)
    assert jobs.execute_update(job_id=cancelled) == dropped
    assert (service.job(cancelled).status, service.job(cancelled).attempts) == (JobStatus.CANCELLED, 0)


def test_the_heartbeat_of_a_job_that_is_no_longer_active_tells_the_loop_to_stop(service, v1):
    job_id = first_version_job(service, v1, seed=14)
    with service.session() as session:
        claim_job(session, job_id=job_id, worker_id=jobs.WORKER_ID, heartbeat_timeout_s=60)
    monitor = jobs.JobMonitor(job_id=job_id, interval_s=60, epochs=1)
    monitor.enter_phase("training")
    assert not monitor.should_stop()
    with service.session() as session:  # the job was ended elsewhere (an operator, a retry limit)
        assert fail_job(session, job_id=job_id, error="stopped by an operator")
    before = service.job(job_id)
    monitor.progress, monitor.epoch = 0.5, 1
    monitor.beat()
    assert monitor.lost and monitor.should_stop()
    after = service.job(job_id)  # the beat wrote nothing
    assert (after.status, after.phase, after.progress, after.epoch, after.heartbeat_at) == (
        JobStatus.FAILED,
        "training",
        0.0,
        before.epoch,
        before.heartbeat_at,
    )


def test_a_comparison_is_claimed_again_only_past_the_configured_bound(service):
    # FLIPGUARD_COMPARISON_TIMEOUT_S, the bound the reconciler re-sends by, is the claim's too.
    with service.session() as session:
        live, stale = queued_comparisons(session, 2)
        for comparison_id, age in ((live, COMPARISON_TIMEOUT_S - 30), (stale, COMPARISON_TIMEOUT_S + 30)):
            assert claim_comparison(session, comparison_id=comparison_id, stale_after_s=COMPARISON_TIMEOUT_S)
            session.execute(
                update(Comparison)
                .where(Comparison.id == comparison_id)
                .values(started_at=utcnow() - timedelta(seconds=age))
            )
        session.commit()
    assert comparisons.execute_comparison(comparison_id=live) == "dropped: finished, or running elsewhere"
    # Claimed again: uploaded models have no evaluation split, so it fails at once, saying why.
    assert comparisons.execute_comparison(comparison_id=stale).startswith("failed: neither model")
    with service.session() as session:
        live_row, stale_row = (get_comparison(session, comparison_id=row_id) for row_id in (live, stale))
        assert (live_row.status, live_row.attempts) == (ComparisonStatus.RUNNING, 1)
        assert (stale_row.status, stale_row.attempts) == (ComparisonStatus.FAILED, 2)


def test_a_comparison_whose_every_claim_died_is_failed_without_running(service):
    # Three deliveries (FLIPGUARD_MAX_COMPARISON_ATTEMPTS' default) each claimed it and vanished.
    with service.session() as session:
        (comparison_id,) = queued_comparisons(session, 1)
        session.execute(
            update(Comparison)
            .where(Comparison.id == comparison_id)
            .values(
                status=ComparisonStatus.RUNNING,
                attempts=3,
                started_at=utcnow() - timedelta(seconds=COMPARISON_TIMEOUT_S + 30),
            )
        )
        session.commit()
    outcome = comparisons.execute_comparison(comparison_id=comparison_id)
    assert outcome.startswith("failed: given up after 3 runs"), outcome
    with service.session() as session:
        row = get_comparison(session, comparison_id=comparison_id)
    assert (row.status, row.attempts) == (ComparisonStatus.FAILED, 4)
    assert "FLIPGUARD_MAX_COMPARISON_ATTEMPTS=3" in (row.error or "") and row.report_id is None
