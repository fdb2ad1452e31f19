"""jobs_needing_dispatch: which jobs the reconciler considers sending again (both backends).

A job needs a worker when it is queued past the grace time, or active (running or
evaluating) with no heartbeat or a stale one; never when it has finished, and never when its
worker is alive. Whether a broker message still carries it is the reconciler's half
(tests/worker/test_reconciler.py).
"""

from __future__ import annotations

from datetime import timedelta

from db_helpers import ready_dataset, uploaded_model
from sqlalchemy import update

from contracts.jobs import JobRequest
from db.base import utcnow
from db.updates.lifecycle import cancel_job_finished, claim_job, fail_job, heartbeat, jobs_needing_dispatch
from db.updates.models import JobStatus, UpdateJob
from db.updates.submission import create_job, request_cancel

HEARTBEAT_TIMEOUT_S = 60
GRACE_S = 30
# Far from both limits, so that a slow machine between arranging and asking changes nothing.
LONG_AGO = timedelta(seconds=600)
JUST_NOW = timedelta(seconds=1)


def set_times(session, job_id: int, *, created_ago: timedelta, heartbeat_ago: timedelta | None = None) -> None:
    values = {"created_at": utcnow() - created_ago}
    if heartbeat_ago is not None:
        values["heartbeat_at"] = utcnow() - heartbeat_ago
    session.execute(update(UpdateJob).where(UpdateJob.id == job_id).values(**values))
    session.commit()


def test_which_jobs_need_a_worker(session):
    dataset = ready_dataset(session)
    base = uploaded_model(session)

    def new_job(seed: int) -> int:
        request = JobRequest(base_model_id=base.id, dataset_id=dataset.id, method="mpt-kl", seed=seed)
        return create_job(session, request=request)[0].id

    def active(job_id: int, *, heartbeat_ago: timedelta, evaluating: bool = False) -> int:
        assert claim_job(session, job_id=job_id, worker_id="w1", heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
        if evaluating:
            heartbeat(session, job_id=job_id, worker_id="w1", phase="evaluating", progress=0, status="evaluating")
        set_times(session, job_id, created_ago=LONG_AGO, heartbeat_ago=heartbeat_ago)
        return job_id

    queued_long_ago = new_job(1)
    set_times(session, queued_long_ago, created_ago=LONG_AGO)
    queued_just_now = new_job(2)
    set_times(session, queued_just_now, created_ago=JUST_NOW)
    running_stale = active(new_job(3), heartbeat_ago=LONG_AGO)
    evaluating_stale = active(new_job(4), heartbeat_ago=LONG_AGO, evaluating=True)
    running_live = active(new_job(5), heartbeat_ago=JUST_NOW)
    evaluating_live = active(new_job(6), heartbeat_ago=JUST_NOW, evaluating=True)
    # Claimed, but the worker died before its first heartbeat was written.
    running_never_beat = active(new_job(7), heartbeat_ago=LONG_AGO)
    session.execute(update(UpdateJob).where(UpdateJob.id == running_never_beat).values(heartbeat_at=None))
    session.commit()
    # A cancel request on a job whose worker died: a worker must still come and end it.
    cancel_pending = active(new_job(8), heartbeat_ago=LONG_AGO)
    request_cancel(session, job_id=cancel_pending)
    failed = active(new_job(9), heartbeat_ago=LONG_AGO)
    fail_job(session, job_id=failed, error="boom")
    cancelled = active(new_job(10), heartbeat_ago=LONG_AGO)
    cancel_job_finished(session, job_id=cancelled)
    cancelled_while_queued = new_job(11)
    request_cancel(session, job_id=cancelled_while_queued)
    set_times(session, cancelled_while_queued, created_ago=LONG_AGO)
    statuses = {job.id: job.status for job in session.query(UpdateJob)}
    assert statuses[evaluating_stale] == statuses[evaluating_live] == JobStatus.EVALUATING
    assert statuses[failed] == JobStatus.FAILED and statuses[cancelled_while_queued] == JobStatus.CANCELLED

    needing = jobs_needing_dispatch(session, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S, queued_grace_s=GRACE_S)
    assert needing == [queued_long_ago, running_stale, evaluating_stale, running_never_beat, cancel_pending]
    assert not {queued_just_now, running_live, evaluating_live, failed, cancelled, cancelled_while_queued} & set(
        needing
    )


def test_the_timeouts_decide_what_is_stale(session):
    dataset = ready_dataset(session)
    base = uploaded_model(session)
    queued = create_job(session, request=JobRequest(base_model_id=base.id, dataset_id=dataset.id, method="mpt-kl"))[0]
    running = create_job(
        session, request=JobRequest(base_model_id=base.id, dataset_id=dataset.id, method="mpt-kl", seed=1)
    )[0]
    claim_job(session, job_id=running.id, worker_id="w1", heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
    set_times(session, queued.id, created_ago=timedelta(seconds=300))
    set_times(session, running.id, created_ago=timedelta(seconds=300), heartbeat_ago=timedelta(seconds=300))
    # 300 s is past a 60 s limit and well within a 3600 s one, for either rule.
    assert jobs_needing_dispatch(session, heartbeat_timeout_s=60, queued_grace_s=60) == [queued.id, running.id]
    assert jobs_needing_dispatch(session, heartbeat_timeout_s=3600, queued_grace_s=60) == [queued.id]
    assert jobs_needing_dispatch(session, heartbeat_timeout_s=60, queued_grace_s=3600) == [running.id]
    assert jobs_needing_dispatch(session, heartbeat_timeout_s=3600, queued_grace_s=3600) == []


def test_a_job_is_stale_only_once_strictly_older_than_the_limit(session, monkeypatch):
    # A frozen clock puts rows exactly at the limit, to the microsecond.
    import db.updates.lifecycle as lifecycle

    now = utcnow().replace(microsecond=500_000)
    monkeypatch.setattr(lifecycle, "utcnow", lambda: now)
    dataset = ready_dataset(session)
    base = uploaded_model(session)

    def job(seed: int) -> int:
        return create_job(
            session, request=JobRequest(base_model_id=base.id, dataset_id=dataset.id, method="mpt-kl", seed=seed)
        )[0].id

    at_limit = timedelta(seconds=HEARTBEAT_TIMEOUT_S)
    past_limit = at_limit + timedelta(microseconds=1)
    queued_at, queued_past = job(1), job(2)
    for job_id, age in (
        (queued_at, timedelta(seconds=GRACE_S)),
        (queued_past, timedelta(seconds=GRACE_S, microseconds=1)),
    ):
        session.execute(update(UpdateJob).where(UpdateJob.id == job_id).values(created_at=now - age))
    running_at, running_past = job(3), job(4)
    for job_id, age in ((running_at, at_limit), (running_past, past_limit)):
        claim_job(session, job_id=job_id, worker_id="w1", heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
        session.execute(
            update(UpdateJob).where(UpdateJob.id == job_id).values(created_at=now - LONG_AGO, heartbeat_at=now - age)
        )
    session.commit()

    needing = jobs_needing_dispatch(session, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S, queued_grace_s=GRACE_S)
    assert needing == [queued_past, running_past]
    # The claim draws the same line: a heartbeat exactly at the limit is still alive.
    assert claim_job(session, job_id=running_at, worker_id="w2", heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S) is None
    taken = claim_job(session, job_id=running_past, worker_id="w2", heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
    assert (taken.worker_id, taken.attempts) == ("w2", 2)
