"""complete_job stores what mpt.flips.flip_report produces, and the ledger reads back filtered."""

import pytest
from db_helpers import (
    model_result,
    ready_dataset,
    uploaded_model,
)

from contracts.jobs import Gate, JobRequest
from db.flips.models import FlipKind, ReportRole
from db.flips.service import find_report, get_sample, iter_samples, list_samples
from db.model_versions.models import ModelStatus
from db.updates.completion import complete_job
from db.updates.lifecycle import claim_job
from db.updates.submission import create_job

torch = pytest.importorskip("torch")
flips = pytest.importorskip("mpt.flips")


def engine_report():
    """A real flip report: 2 old classes, 2 new ones, a few flips of each kind."""
    labels = torch.tensor([0, 0, 1, 1, 2, 3, 0, 1])
    old = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 0, 0, 1, 1, 1]), 2).float() * 5
    new = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 1, 2, 3, 0, 3]), 4).float() * 5
    summary, ledger = flips.flip_report(
        labels=labels, old_logits=old, new_logits=new, classes=["a", "b", "c", "d"], k_old=2
    )
    return summary, ledger.rows()


def test_complete_job_stores_engine_report_and_ledger(session):
    dataset = ready_dataset(session)
    base = uploaded_model(session)
    job, _ = create_job(
        session,
        request=JobRequest(
            base_model_id=base.id,
            family=None,
            architecture=None,
            dataset_id=dataset.id,
            classes=None,
            method="mpt-kl",
            method_params={},
            recipe={},
            seed=0,
            gate=Gate(max_nfr=0.5, min_accuracy=None, auto_promote=True),
        ),
    )
    claim_job(session, job_id=job.id, worker_id="w1", heartbeat_timeout_s=60)
    summary, rows = engine_report()
    model = complete_job(
        session,
        job_id=job.id,
        model=model_result(),
        report=summary,
        ledger=rows,
        images_uri="/artifacts/flips/1.npz",
        reference_report=summary,
    )
    assert model.status == ModelStatus.PRODUCTION

    report = find_report(session, model_id=model.id, baseline_model_id=base.id)
    assert report.nfr_old_classes == pytest.approx(summary.scopes.old_classes.nfr)
    assert report.nfr_all == pytest.approx(summary.scopes.all.nfr)
    assert report.samples == 8 and report.k_old == 2
    assert find_report(session, model_id=model.id, baseline_model_id=base.id, role=ReportRole.REFERENCE) is not None

    everything = list_samples(session, report_id=report.id, page_size=100)
    assert everything.total == len(rows)
    negatives = list_samples(session, report_id=report.id, kind=FlipKind.NEGATIVE)
    assert negatives.total == summary.scopes.all.negative_flips
    intrusions = list_samples(session, report_id=report.id, intrusion=True)
    assert intrusions.total == summary.intrusion_flips
    assert all(row.new_prediction >= 2 for row in intrusions.items)
    label_zero = list_samples(session, report_id=report.id, label=0, page=1, page_size=1)
    assert label_zero.total == sum(1 for row in rows if row["label"] == 0)
    assert len(label_zero.items) == 1
    assert [row.sample_index for row in iter_samples(session, report_id=report.id)] == sorted(
        row["sample_index"] for row in rows
    )
    assert get_sample(session, report_id=report.id, sample_index=rows[0]["sample_index"])
