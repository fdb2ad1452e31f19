"""Sweeping jobs in the database: defaults and refusals at submission, the candidates stored with
the winner's registration, and the gate's rules relative to the independent retrain."""

import pytest
from db_helpers import flip_summary, model_result
from test_update_jobs import queue_update

from contracts.jobs import Candidate, Gate, SweepResult
from contracts.selection import Figures, Selection, choose
from db.errors import InvalidInput
from db.model_versions.gate import evaluate_gate
from db.model_versions.models import ModelStatus
from db.model_versions.service import list_models
from db.updates.completion import complete_job
from db.updates.lifecycle import claim_job
from db.updates.submission import get_job, list_candidates


def test_an_mpt_job_without_b_gets_the_default_sweep(session):
    job, _ = queue_update(session, method_params={})
    assert job.sweep == {"bias": [0.0, 1.0, 2.0, 4.0]}
    assert job.selection == {"policy": "min_nfr", "max_accuracy_drop": 0.005}


@pytest.mark.parametrize("method, params", [("mpt-kl", {"bias": 4.0}), ("pct-kl", {}), ("mpt-kl-nobias", {})])
def test_a_job_that_sets_b_or_has_none_trains_one_model(session, method, params):
    job, _ = queue_update(session, method=method, method_params=params)
    assert (job.sweep, job.selection) == (None, None)


def test_an_explicit_sweep_and_selection_are_stored_resolved(session):
    job, _ = queue_update(
        session,
        method_params={"tau": 3.0},
        sweep={"bias": [0.0, 2.0]},
        selection=Selection("max_accuracy"),
    )
    assert job.sweep == {"bias": [0.0, 2.0]}
    assert job.selection == {"policy": "max_accuracy", "max_nfr_ratio": 1.0}


@pytest.mark.parametrize(
    "overrides, loc",
    [
        ({"sweep": {"bias": [0, 1, 2, 4], "tau": [1, 2, 3]}, "method_params": {}}, ("body", "sweep", "tau")),
        ({"sweep": {"bias": [0, 1]}, "method": "pct-kl", "method_params": {}}, ("body", "sweep", "bias")),
        ({"sweep": {"bias": [0, 1]}, "method_params": {"bias": 1.0}}, ("body", "sweep", "bias")),
        ({"selection": Selection()}, ("body", "selection")),  # bias fixed by queue_update
        ({"selection": Selection("min_nfr", max_nfr=0.1), "method_params": {}}, ("body", "selection", "max_nfr")),
        ({"method_params": {}, "recipe": {"validation_fraction": 0}}, ("body", "recipe", "validation_fraction")),
    ],
)
def test_sweep_refusals_name_the_field(session, overrides, loc):
    with pytest.raises(InvalidInput) as error:
        queue_update(session, **overrides)
    assert error.value.loc == loc


def sweep_result(figures: list[tuple[float, float]], reference: tuple[float, float]) -> SweepResult:
    candidates = tuple(
        Candidate(
            index=i,
            label=f"bias={b:g}",
            params={"bias": b},
            validation={"accuracy": accuracy, "nfr_old_classes": nfr},
            history=[{"epoch": 0, "val_accuracy": accuracy, "val_nfr": nfr}],
        )
        for i, (b, (accuracy, nfr)) in enumerate(zip([0.0, 1.0, 2.0, 4.0], figures, strict=False))
    )
    choice = choose(
        Selection().resolved(),
        [Figures(accuracy, nfr) for accuracy, nfr in figures],
        Figures(*reference),
        [c.label for c in candidates],
    )
    return SweepResult(
        candidates=candidates,
        choice=choice,
        reference_validation={"accuracy": reference[0], "nfr_old_classes": reference[1]},
    )


def test_completion_stores_every_candidate_and_registers_the_winner_alone(session):
    job, base = queue_update(session, method_params={})
    claim_job(session, job_id=job.id, worker_id="w1", heartbeat_timeout_s=60)
    result = sweep_result([(0.81, 0.05), (0.80, 0.02), (0.797, 0.01), (0.78, 0.005)], reference=(0.80, 0.04))
    assert result.choice.winner == 2
    version = complete_job(
        session,
        job_id=job.id,
        model=model_result(),
        report=flip_summary(0.02, 0.9),
        ledger=[],
        images_uri=None,
        reference_report=flip_summary(0.04, 0.9),
        sweep=result,
    )
    session.expire_all()
    candidates = list_candidates(session, job_id=job.id)
    assert [(c.index, c.label, c.chosen) for c in candidates] == [
        (0, "bias=0", False),
        (1, "bias=1", False),
        (2, "bias=2", True),
        (3, "bias=4", False),
    ]
    assert candidates[1].validation == {"accuracy": 0.80, "nfr_old_classes": 0.02}
    assert candidates[3].history == [{"epoch": 0, "val_accuracy": 0.78, "val_nfr": 0.005}]
    stored = get_job(session, job_id=job.id)
    assert stored.choice["winner"] == 2 and "lowest NFR" in stored.choice["explanation"]
    assert stored.choice["reference_validation"] == {"accuracy": 0.80, "nfr_old_classes": 0.04}
    assert stored.result_model_id == version.id
    assert [m.id for m in list_models(session, family="shoes").items] == [version.id, base.id]


def test_gate_relative_to_the_independent_retrain():
    gate = Gate(max_accuracy_drop=0.01, max_nfr_ratio=0.5)
    passed = evaluate_gate(gate, flip_summary(0.02, 0.895), flip_summary(0.04, 0.90))
    assert passed["passed"] and passed["reasons"] == []
    assert passed["accuracy_floor"] == pytest.approx(0.89) and passed["nfr_ceiling"] == pytest.approx(0.02)
    assert (passed["reference_accuracy"], passed["reference_nfr_old_classes"]) == (0.90, 0.04)
    failed = evaluate_gate(gate, flip_summary(0.03, 0.88), flip_summary(0.04, 0.90))
    assert not failed["passed"]
    assert any("minus max_accuracy_drop 0.01" in r for r in failed["reasons"])
    assert any("max_nfr_ratio 0.5 x the independent retrain's 0.0400" in r for r in failed["reasons"])
    # Without a retrain (a first version) the relative rules are noted, not failed.
    unchecked = evaluate_gate(gate, flip_summary(0.5, 0.1), None)
    assert unchecked["passed"] and len(unchecked["reasons"]) == 2
    assert all("not checked" in r for r in unchecked["reasons"])


def test_completion_applies_the_relative_gate_on_the_evaluation_reports(session):
    job, _ = queue_update(session, gate=Gate(max_nfr_ratio=0.5))
    claim_job(session, job_id=job.id, worker_id="w1", heartbeat_timeout_s=60)
    version = complete_job(
        session,
        job_id=job.id,
        model=model_result(),
        report=flip_summary(0.03, 0.9),
        ledger=[],
        images_uri=None,
        reference_report=flip_summary(0.04, 0.9),
    )
    assert version.status == ModelStatus.REJECTED
    assert version.gate_verdict["nfr_ceiling"] == pytest.approx(0.02)
