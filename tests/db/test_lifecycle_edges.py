"""Edge paths of db/updates/lifecycle.py (both backends): a worker claiming its own job again,
heartbeats on jobs that are not active, and transitions on jobs that already finished."""

from __future__ import annotations

from datetime import timedelta

import pytest
from db_helpers import ready_dataset, uploaded_model
from sqlalchemy import update

from contracts.jobs import JobRequest
from db.base import utcnow
from db.errors import JobNotOwned
from db.updates.lifecycle import cancel_job_finished, claim_job, fail_job, heartbeat, record_event
from db.updates.models import JobStatus, UpdateJob
from db.updates.submission import create_job, get_job, list_events, request_cancel


def queued_job(session) -> int:
    dataset = ready_dataset(session)
    base = uploaded_model(session)
    request = JobRequest(base_model_id=base.id, dataset_id=dataset.id, method="mpt-kl", recipe={"epochs": 3})
    return create_job(session, request=request)[0].id


def row(session, job_id: int) -> UpdateJob:
    session.expire_all()
    return get_job(session, job_id=job_id)


def test_the_same_worker_claims_its_running_job_again_while_others_cannot(session):
    job_id = queued_job(session)
    first = claim_job(session, job_id=job_id, worker_id="w1", heartbeat_timeout_s=60)
    started_at = first.started_at
    assert claim_job(session, job_id=job_id, worker_id="w2", heartbeat_timeout_s=60) is None
    again = claim_job(session, job_id=job_id, worker_id="w1", heartbeat_timeout_s=60)
    assert again is not None
    assert (again.status, again.worker_id, again.attempts) == (JobStatus.RUNNING, "w1", 2)
    assert again.started_at == started_at  # the first start is kept
    # Evaluating counts as held too, by its worker and against others.
    heartbeat(session, job_id=job_id, worker_id="w1", phase="evaluating", progress=0.0, status=JobStatus.EVALUATING)
    assert claim_job(session, job_id=job_id, worker_id="w2", heartbeat_timeout_s=60) is None
    third = claim_job(session, job_id=job_id, worker_id="w1", heartbeat_timeout_s=60)
    assert (third.status, third.attempts) == (JobStatus.RUNNING, 3)


def test_a_claimed_job_whose_first_heartbeat_never_came_is_taken_over(session):
    job_id = queued_job(session)
    claim_job(session, job_id=job_id, worker_id="w1", heartbeat_timeout_s=60)
    session.execute(update(UpdateJob).where(UpdateJob.id == job_id).values(heartbeat_at=None))
    session.commit()
    taken = claim_job(session, job_id=job_id, worker_id="w2", heartbeat_timeout_s=60)
    assert (taken.worker_id, taken.attempts) == ("w2", 2)


@pytest.mark.parametrize("ending", ["succeeded", "failed", "cancelled"])
def test_a_finished_job_is_claimed_by_nobody_not_even_its_own_worker(session, ending):
    job_id = queued_job(session)
    claim_job(session, job_id=job_id, worker_id="w1", heartbeat_timeout_s=60)
    session.execute(
        update(UpdateJob)
        .where(UpdateJob.id == job_id)
        .values(status=JobStatus(ending), heartbeat_at=utcnow() - timedelta(days=1))
    )
    session.commit()
    for worker in ("w1", "w2"):
        assert claim_job(session, job_id=job_id, worker_id=worker, heartbeat_timeout_s=60) is None
    assert (row(session, job_id).status, row(session, job_id).attempts) == (JobStatus(ending), 1)


def test_a_heartbeat_on_a_queued_job_is_refused_and_writes_nothing(session):
    job_id = queued_job(session)
    with pytest.raises(JobNotOwned):
        heartbeat(session, job_id=job_id, worker_id="w1", phase="training", progress=0.5, epoch=2)
    stored = row(session, job_id)
    assert (stored.status, stored.phase, stored.progress, stored.epoch, stored.heartbeat_at) == (
        JobStatus.QUEUED,
        None,
        0.0,
        None,
        None,
    )


@pytest.mark.parametrize("ending", ["failed", "cancelled", "succeeded"])
def test_a_heartbeat_after_the_job_finished_is_refused_and_writes_nothing(session, ending):
    job_id = queued_job(session)
    claim_job(session, job_id=job_id, worker_id="w1", heartbeat_timeout_s=60)
    heartbeat(session, job_id=job_id, worker_id="w1", phase="training", progress=0.25, epoch=1)
    if ending == "failed":
        assert fail_job(session, job_id=job_id, error="out of memory")
    elif ending == "cancelled":
        request_cancel(session, job_id=job_id)
        assert cancel_job_finished(session, job_id=job_id)
    else:
        session.execute(update(UpdateJob).where(UpdateJob.id == job_id).values(status=JobStatus.SUCCEEDED))
        session.commit()
    before = row(session, job_id)
    with pytest.raises(JobNotOwned, match="worker w1 no longer holds update job"):
        heartbeat(session, job_id=job_id, worker_id="w1", phase="training", progress=0.75, epoch=3)
    after = row(session, job_id)
    assert (after.status, after.phase, after.progress, after.epoch, after.heartbeat_at) == (
        before.status,
        before.phase,
        before.progress,
        before.epoch,
        before.heartbeat_at,
    )
    assert after.status == JobStatus(ending)


@pytest.mark.parametrize("status", ["queued", "succeeded", "failed", "cancelled"])
def test_a_heartbeat_may_only_set_an_active_status(session, status):
    job_id = queued_job(session)
    claim_job(session, job_id=job_id, worker_id="w1", heartbeat_timeout_s=60)
    with pytest.raises(ValueError, match=f"not {status}"):
        heartbeat(session, job_id=job_id, worker_id="w1", phase="x", progress=1.0, status=JobStatus(status))
    stored = row(session, job_id)
    assert (stored.status, stored.phase) == (JobStatus.RUNNING, None)


def test_failing_or_cancelling_a_finished_job_changes_nothing(session):
    job_id = queued_job(session)
    claim_job(session, job_id=job_id, worker_id="w1", heartbeat_timeout_s=60)
    assert fail_job(session, job_id=job_id, error="first")
    finished_at = row(session, job_id).finished_at
    assert fail_job(session, job_id=job_id, error="second") is False
    assert cancel_job_finished(session, job_id=job_id) is False
    stored = row(session, job_id)
    assert (stored.status, stored.error, stored.finished_at) == (JobStatus.FAILED, "first", finished_at)


def test_a_heartbeat_records_progress_clamped_to_0_1_and_the_epochs_it_is_given(session):
    job_id = queued_job(session)
    claim_job(session, job_id=job_id, worker_id="w1", heartbeat_timeout_s=60)
    beats = [
        (dict(progress=-0.5, epoch=1, epochs=3), (0.0, 1, 3)),
        (dict(progress=0.25), (0.25, 1, 3)),  # epoch and epochs left out: kept
        (dict(progress=0.75, epoch=3, epochs=4), (0.75, 3, 4)),
        (dict(progress=1.5), (1.0, 3, 4)),
    ]
    for values, (progress, epoch, epochs) in beats:
        assert heartbeat(session, job_id=job_id, worker_id="w1", phase="training", **values) is False
        stored = row(session, job_id)
        assert (stored.progress, stored.epoch, stored.epochs, stored.phase) == (progress, epoch, epochs, "training")


def test_ending_a_job_records_when_and_how(session):
    failed = queued_job(session)
    claim_job(session, job_id=failed, worker_id="w1", heartbeat_timeout_s=60)
    heartbeat(session, job_id=failed, worker_id="w1", phase="training", progress=0.5)
    before = utcnow()
    assert fail_job(session, job_id=failed, error="the loss became non-finite")
    after = utcnow()
    stored = row(session, failed)
    assert (stored.status, stored.error, stored.phase) == (JobStatus.FAILED, "the loss became non-finite", "training")
    assert before <= stored.finished_at <= after

    dataset_id, base_id = stored.dataset_id, stored.base_model_id
    cancelled = create_job(
        session, request=JobRequest(base_model_id=base_id, dataset_id=dataset_id, method="mpt-kl", seed=1)
    )[0].id
    claim_job(session, job_id=cancelled, worker_id="w1", heartbeat_timeout_s=60)
    request_cancel(session, job_id=cancelled)
    before = utcnow()
    assert cancel_job_finished(session, job_id=cancelled)
    after = utcnow()
    stored = row(session, cancelled)
    assert (stored.status, stored.phase, stored.error, stored.result_model_id) == (
        JobStatus.CANCELLED,
        "cancelled",
        None,
        None,
    )
    assert before <= stored.finished_at <= after


def test_an_event_keeps_its_phase_epoch_and_metrics(session):
    job_id = queued_job(session)
    claim_job(session, job_id=job_id, worker_id="w1", heartbeat_timeout_s=60)
    metrics = {"train_loss": 1.5, "val_accuracy": 0.5, "val_nfr": 0.125, "lr": 0.05}
    record_event(session, job_id=job_id, phase="reference", epoch=1, metrics=metrics)
    record_event(session, job_id=job_id, phase="training", epoch=2, metrics={"train_loss": 1.0})
    metrics["train_loss"] = 99.0  # the caller's dict changing later changes nothing stored
    session.expire_all()
    events = [(e.phase, e.epoch, e.metrics) for e in list_events(session, job_id=job_id)]
    assert events == [
        ("reference", 1, {"train_loss": 1.5, "val_accuracy": 0.5, "val_nfr": 0.125, "lr": 0.05}),
        ("training", 2, {"train_loss": 1.0}),
    ]
