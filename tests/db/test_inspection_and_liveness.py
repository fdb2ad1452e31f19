"""Inspection deliveries are counted in the row before the work (one claim at a time, a claim
older than the timeout presumed dead, the reconciler finds data sets nobody holds); worker
heartbeats are one row per worker."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import update

from db.base import utcnow
from db.datasets.models import Dataset, DatasetFormat
from db.datasets.service import (
    claim_inspection,
    create_dataset,
    datasets_needing_inspection,
    mark_dataset_failed,
)


def pending(session, name="poison"):
    return create_dataset(session, name=name, uri="/data/poison.npz", format=DatasetFormat.NPZ)


def age(session, dataset_id: int, **seconds) -> None:
    """Move the row's timestamps into the past."""
    values = {column: utcnow() - timedelta(seconds=s) for column, s in seconds.items()}
    session.execute(update(Dataset).where(Dataset.id == dataset_id).values(**values))
    session.commit()


def test_each_delivery_is_counted_before_the_work(session):
    dataset = pending(session)
    assert dataset.inspect_attempts == 0 and dataset.inspect_started_at is None
    first = claim_inspection(session, dataset_id=dataset.id, timeout_s=60)
    assert first.inspect_attempts == 1 and first.inspect_started_at is not None
    # A second delivery while the first is young is dropped, uncounted.
    assert claim_inspection(session, dataset_id=dataset.id, timeout_s=60) is None
    # Once the first is older than the timeout (its worker died), the next one counts.
    age(session, dataset.id, inspect_started_at=61)
    assert claim_inspection(session, dataset_id=dataset.id, timeout_s=60).inspect_attempts == 2
    mark_dataset_failed(session, dataset_id=dataset.id, error="poison")
    age(session, dataset.id, inspect_started_at=61)
    assert claim_inspection(session, dataset_id=dataset.id, timeout_s=60) is None  # finished
    assert claim_inspection(session, dataset_id=dataset.id + 100, timeout_s=60) is None


def test_concurrent_deliveries_claim_once(session_factory):
    with session_factory() as session:
        dataset_id = pending(session).id

    def claim(_):
        with session_factory() as session:
            return claim_inspection(session, dataset_id=dataset_id, timeout_s=60) is not None

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(claim, range(8))) == 1


def test_data_sets_needing_inspection(session):
    fresh, lost, held, dead = (pending(session, name) for name in ("fresh", "lost", "held", "dead"))
    age(session, lost.id, created_at=120)
    for row in (held, dead):
        claim_inspection(session, dataset_id=row.id, timeout_s=60)
    age(session, dead.id, inspect_started_at=61)
    assert datasets_needing_inspection(session, timeout_s=60, grace_s=30) == [lost.id, dead.id]
    assert fresh.id not in datasets_needing_inspection(session, timeout_s=60, grace_s=30)


def test_worker_heartbeats_are_one_row_per_worker(session):
    from db.workers.service import is_live, list_workers, record_heartbeat, remove_worker

    started = utcnow() - timedelta(seconds=30)
    record_heartbeat(session, name="gpu0@a", queues=["training"], started_at=started)
    record_heartbeat(session, name="gpu0@a", queues=["training"], started_at=started)
    record_heartbeat(session, name="light@a", queues=["light", "extra"])
    rows = list_workers(session)
    assert [(row.name, row.queues) for row in rows] == [("light@a", ["extra", "light"]), ("gpu0@a", ["training"])]
    assert all(is_live(row, stale_after_s=10) for row in rows)
    remove_worker(session, name="light@a")
    assert [row.name for row in list_workers(session)] == ["gpu0@a"]
