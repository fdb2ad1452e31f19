"""worker/reconciler.py on both brokers: real Redis (a private server, on a database index other
than 0) and kombu's filesystem transport (a temporary folder), with a SQLite database.

The reconciler sends a job again when the database says it needs a worker (queued past the
grace time, or active with a stale heartbeat) and no message for it waits in the training
queue; never a job whose message still waits, and never a job whose worker is alive. Data set
inspections and comparisons likewise, in the light queue.
Messages are written by the API's own sender (api.queue.TaskQueue) and read back from the
broker's storage, not through the reconciler.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from api.queue import TaskQueue
from contracts.jobs import JobRequest
from contracts.tasks import COMPARE_MODELS_TASK, INSPECT_DATASET_TASK, LIGHT_QUEUE, RUN_UPDATE_TASK, TRAINING_QUEUE
from db.base import make_engine, make_session_factory, utcnow
from db.comparisons.models import Comparison, ComparisonStatus
from db.comparisons.service import claim_comparison, fail_comparison, get_comparison
from db.datasets.models import Dataset, DatasetFormat
from db.datasets.service import claim_inspection, create_dataset
from db.migrate import upgrade
from db.settings import Settings
from db.updates.lifecycle import claim_job, fail_job
from db.updates.models import UpdateJob
from db.updates.submission import create_job
from tests.db.db_helpers import queued_comparisons, ready_dataset, uploaded_model
from worker.app import create_celery
from worker.reconciler import reconcile, reconcile_comparisons, reconcile_datasets, start_reconciler

HEARTBEAT_TIMEOUT_S = 60
INSPECT_TIMEOUT_S = 120
COMPARISON_TIMEOUT_S = 120
RECONCILE_INTERVAL_S = 30  # also the grace a queued job gets before it counts as lost
LONG_AGO = timedelta(seconds=600)
REDIS_DB = 5


@pytest.fixture(scope="module")
def redis_server():
    from tests.integration.private_services import PrivateRedis

    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["filesystem", "redis"])
def broker(request, tmp_path):
    """(settings, kind) for a fresh broker of each kind and a migrated SQLite database."""
    database_url = f"sqlite:///{tmp_path / 'flipguard.db'}"
    upgrade(database_url)
    if request.param == "filesystem":
        broker_url = f"filesystem://{tmp_path / 'broker'}"
    else:
        server = request.getfixturevalue("redis_server")
        broker_url = f"redis://127.0.0.1:{server.port}/{REDIS_DB}"
        redis.Redis.from_url(broker_url).flushdb()
    settings = Settings(
        database_url=database_url,
        broker_url=broker_url,
        artifact_root=tmp_path / "artifacts",
        heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
        reconcile_interval_s=RECONCILE_INTERVAL_S,
        inspect_timeout_s=INSPECT_TIMEOUT_S,
        comparison_timeout_s=COMPARISON_TIMEOUT_S,
    )
    return settings, request.param


class World:
    """The database, the worker's Celery app and the API's sender of one test."""

    def __init__(self, settings: Settings, kind: str):
        self.settings, self.kind = settings, kind
        self.engine = make_engine(settings.database_url)
        self.session_factory = make_session_factory(self.engine)
        self.app = create_celery(settings)
        self.api_queue = TaskQueue(settings)
        with self.session_factory() as session:
            self.dataset_id = ready_dataset(session).id
            self.base_id = uploaded_model(session).id
        self.seed = 0

    def close(self) -> None:
        self.app.close()
        self.engine.dispose()

    def job(self, *, created_ago: timedelta = LONG_AGO) -> int:
        """A queued update job, created `created_ago`."""
        self.seed += 1
        request = JobRequest(base_model_id=self.base_id, dataset_id=self.dataset_id, method="mpt-kl", seed=self.seed)
        with self.session_factory() as session:
            job_id = create_job(session, request=request)[0].id
        self._set(job_id, created_at=utcnow() - created_ago)
        return job_id

    def claimed(self, job_id: int, *, heartbeat_ago: timedelta, worker: str = "w1") -> int:
        with self.session_factory() as session:
            assert claim_job(session, job_id=job_id, worker_id=worker, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
        self._set(job_id, heartbeat_at=utcnow() - heartbeat_ago)
        return job_id

    def _set(self, job_id: int, **values) -> None:
        with self.session_factory() as session:
            session.execute(update(UpdateJob).where(UpdateJob.id == job_id).values(**values))
            session.commit()

    def pending_dataset(self, name: str, *, created_ago: timedelta = LONG_AGO) -> int:
        """A data set waiting for its inspection, registered `created_ago`."""
        with self.session_factory() as session:
            dataset_id = create_dataset(session, name=name, uri="/data/x.npz", format=DatasetFormat.NPZ).id
            session.execute(update(Dataset).where(Dataset.id == dataset_id).values(created_at=utcnow() - created_ago))
            session.commit()
        return dataset_id

    def inspecting(self, dataset_id: int, *, started_ago: timedelta) -> int:
        with self.session_factory() as session:
            assert claim_inspection(session, dataset_id=dataset_id, timeout_s=INSPECT_TIMEOUT_S)
            session.execute(
                update(Dataset).where(Dataset.id == dataset_id).values(inspect_started_at=utcnow() - started_ago)
            )
            session.commit()
        return dataset_id

    def comparisons(self, count: int, *, created_ago: timedelta = LONG_AGO) -> list[int]:
        """`count` queued comparisons, requested `created_ago` (call once per test: new families)."""
        with self.session_factory() as session:
            comparison_ids = queued_comparisons(session, count)
        for comparison_id in comparison_ids:
            self._set_comparison(comparison_id, created_at=utcnow() - created_ago)
        return comparison_ids

    def comparing(self, comparison_id: int, *, started_ago: timedelta) -> int:
        """Claimed by a light worker `started_ago`."""
        with self.session_factory() as session:
            assert claim_comparison(session, comparison_id=comparison_id, stale_after_s=COMPARISON_TIMEOUT_S)
        self._set_comparison(comparison_id, started_at=utcnow() - started_ago)
        return comparison_id

    def _set_comparison(self, comparison_id: int, **values) -> None:
        with self.session_factory() as session:
            session.execute(update(Comparison).where(Comparison.id == comparison_id).values(**values))
            session.commit()

    def reconcile(self) -> list[int]:
        return reconcile(
            app=self.app, settings=self.settings, session_factory=self.session_factory, queue=TRAINING_QUEUE
        )

    def raw_messages(self, queue: str) -> list[bytes]:
        """Every message waiting in `queue`, read from the broker's own storage."""
        if self.kind == "filesystem":
            folder = Path(self.settings.broker_connection()[1]["data_folder_out"])
            return [path.read_bytes() for path in sorted(folder.glob(f"*.{queue}.msg"))]
        client = redis.Redis.from_url(self.settings.broker_url)
        return client.lrange(queue, 0, -1)

    def waiting(self, queue: str = TRAINING_QUEUE) -> list[tuple[str, list]]:
        """(task name, args) of every Celery message waiting in `queue`, sorted."""
        messages = []
        for raw in self.raw_messages(queue):
            try:
                payload = json.loads(raw)
            except ValueError:
                continue  # not a Celery message
            args = json.loads(base64.b64decode(payload["body"]))[0]
            messages.append((payload["headers"]["task"], args))
        return sorted(messages)

    def reconcile_datasets(self) -> list[int]:
        return reconcile_datasets(app=self.app, settings=self.settings, session_factory=self.session_factory)

    def reconcile_comparisons(self) -> list[int]:
        return reconcile_comparisons(app=self.app, settings=self.settings, session_factory=self.session_factory)

    def take_message(self, queue: str = TRAINING_QUEUE):
        """A worker takes the oldest message of `queue` off it, unacknowledged; returns the
        consumer's connection (closing it would hand an unacknowledged Redis message back)."""
        connection = self.app.connection_for_read()
        message = connection.default_channel.basic_get(queue, no_ack=False)
        assert message is not None
        return connection


@pytest.fixture
def world(broker):
    settings, kind = broker
    world = World(settings, kind)
    yield world
    world.close()


def update_messages(*job_ids: int) -> list[tuple[str, list]]:
    return sorted((RUN_UPDATE_TASK, [job_id]) for job_id in job_ids)


def test_resends_exactly_the_jobs_that_no_message_carries(world):
    queued_lost = world.job()
    queued_waiting = world.job()
    world.api_queue.run_update(queued_waiting)
    queued_in_grace = world.job(created_ago=timedelta(seconds=1))  # the API is still sending it
    running_stale = world.claimed(world.job(), heartbeat_ago=LONG_AGO)
    evaluating_stale = world.claimed(world.job(), heartbeat_ago=LONG_AGO)
    world._set(evaluating_stale, status="evaluating")
    stale_waiting = world.claimed(world.job(), heartbeat_ago=LONG_AGO)
    world.api_queue.run_update(stale_waiting)  # e.g. Redis handed it back after the visibility timeout
    running_live = world.claimed(world.job(), heartbeat_ago=timedelta(seconds=1))
    finished = world.claimed(world.job(), heartbeat_ago=LONG_AGO)
    with world.session_factory() as session:
        fail_job(session, job_id=finished, error="boom")
    assert world.waiting() == update_messages(queued_waiting, stale_waiting)

    resent = world.reconcile()

    assert resent == [queued_lost, running_stale, evaluating_stale]
    # Each resent job now has exactly one run_update message in the training queue, and the
    # jobs that had one were not sent twice.
    assert world.waiting() == update_messages(
        queued_lost, queued_waiting, running_stale, evaluating_stale, stale_waiting
    )
    assert not {queued_in_grace, running_live, finished} & set(resent)
    # Another round finds every job that needs a worker carried by a message.
    assert world.reconcile() == []
    assert len(world.waiting()) == 5


def test_a_message_taken_by_a_worker_that_died_is_lost_and_its_job_resent(world):
    job = world.job()
    world.api_queue.run_update(job)
    consumer = world.take_message()  # the worker took the message ...
    try:
        # ... and claimed the job: while it heartbeats, nothing is sent.
        world.claimed(job, heartbeat_ago=timedelta(seconds=1), worker="dying")
        assert world.waiting() == []
        assert world.reconcile() == []
        assert world.waiting() == []
        # It died: its heartbeat goes stale, and no message waits (the filesystem transport
        # deleted the file; Redis holds it unacknowledged until the week-long visibility timeout).
        world._set(job, heartbeat_at=utcnow() - LONG_AGO)
        assert world.reconcile() == [job]
        assert world.waiting() == update_messages(job)
    finally:
        consumer.release()


def test_a_queued_job_whose_message_was_taken_before_any_claim_is_resent(world):
    job = world.job()
    world.api_queue.run_update(job)
    consumer = world.take_message()  # a worker took it and died before claiming
    try:
        assert world.waiting() == []
        assert world.reconcile() == [job]
        assert world.waiting() == update_messages(job)
    finally:
        consumer.release()


def test_other_messages_do_not_count_as_carrying_a_job(world):
    job = world.job()
    # The same id in a message of another task, in the training queue and in its own queue.
    world.app.send_task(INSPECT_DATASET_TASK, args=[job], queue=TRAINING_QUEUE)
    world.api_queue.inspect_dataset(job)
    if world.kind == "filesystem":  # and a file that is no Celery message at all
        folder = Path(world.settings.broker_connection()[1]["data_folder_out"])
        (folder / f"0_garbage.{TRAINING_QUEUE}.msg").write_bytes(b"not json")
    assert world.reconcile() == [job]
    assert (RUN_UPDATE_TASK, [job]) in world.waiting()


def test_a_redis_restart_without_persistence_loses_the_queue_and_every_job_is_resent(redis_server, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'flipguard.db'}"
    upgrade(database_url)
    settings = Settings(
        database_url=database_url,
        broker_url=f"redis://127.0.0.1:{redis_server.port}/{REDIS_DB}",
        heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
        reconcile_interval_s=RECONCILE_INTERVAL_S,
    )
    world = World(settings, "redis")
    try:
        queued = [world.job(), world.job()]
        for job in queued:
            world.api_queue.run_update(job)
        running = world.claimed(world.job(), heartbeat_ago=timedelta(seconds=1))
        assert world.reconcile() == []
        redis_server.stop()
        redis_server.start()
        assert world.waiting() == []
        # The running job's worker is alive: only the queued ones need sending.
        assert world.reconcile() == queued
        assert world.waiting() == update_messages(*queued)
        assert running not in world.reconcile()
    finally:
        world.close()


def test_resends_exactly_the_inspections_that_no_message_carries(world):
    lost = world.pending_dataset("lost")
    waiting = world.pending_dataset("waiting")
    world.api_queue.inspect_dataset(waiting)
    in_grace = world.pending_dataset("in-grace", created_ago=timedelta(seconds=1))
    dead = world.inspecting(world.pending_dataset("dead"), started_ago=LONG_AGO)
    held = world.inspecting(world.pending_dataset("held"), started_ago=timedelta(seconds=1))
    # The same id in a message of another task does not carry the inspection.
    world.api_queue.compare_models(lost)

    resent = world.reconcile_datasets()

    assert resent == [lost, dead]
    inspections = [message for message in world.waiting(LIGHT_QUEUE) if message[0] == INSPECT_DATASET_TASK]
    assert inspections == sorted((INSPECT_DATASET_TASK, [dataset_id]) for dataset_id in (lost, waiting, dead))
    assert not {in_grace, held} & set(resent)
    assert world.reconcile_datasets() == []


def compare_messages(*comparison_ids: int) -> list[tuple[str, list]]:
    return sorted((COMPARE_MODELS_TASK, [comparison_id]) for comparison_id in comparison_ids)


def waiting_comparisons(world: World) -> list[tuple[str, list]]:
    return [message for message in world.waiting(LIGHT_QUEUE) if message[0] == COMPARE_MODELS_TASK]


def test_resends_exactly_the_comparisons_that_no_message_carries(world):
    ids = world.comparisons(8)
    queued_lost, queued_waiting, queued_in_grace = ids[:3]
    world.api_queue.compare_models(queued_waiting)
    world._set_comparison(queued_in_grace, created_at=utcnow() - timedelta(seconds=1))  # the API is still sending it
    running_stale = world.comparing(ids[3], started_ago=LONG_AGO)
    stale_waiting = world.comparing(ids[4], started_ago=LONG_AGO)
    world.api_queue.compare_models(stale_waiting)
    running_live = world.comparing(ids[5], started_ago=timedelta(seconds=1))
    failed = world.comparing(ids[6], started_ago=LONG_AGO)
    succeeded = world.comparing(ids[7], started_ago=LONG_AGO)
    with world.session_factory() as session:
        fail_comparison(session, comparison_id=failed, attempt=1, error="boom")
    world._set_comparison(succeeded, status=ComparisonStatus.SUCCEEDED, finished_at=utcnow())
    # The same id in a message of another task, in the light queue, does not carry a comparison.
    world.api_queue.inspect_dataset(queued_lost)
    assert waiting_comparisons(world) == compare_messages(queued_waiting, stale_waiting)

    resent = world.reconcile_comparisons()

    assert resent == [queued_lost, running_stale]
    assert waiting_comparisons(world) == compare_messages(queued_lost, queued_waiting, running_stale, stale_waiting)
    assert not {queued_in_grace, running_live, failed, succeeded} & set(resent)
    # No clock was restarted: the waiting messages are what keep the next round from sending again.
    assert world.reconcile_comparisons() == []
    assert len(waiting_comparisons(world)) == 4
    # The other passes leave comparisons alone, and this one leaves jobs and data sets alone.
    assert world.reconcile() == [] and world.reconcile_datasets() == []


def test_a_stale_running_comparison_is_resent_and_claimed_by_the_new_delivery(world):
    [comparison_id] = world.comparisons(1)
    world.api_queue.compare_models(comparison_id)
    # A light worker took the message and claimed the comparison ... and died: the filesystem
    # transport deleted the file, Redis holds it unacknowledged. Its connection stays open to the
    # end, as closing it would hand the message back.
    dead = world.take_message(LIGHT_QUEUE)
    delivery = world.app.connection_for_read()
    try:
        world.comparing(comparison_id, started_ago=timedelta(seconds=1))
        assert world.reconcile_comparisons() == []
        world._set_comparison(comparison_id, started_at=utcnow() - LONG_AGO)
        assert world.reconcile_comparisons() == [comparison_id]
        assert waiting_comparisons(world) == compare_messages(comparison_id)
        # The next worker takes the new message and claims with the bound the reconciler used.
        message = delivery.default_channel.basic_get(LIGHT_QUEUE, no_ack=True)
        assert message is not None and message.headers["task"] == COMPARE_MODELS_TASK
        [delivered_id] = message.decode()[0]
        with world.session_factory() as session:
            claimed = claim_comparison(
                session, comparison_id=delivered_id, stale_after_s=world.settings.comparison_timeout_s
            )
            assert claimed is not None and claimed.id == comparison_id
            assert (claimed.status, claimed.attempts) == (ComparisonStatus.RUNNING, 2)
        # Running again under a fresh claim: nothing more is sent.
        assert world.reconcile_comparisons() == []
        assert waiting_comparisons(world) == []
    finally:
        delivery.release()
        dead.release()


def test_a_queued_comparison_whose_message_was_lost_is_resent_once(world):
    [comparison_id] = world.comparisons(1)
    world.api_queue.compare_models(comparison_id)
    consumer = world.take_message(LIGHT_QUEUE)  # a worker took it and died before claiming
    try:
        assert world.reconcile_comparisons() == [comparison_id]
        assert world.reconcile_comparisons() == []  # its new message waits
        assert waiting_comparisons(world) == compare_messages(comparison_id)
        with world.session_factory() as session:
            assert get_comparison(session, comparison_id=comparison_id).status == ComparisonStatus.QUEUED
    finally:
        consumer.release()


def test_the_reconciler_thread_survives_a_failed_round(broker):
    settings, kind = broker
    settings = settings.model_copy(update={"reconcile_interval_s": 0.05})
    world = World(settings, kind)
    job = world.job()
    rounds = []

    def flaky_session_factory():
        rounds.append(1)
        if len(rounds) == 1:
            raise OperationalError("SELECT 1", {}, Exception("the database is restarting"))
        return world.session_factory()

    stop = start_reconciler(
        app=world.app, settings=settings, session_factory=flaky_session_factory, queue=TRAINING_QUEUE
    )
    try:
        deadline = time.monotonic() + 60
        while not world.waiting() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        world.close()
    assert world.waiting() == update_messages(job)
    assert len(rounds) >= 2  # the first round failed, a later one sent the job


def test_the_reconciler_thread_runs_every_pass(broker):
    settings, kind = broker
    settings = settings.model_copy(update={"reconcile_interval_s": 0.05})
    world = World(settings, kind)
    job = world.job()
    dataset = world.pending_dataset("lost")
    [comparison] = world.comparisons(1)
    expected = sorted(
        [(RUN_UPDATE_TASK, [job]), (INSPECT_DATASET_TASK, [dataset]), (COMPARE_MODELS_TASK, [comparison])]
    )

    def sent() -> list[tuple[str, list]]:
        return sorted(world.waiting(TRAINING_QUEUE) + world.waiting(LIGHT_QUEUE))

    stop = start_reconciler(
        app=world.app, settings=settings, session_factory=world.session_factory, queue=TRAINING_QUEUE
    )
    try:
        deadline = time.monotonic() + 60
        while sent() != expected and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        world.close()
    assert sent() == expected
