"""The gate (db/model_versions/gate.py): each rule at, below and above its bound, the first
version without a predecessor, what stops a promotion, and the record a forced one leaves.

The figures are dyadic fractions (0.125, 0.75, ...), exact in binary, so "at the bound" is
exactly at it.
"""

from __future__ import annotations

import pytest
from db_helpers import model_result, ready_dataset, uploaded_model

from contracts.flips import FlipScopes, FlipSummary, ScopeFigures
from contracts.jobs import Gate, JobRequest
from contracts.selection import TOLERANCE
from db.base import utcnow
from db.errors import Conflict, InvalidInput
from db.model_versions.gate import evaluate_gate, promotion_blocker
from db.model_versions.models import ModelStatus, ModelVersion
from db.model_versions.service import get_model, promote_model
from db.updates.completion import complete_job
from db.updates.lifecycle import claim_job
from db.updates.submission import create_job

ADMIN = "token 1 'admin'"
MAX_NFR = 0.125
MIN_ACCURACY = 0.75
NO_RELATIVE_RULE = {
    "max_accuracy_drop": None,
    "max_nfr_ratio": None,
    "reference_nfr_old_classes": None,
    "reference_accuracy": None,
    "accuracy_floor": None,
    "nfr_ceiling": None,
}


def summary(*, nfr_old: float, accuracy: float) -> FlipSummary:
    """A report whose old-classes NFR is `nfr_old` and whose overall accuracy is `accuracy`.

    The other scope carries different figures (an NFR of 0, an old-classes accuracy of 0.5),
    so a gate reading the wrong scope decides differently."""
    old_scope = ScopeFigures(
        samples=64,
        negative_flips=int(nfr_old * 64),
        positive_flips=0,
        old_correct=64,
        new_correct=32,
        nfr=nfr_old,
        pfr=0.0,
        relative_nfr=0.0,
        old_accuracy=1.0,
        new_accuracy=0.5,
    )
    all_scope = ScopeFigures(
        samples=128,
        negative_flips=0,
        positive_flips=0,
        old_correct=64,
        new_correct=int(accuracy * 128),
        nfr=0.0,
        pfr=0.0,
        relative_nfr=0.0,
        old_accuracy=0.5,
        new_accuracy=accuracy,
    )
    return FlipSummary(
        classes=("a", "b", "c", "d"),
        k_old=2,
        scopes=FlipScopes(all=all_scope, old_classes=old_scope),
        new_class_accuracy=0.25,
        new_class_samples=64,
        both_correct=0,
        both_wrong=0,
        btc=None,
        bec=None,
        intrusion_flips=0,
        per_class=(),
        transitions=(),
    )


# ---------------------------------------------------------------------------------------------
# evaluate_gate: every rule at, below and above its bound
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "nfr, passed",
    [(0.0625, True), (MAX_NFR, True), (0.1875, False)],
    ids=["below", "at-the-bound", "above"],
)
def test_max_nfr_passes_up_to_and_including_its_bound(nfr, passed):
    verdict = evaluate_gate(Gate(max_nfr=MAX_NFR), summary(nfr_old=nfr, accuracy=0.5))
    assert verdict == {
        "passed": passed,
        "reasons": [] if passed else [f"nfr_old_classes {nfr:.4f} > max_nfr {MAX_NFR}"],
        "nfr_old_classes": nfr,
        "accuracy": 0.5,
        "max_nfr": MAX_NFR,
        "min_accuracy": None,
        **NO_RELATIVE_RULE,
    }


@pytest.mark.parametrize(
    "accuracy, passed",
    [(0.625, False), (MIN_ACCURACY, True), (0.875, True)],
    ids=["below", "at-the-bound", "above"],
)
def test_min_accuracy_passes_from_its_bound_up(accuracy, passed):
    verdict = evaluate_gate(Gate(min_accuracy=MIN_ACCURACY), summary(nfr_old=0.5, accuracy=accuracy))
    assert verdict == {
        "passed": passed,
        "reasons": [] if passed else [f"accuracy {accuracy:.4f} < min_accuracy {MIN_ACCURACY}"],
        "nfr_old_classes": 0.5,
        "accuracy": accuracy,
        "max_nfr": None,
        "min_accuracy": MIN_ACCURACY,
        **NO_RELATIVE_RULE,
    }


def test_the_gate_reads_the_old_classes_nfr_and_the_overall_accuracy():
    # The old-classes NFR is over the bound while the all-samples NFR (0) is not, and the
    # overall accuracy clears the bound while the old-classes accuracy (0.5) does not.
    verdict = evaluate_gate(Gate(max_nfr=MAX_NFR, min_accuracy=MIN_ACCURACY), summary(nfr_old=0.25, accuracy=0.875))
    assert verdict["passed"] is False
    assert verdict["reasons"] == ["nfr_old_classes 0.2500 > max_nfr 0.125"]
    assert (verdict["nfr_old_classes"], verdict["accuracy"]) == (0.25, 0.875)


@pytest.mark.parametrize(
    "nfr, accuracy, reasons",
    [
        (MAX_NFR, MIN_ACCURACY, []),
        (0.25, MIN_ACCURACY, ["nfr_old_classes 0.2500 > max_nfr 0.125"]),
        (MAX_NFR, 0.5, ["accuracy 0.5000 < min_accuracy 0.75"]),
        (0.25, 0.5, ["nfr_old_classes 0.2500 > max_nfr 0.125", "accuracy 0.5000 < min_accuracy 0.75"]),
    ],
    ids=["both-at-their-bounds", "nfr-fails", "accuracy-fails", "both-fail"],
)
def test_both_rules_together_fail_when_either_fails(nfr, accuracy, reasons):
    verdict = evaluate_gate(Gate(max_nfr=MAX_NFR, min_accuracy=MIN_ACCURACY), summary(nfr_old=nfr, accuracy=accuracy))
    assert verdict["reasons"] == reasons
    assert verdict["passed"] is (not reasons)


def test_a_gate_without_rules_passes_anything_and_keeps_the_figures():
    verdict = evaluate_gate(Gate(), summary(nfr_old=1.0, accuracy=0.0))
    assert verdict == {
        "passed": True,
        "reasons": [],
        "nfr_old_classes": 1.0,
        "accuracy": 0.0,
        "max_nfr": None,
        "min_accuracy": None,
        **NO_RELATIVE_RULE,
    }


# ---------------------------------------------------------------------------------------------
# The relative rules: against the independent retrain's report on the same split
# ---------------------------------------------------------------------------------------------

# The retrain: overall accuracy 0.75, old-classes NFR 0.125 (its other scope differs, as above).
REFERENCE = summary(nfr_old=0.125, accuracy=0.75)


@pytest.mark.parametrize(
    "accuracy, passed",
    [(0.5, False), (0.625, True), (0.875, True)],
    ids=["below", "at-the-bound", "above"],
)
def test_max_accuracy_drop_passes_down_to_the_retrains_accuracy_minus_the_drop(accuracy, passed):
    verdict = evaluate_gate(Gate(max_accuracy_drop=0.125), summary(nfr_old=0.5, accuracy=accuracy), REFERENCE)
    assert verdict == {
        "passed": passed,
        "reasons": []
        if passed
        else [f"accuracy {accuracy:.4f} < 0.6250: the independent retrain's 0.7500 minus max_accuracy_drop 0.125"],
        "nfr_old_classes": 0.5,
        "accuracy": accuracy,
        "max_nfr": None,
        "min_accuracy": None,
        **NO_RELATIVE_RULE,
        "max_accuracy_drop": 0.125,
        "reference_nfr_old_classes": 0.125,
        "reference_accuracy": 0.75,
        "accuracy_floor": 0.625,
    }


@pytest.mark.parametrize(
    "nfr, passed",
    [(0.125, True), (0.25, True), (0.375, False)],
    ids=["below", "at-the-bound", "above"],
)
def test_max_nfr_ratio_passes_up_to_the_ratio_times_the_retrains_nfr(nfr, passed):
    verdict = evaluate_gate(Gate(max_nfr_ratio=2.0), summary(nfr_old=nfr, accuracy=0.5), REFERENCE)
    assert verdict == {
        "passed": passed,
        "reasons": []
        if passed
        else [f"nfr_old_classes {nfr:.4f} > 0.2500: max_nfr_ratio 2.0 x the independent retrain's 0.1250"],
        "nfr_old_classes": nfr,
        "accuracy": 0.5,
        "max_nfr": None,
        "min_accuracy": None,
        **NO_RELATIVE_RULE,
        "max_nfr_ratio": 2.0,
        "reference_nfr_old_classes": 0.125,
        "reference_accuracy": 0.75,
        "nfr_ceiling": 0.25,
    }


def test_the_relative_bounds_allow_float_rounding_and_nothing_more():
    # 0.1 * 3 is 0.30000000000000004 in floating point: a figure of 0.3 meets a ceiling of
    # 3 x 0.1, and one a millionth above it does not.
    reference = summary(nfr_old=0.1, accuracy=0.7)
    gate = Gate(max_nfr_ratio=3.0, max_accuracy_drop=0.1)
    assert evaluate_gate(gate, summary(nfr_old=0.3, accuracy=0.6), reference)["passed"] is True
    assert evaluate_gate(gate, summary(nfr_old=0.300001, accuracy=0.6), reference)["passed"] is False
    assert evaluate_gate(gate, summary(nfr_old=0.3, accuracy=0.599999), reference)["passed"] is False
    # Exactly at the edge of the slack (TOLERANCE = 1e-9) still passes.
    exact = summary(nfr_old=0.25, accuracy=0.75)
    edge = Gate(max_nfr_ratio=2.0, max_accuracy_drop=0.125)
    at_edge = summary(nfr_old=0.5 + TOLERANCE, accuracy=0.625 - TOLERANCE)
    assert evaluate_gate(edge, at_edge, exact)["reasons"] == []


@pytest.mark.parametrize("report", [summary(nfr_old=0.5, accuracy=0.5), None], ids=["no-retrain", "no-report"])
def test_the_relative_rules_without_a_retrain_are_noted_as_not_checked(report):
    verdict = evaluate_gate(Gate(max_accuracy_drop=0.0, max_nfr_ratio=0.0), report, None)
    assert verdict["passed"] is True
    assert verdict["reasons"] == [
        "max_accuracy_drop not checked: no independent retrain to compare with",
        "max_nfr_ratio not checked: no independent retrain to compare with",
    ]
    assert (verdict["accuracy_floor"], verdict["nfr_ceiling"]) == (None, None)


def test_every_rule_at_once_names_each_failure():
    gate = Gate(max_nfr=MAX_NFR, min_accuracy=MIN_ACCURACY, max_accuracy_drop=0.0, max_nfr_ratio=1.0)
    verdict = evaluate_gate(gate, summary(nfr_old=0.25, accuracy=0.5), REFERENCE)
    assert verdict["passed"] is False
    assert verdict["reasons"] == [
        "nfr_old_classes 0.2500 > max_nfr 0.125",
        "accuracy 0.5000 < min_accuracy 0.75",
        "accuracy 0.5000 < 0.7500: the independent retrain's 0.7500 minus max_accuracy_drop 0.0",
        "nfr_old_classes 0.2500 > 0.1250: max_nfr_ratio 1.0 x the independent retrain's 0.1250",
    ]


# ---------------------------------------------------------------------------------------------
# A first version: no predecessor, so no report to check
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gate, reasons",
    [
        (Gate(), []),
        (Gate(max_nfr=MAX_NFR), ["max_nfr not checked: no predecessor to compare with"]),
        (Gate(min_accuracy=MIN_ACCURACY), ["min_accuracy not checked: no evaluation report"]),
        (
            Gate(max_nfr=MAX_NFR, min_accuracy=MIN_ACCURACY),
            ["max_nfr not checked: no predecessor to compare with", "min_accuracy not checked: no evaluation report"],
        ),
    ],
    ids=["no-rules", "max-nfr", "min-accuracy", "both"],
)
def test_without_a_report_every_rule_is_noted_as_not_checked_and_the_gate_passes(gate, reasons):
    verdict = evaluate_gate(gate, None)
    assert verdict == {
        "passed": True,
        "reasons": reasons,
        "nfr_old_classes": None,
        "accuracy": None,
        "max_nfr": gate.max_nfr,
        "min_accuracy": gate.min_accuracy,
        **NO_RELATIVE_RULE,
    }


# ---------------------------------------------------------------------------------------------
# promotion_blocker
# ---------------------------------------------------------------------------------------------


def version(status: ModelStatus, *, job_id: int | None = 7, verdict: dict | None = None) -> ModelVersion:
    return ModelVersion(id=3, family="shoes", version=2, status=status, job_id=job_id, gate_verdict=verdict)


def test_a_trained_candidate_whose_gate_passed_needs_no_force():
    assert promotion_blocker(version(ModelStatus.CANDIDATE, verdict={"passed": True, "reasons": []})) is None
    # Rules that could not be checked do not block.
    noted = {"passed": True, "reasons": ["max_nfr not checked: no predecessor to compare with"]}
    assert promotion_blocker(version(ModelStatus.CANDIDATE, verdict=noted)) is None


def test_an_uploaded_candidate_has_no_gate_and_needs_no_force():
    assert promotion_blocker(version(ModelStatus.CANDIDATE, job_id=None, verdict=None)) is None


def test_a_trained_candidate_whose_gate_failed_is_blocked_with_the_gate_reasons():
    verdict = evaluate_gate(Gate(max_nfr=MAX_NFR, min_accuracy=MIN_ACCURACY), summary(nfr_old=0.25, accuracy=0.5))
    assert promotion_blocker(version(ModelStatus.CANDIDATE, verdict=verdict)) == (
        "model 3 did not pass its gate (nfr_old_classes 0.2500 > max_nfr 0.125; accuracy 0.5000 < min_accuracy 0.75)"
    )


@pytest.mark.parametrize("verdict", [None, {}, {"passed": False, "reasons": []}])
def test_a_trained_candidate_without_a_passing_verdict_is_blocked(verdict):
    assert promotion_blocker(version(ModelStatus.CANDIDATE, verdict=verdict)) == (
        "model 3 did not pass its gate (no gate verdict)"
    )


@pytest.mark.parametrize("status", [ModelStatus.REJECTED, ModelStatus.ARCHIVED, ModelStatus.PRODUCTION])
@pytest.mark.parametrize("job_id", [7, None], ids=["trained", "uploaded"])
def test_only_candidates_are_promoted_without_force(status, job_id):
    passed = {"passed": True, "reasons": []}
    assert promotion_blocker(version(status, job_id=job_id, verdict=passed)) == (
        f"model 3 is {status.value}, not a candidate"
    )


# ---------------------------------------------------------------------------------------------
# The gate at completion, and promotion (database, both backends)
# ---------------------------------------------------------------------------------------------


def completed(session, *, gate: Gate, report: FlipSummary | None, reference: FlipSummary | None = None):
    """An update of an uploaded base model, completed with `report`; (version, base)."""
    dataset = ready_dataset(session)
    base = uploaded_model(session)
    job, _ = create_job(
        session,
        request=JobRequest(base_model_id=base.id, dataset_id=dataset.id, method="mpt-kl", gate=gate),
    )
    claim_job(session, job_id=job.id, worker_id="w1", heartbeat_timeout_s=60)
    model = complete_job(
        session,
        job_id=job.id,
        model=model_result(),
        report=report,
        ledger=[],
        images_uri=None,
        reference_report=reference,
    )
    return model, base


@pytest.mark.parametrize(
    "nfr, accuracy, status",
    [
        (MAX_NFR, MIN_ACCURACY, ModelStatus.PRODUCTION),
        (0.1875, MIN_ACCURACY, ModelStatus.REJECTED),
        (MAX_NFR, 0.625, ModelStatus.REJECTED),
    ],
    ids=["at-both-bounds", "nfr-above", "accuracy-below"],
)
def test_completion_applies_the_gate_and_stores_its_verdict(session_factory, nfr, accuracy, status):
    gate = Gate(max_nfr=MAX_NFR, min_accuracy=MIN_ACCURACY, auto_promote=True)
    report = summary(nfr_old=nfr, accuracy=accuracy)
    with session_factory() as session:
        model, base = completed(session, gate=gate, report=report)
    with session_factory() as fresh:  # what was committed, read back
        stored = get_model(fresh, model_id=model.id)
        assert stored.status == status
        assert stored.gate_verdict == evaluate_gate(gate, report)
        expected_base = ModelStatus.ARCHIVED if status == ModelStatus.PRODUCTION else ModelStatus.PRODUCTION
        assert get_model(fresh, model_id=base.id).status == expected_base
        if status == ModelStatus.PRODUCTION:
            assert (stored.promotion_reason, stored.forced) == ("gate passed (auto_promote)", False)
            assert stored.promoted_by == "flipguard (automatic)"
        else:
            assert stored.promoted_at is None and stored.promotion_reason is None and stored.promoted_by is None


@pytest.mark.parametrize(
    "nfr, accuracy, status",
    [(0.25, 0.625, ModelStatus.PRODUCTION), (0.375, 0.625, ModelStatus.REJECTED), (0.25, 0.5, ModelStatus.REJECTED)],
    ids=["at-both-bounds", "nfr-above", "accuracy-below"],
)
def test_completion_judges_the_relative_rules_against_the_jobs_retrain(session_factory, nfr, accuracy, status):
    gate = Gate(max_accuracy_drop=0.125, max_nfr_ratio=2.0, auto_promote=True)
    report = summary(nfr_old=nfr, accuracy=accuracy)
    with session_factory() as session:
        model, _ = completed(session, gate=gate, report=report, reference=REFERENCE)
    with session_factory() as fresh:
        stored = get_model(fresh, model_id=model.id)
        assert stored.status == status
        assert stored.gate_verdict == evaluate_gate(gate, report, REFERENCE)
        assert (stored.gate_verdict["accuracy_floor"], stored.gate_verdict["nfr_ceiling"]) == (0.625, 0.25)


def test_a_passing_gate_without_auto_promote_leaves_a_candidate_that_promotes_without_force(session):
    model, base = completed(session, gate=Gate(max_nfr=MAX_NFR), report=summary(nfr_old=MAX_NFR, accuracy=0.5))
    assert model.status == ModelStatus.CANDIDATE and model.promoted_at is None
    assert get_model(session, model_id=base.id).status == ModelStatus.PRODUCTION
    assert promotion_blocker(model) is None
    promoted = promote_model(session, model_id=model.id, promoted_by=ADMIN)
    assert (promoted.status, promoted.forced, promoted.promotion_reason, promoted.promoted_by) == (
        ModelStatus.PRODUCTION,
        False,
        "gate passed",
        ADMIN,
    )
    assert get_model(session, model_id=base.id).status == ModelStatus.ARCHIVED


def test_a_rejected_version_is_promoted_only_by_force_with_a_reason_which_is_recorded(session_factory):
    gate = Gate(max_nfr=MAX_NFR, min_accuracy=MIN_ACCURACY, auto_promote=True)
    with session_factory() as session:
        model, base = completed(session, gate=gate, report=summary(nfr_old=0.25, accuracy=0.5))
        failed_verdict = model.gate_verdict
        assert model.status == ModelStatus.REJECTED

        with pytest.raises(Conflict) as refused:
            promote_model(session, model_id=model.id, promoted_by=ADMIN)
        assert refused.value.loc == ("path", "model_id")
        assert refused.value.message == (
            f"model {model.id} is rejected, not a candidate; promote it with force and a reason"
        )
        for reason in (None, "", "   "):
            with pytest.raises(InvalidInput) as no_reason:
                promote_model(session, model_id=model.id, promoted_by=ADMIN, force=True, reason=reason)
            assert no_reason.value.loc == ("body", "reason")

    with session_factory() as session:  # the refusals changed nothing
        assert get_model(session, model_id=model.id).status == ModelStatus.REJECTED
        assert get_model(session, model_id=base.id).status == ModelStatus.PRODUCTION

    with session_factory() as session:
        before = utcnow()
        promote_model(
            session, model_id=model.id, promoted_by=ADMIN, force=True, reason="  checkout needs the new classes today "
        )
        after = utcnow()

    with session_factory() as session:
        forced = get_model(session, model_id=model.id)
        assert forced.status == ModelStatus.PRODUCTION
        assert forced.forced is True
        assert forced.promotion_reason == "checkout needs the new classes today"
        assert forced.promoted_by == ADMIN
        assert before <= forced.promoted_at <= after
        # The verdict it was forced over stays on record beside the reason.
        assert forced.gate_verdict == failed_verdict and forced.gate_verdict["passed"] is False
        previous = get_model(session, model_id=base.id)
        assert previous.status == ModelStatus.ARCHIVED
        assert previous.promotion_reason == "first version of the family" and previous.forced is False
        assert previous.promoted_by == "flipguard (automatic)"


def test_a_candidate_whose_gate_failed_is_refused_with_the_reasons(session):
    # auto_promote off: a failing gate still rejects, so build the blocked candidate by hand.
    model, _ = completed(session, gate=Gate(max_nfr=MAX_NFR), report=summary(nfr_old=0.25, accuracy=0.5))
    model.status = ModelStatus.CANDIDATE
    session.commit()
    with pytest.raises(Conflict) as refused:
        promote_model(session, model_id=model.id, promoted_by=ADMIN)
    assert refused.value.message == (
        f"model {model.id} did not pass its gate (nfr_old_classes 0.2500 > max_nfr 0.125); "
        "promote it with force and a reason"
    )
    assert get_model(session, model_id=model.id).status == ModelStatus.CANDIDATE


def test_a_first_version_passes_a_gate_it_cannot_check(session):
    dataset = ready_dataset(session)
    gate = Gate(max_nfr=MAX_NFR, min_accuracy=MIN_ACCURACY, auto_promote=True)
    job, _ = create_job(
        session,
        request=JobRequest(
            family="fresh", architecture="small_cnn", dataset_id=dataset.id, method="independent", gate=gate
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
    assert model.status == ModelStatus.PRODUCTION and model.promoted_by == "flipguard (automatic)"
    assert model.gate_verdict["passed"] is True
    assert model.gate_verdict["reasons"] == [
        "max_nfr not checked: no predecessor to compare with",
        "min_accuracy not checked: no evaluation report",
    ]
