"""The job lifecycle the worker drives: claim, heartbeat, events, fail, cancel, complete."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from db_helpers import (
    flip_summary,
    model_result,
    ready_dataset,
    uploaded_model,
)
from sqlalchemy import update

from contracts.jobs import Gate, JobRequest
from db.base import utcnow
from db.errors import Conflict, InvalidInput, JobNotOwned
from db.model_versions.models import ModelStatus
from db.model_versions.service import get_model, list_models
from db.updates.completion import complete_job
from db.updates.lifecycle import cancel_job_finished, claim_job, fail_job, heartbeat, record_event
from db.updates.models import JobStatus, UpdateJob
from db.updates.submission import count_jobs_by_status, create_job, get_job, list_events, request_cancel

GATE = Gate(max_nfr=0.1, min_accuracy=None, auto_promote=True)


def queue_update(session, *, gate=GATE, key=None, request_hash=None, **overrides):
    dataset = ready_dataset(session)
    base = uploaded_model(session)
    fields = dict(
        base_model_id=base.id,
        family=None,
        architecture=None,
        dataset_id=dataset.id,
        classes=None,
        method="mpt-kl",
        method_params={"bias": 2.0},
        recipe={"epochs": 3},
        gate=gate,
        seed=0,
    )
    fields.update(overrides)
    job, created = create_job(session, request=JobRequest(**fields), idempotency_key=key, request_hash=request_hash)
    assert created
    return job, base


def test_create_job_takes_family_and_architecture_from_base(session):
    job, base = queue_update(session)
    assert (job.family, job.architecture, job.status, job.epochs) == (base.family, "small_cnn", JobStatus.QUEUED, 3)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"classes": ("a", "zebra")}, "classes"),
        ({"classes": ("c", "d")}, "classes"),  # drops the base's classes a and b
        ({"family": "other"}, "family"),
        ({"base_model_id": 999}, "base_model_id"),
        ({"dataset_id": 999}, "dataset_id"),
    ],
)
def test_create_job_names_the_bad_field(session, overrides, field):
    with pytest.raises(InvalidInput) as error:
        queue_update(session, **overrides)
    assert error.value.loc == ("body", field)


def test_first_version_needs_independent_method(session):
    dataset = ready_dataset(session)
    with pytest.raises(InvalidInput) as error:
        create_job(
            session,
            request=JobRequest(
                base_model_id=None,
                family="new",
                architecture="small_cnn",
                dataset_id=dataset.id,
                classes=None,
                method="mpt-kl",
                method_params={},
                recipe={},
                gate=Gate(),
                seed=0,
            ),
        )
    assert error.value.loc == ("body", "method")


def test_first_version_on_images_of_different_sizes_needs_an_image_size(session):
    dataset = ready_dataset(session, name="photos", image_shape=None)

    def first_version(recipe: dict):
        request = JobRequest(
            base_model_id=None,
            family="photos",
            architecture="small_cnn",
            dataset_id=dataset.id,
            classes=None,
            method="independent",
            method_params={},
            recipe=recipe,
            gate=Gate(),
            seed=0,
        )
        return create_job(session, request=request)

    with pytest.raises(InvalidInput, match="differ in size") as error:
        first_version({})
    assert error.value.loc == ("body", "recipe", "image_size")
    job, created = first_version({"image_size": 32})
    assert created and job.recipe == {"image_size": 32}


def test_idempotency_key_returns_first_job_and_refuses_other_body(session):
    job, base = queue_update(session, key="k1", request_hash="h1")
    again, created = create_job(
        session,
        request=JobRequest(
            base_model_id=base.id,
            family=None,
            architecture=None,
            dataset_id=job.dataset_id,
            classes=None,
            method="mpt-kl",
            method_params={},
            recipe={},
            gate=Gate(),
            seed=0,
        ),
        idempotency_key="k1",
        request_hash="h1",
    )
    assert (again.id, created) == (job.id, False)
    with pytest.raises(Conflict):
        create_job(
            session,
            request=JobRequest(
                base_model_id=base.id,
                family=None,
                architecture=None,
                dataset_id=job.dataset_id,
                classes=None,
                method="mpt-kl",
                method_params={},
                recipe={},
                gate=Gate(),
                seed=0,
            ),
            idempotency_key="k1",
            request_hash="h2",
        )


def test_claim_is_exclusive_under_a_race(session, session_factory):
    job, _ = queue_update(session)

    def claim(worker):
        with session_factory() as own:
            return claim_job(own, job_id=job.id, worker_id=worker, heartbeat_timeout_s=60)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(claim, [f"w{i}" for i in range(8)]))
    winners = [result for result in results if result is not None]
    assert len(winners) == 1
    assert winners[0].status == JobStatus.RUNNING and winners[0].attempts == 1
    assert winners[0].started_at is not None


def test_stale_job_is_taken_over_and_old_worker_loses_it(session):
    job, _ = queue_update(session)
    assert claim_job(session, job_id=job.id, worker_id="w1", heartbeat_timeout_s=60)
    assert claim_job(session, job_id=job.id, worker_id="w2", heartbeat_timeout_s=60) is None
    session.execute(
        update(UpdateJob).where(UpdateJob.id == job.id).values(heartbeat_at=utcnow() - timedelta(seconds=300))
    )
    session.commit()
    taken = claim_job(session, job_id=job.id, worker_id="w2", heartbeat_timeout_s=60)
    assert taken.worker_id == "w2" and taken.attempts == 2
    with pytest.raises(JobNotOwned):
        heartbeat(session, job_id=job.id, worker_id="w1", phase="training", progress=0.5)


def test_heartbeat_reports_cancellation_and_progress(session):
    job, _ = queue_update(session)
    claim_job(session, job_id=job.id, worker_id="w1", heartbeat_timeout_s=60)
    assert (
        heartbeat(session, job_id=job.id, worker_id="w1", phase="training", progress=0.25, epoch=1, epochs=3) is False
    )
    request_cancel(session, job_id=job.id)
    assert (
        heartbeat(session, job_id=job.id, worker_id="w1", phase="evaluating", progress=1.5, status=JobStatus.EVALUATING)
        is True
    )
    session.expire_all()
    stored = get_job(session, job_id=job.id)
    assert (stored.status, stored.progress, stored.epoch, stored.phase) == (JobStatus.EVALUATING, 1.0, 1, "evaluating")
    assert cancel_job_finished(session, job_id=job.id)
    assert get_job(session, job_id=job.id).status == JobStatus.CANCELLED
    assert list_models(session, family="shoes").total == 1  # nothing registered


def test_heartbeat_records_the_data_path_once_chosen(session):
    job, _ = queue_update(session)
    claim_job(session, job_id=job.id, worker_id="w1", heartbeat_timeout_s=60)
    heartbeat(session, job_id=job.id, worker_id="w1", phase="starting", progress=0.0)
    session.expire_all()
    assert get_job(session, job_id=job.id).data_path is None
    heartbeat(session, job_id=job.id, worker_id="w1", phase="training", progress=0.1, data_path="streaming")
    heartbeat(session, job_id=job.id, worker_id="w1", phase="training", progress=0.2)  # kept
    session.expire_all()
    assert get_job(session, job_id=job.id).data_path == "streaming"


def test_cancel_queued_is_immediate_and_terminal_is_conflict(session):
    job, _ = queue_update(session)
    assert request_cancel(session, job_id=job.id).status == JobStatus.CANCELLED
    assert claim_job(session, job_id=job.id, worker_id="w1", heartbeat_timeout_s=60) is None
    with pytest.raises(Conflict):
        request_cancel(session, job_id=job.id)


def test_events_and_failure(session):
    job, _ = queue_update(session)
    claim_job(session, job_id=job.id, worker_id="w1", heartbeat_timeout_s=60)
    record_event(session, job_id=job.id, phase="training", epoch=0, metrics={"train_loss": 2.0})
    record_event(session, job_id=job.id, phase="training", epoch=1, metrics={"train_loss": 1.0})
    assert [e.metrics["train_loss"] for e in list_events(session, job_id=job.id)] == [2.0, 1.0]
    assert fail_job(session, job_id=job.id, error="CUDA out of memory")
    assert fail_job(session, job_id=job.id, error="again") is False
    session.expire_all()
    failed = get_job(session, job_id=job.id)
    assert (failed.status, failed.error) == (JobStatus.FAILED, "CUDA out of memory")
    assert count_jobs_by_status(session)["failed"] == 1


def test_complete_job_promotes_when_gate_passes_and_is_idempotent(session):
    job, base = queue_update(session)
    claim_job(session, job_id=job.id, worker_id="w1", heartbeat_timeout_s=60)
    first = complete_job(
        session,
        job_id=job.id,
        model=model_result(),
        report=flip_summary(0.05, 0.9),
        ledger=[],
        images_uri=None,
        reference_report=flip_summary(0.2, 0.91),
    )
    again = complete_job(
        session,
        job_id=job.id,
        model=model_result(),
        report=flip_summary(0.05, 0.9),
        ledger=[],
        images_uri=None,
        reference_report=None,
    )
    assert again.id == first.id
    assert (first.version, first.parent_id, first.status) == (2, base.id, ModelStatus.PRODUCTION)
    assert first.gate_verdict["passed"] is True
    assert get_model(session, model_id=base.id).status == ModelStatus.ARCHIVED
    done = get_job(session, job_id=job.id)
    assert (done.status, done.result_model_id, done.progress) == (JobStatus.SUCCEEDED, first.id, 1.0)
    assert list_models(session, family="shoes").total == 2


def test_concurrent_completions_register_one_version(session, session_factory):
    job, _ = queue_update(session)
    claim_job(session, job_id=job.id, worker_id="w1", heartbeat_timeout_s=60)

    def complete(_):
        with session_factory() as own:
            return complete_job(
                own,
                job_id=job.id,
                model=model_result(),
                report=flip_summary(0.05, 0.9),
                ledger=[],
                images_uri=None,
                reference_report=None,
            ).id

    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(complete, range(4)))
    assert len(ids) == 1
    assert list_models(session, family="shoes").total == 2


def test_complete_job_rejects_when_gate_fails(session):
    job, base = queue_update(session)
    claim_job(session, job_id=job.id, worker_id="w1", heartbeat_timeout_s=60)
    model = complete_job(
        session,
        job_id=job.id,
        model=model_result(),
        report=flip_summary(0.3, 0.9),
        ledger=[],
        images_uri=None,
        reference_report=None,
    )
    assert model.status == ModelStatus.REJECTED
    assert "nfr_old_classes" in model.gate_verdict["reasons"][0]
    assert get_model(session, model_id=base.id).status == ModelStatus.PRODUCTION


def test_first_version_from_scratch(session):
    dataset = ready_dataset(session)
    job, _ = create_job(
        session,
        request=JobRequest(
            base_model_id=None,
            family="fresh",
            architecture="small_cnn",
            dataset_id=dataset.id,
            classes=("a", "b"),
            method="independent",
            method_params={},
            recipe={},
            seed=1,
            gate=Gate(max_nfr=0.1, min_accuracy=None, auto_promote=True),
        ),
    )
    claim_job(session, job_id=job.id, worker_id="w1", heartbeat_timeout_s=60)
    model = complete_job(
        session,
        job_id=job.id,
        model=model_result(("a", "b")),
        report=None,
        ledger=None,
        images_uri=None,
        reference_report=None,
    )
    assert (model.version, model.parent_id, model.status) == (1, None, ModelStatus.PRODUCTION)


def test_two_jobs_of_one_family_completing_together_get_distinct_versions(session, session_factory):
    job, base = queue_update(session)
    other, _ = create_job(
        session,
        request=JobRequest(
            base_model_id=base.id,
            family=None,
            architecture=None,
            dataset_id=job.dataset_id,
            classes=None,
            method="pct-kl",
            method_params={},
            recipe={},
            gate=Gate(),
            seed=1,
        ),
    )
    for queued in (job, other):
        claim_job(session, job_id=queued.id, worker_id="w1", heartbeat_timeout_s=60)

    def complete(job_id):
        with session_factory() as own:
            return complete_job(
                own,
                job_id=job_id,
                model=model_result(),
                report=flip_summary(0.0, 0.9),
                ledger=[],
                images_uri=None,
                reference_report=None,
            ).version

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(complete, [job.id, other.id])) == [2, 3]
