"""The gate: whether a trained version may replace its family's production version.

Its one home: the worker's completion records the verdict, promotion and the dashboard ask
what stops a promotion without force.
"""

from __future__ import annotations

from contracts.flips import FlipSummary
from contracts.jobs import Gate, GateVerdict
from contracts.selection import TOLERANCE
from db.model_versions.models import ModelStatus, ModelVersion


def evaluate_gate(gate: Gate, summary: FlipSummary | None, reference: FlipSummary | None = None) -> GateVerdict:
    """The gate's verdict on a model's report: {"passed", "reasons", the bounds and the figures checked}.

    `reference` is the independent retrain's report against the same baseline on the same
    (evaluation) split; the relative rules compare with it: accuracy at least the retrain's
    minus `max_accuracy_drop`, NFR on old classes at most `max_nfr_ratio` times the retrain's.
    """
    nfr = summary.nfr_old_classes if summary is not None else None
    accuracy = summary.accuracy if summary is not None else None
    reference_nfr = reference.nfr_old_classes if reference is not None else None
    reference_accuracy = reference.accuracy if reference is not None else None
    reasons: list[str] = []
    max_nfr = gate.max_nfr
    min_accuracy = gate.min_accuracy
    if max_nfr is not None:
        if nfr is None:
            reasons.append("max_nfr not checked: no predecessor to compare with")
        elif nfr > max_nfr:
            reasons.append(f"nfr_old_classes {nfr:.4f} > max_nfr {max_nfr}")
    if min_accuracy is not None:
        if accuracy is None:
            reasons.append("min_accuracy not checked: no evaluation report")
        elif accuracy < min_accuracy:
            reasons.append(f"accuracy {accuracy:.4f} < min_accuracy {min_accuracy}")
    accuracy_floor = nfr_ceiling = None
    if gate.max_accuracy_drop is not None:
        if accuracy is None or reference_accuracy is None:
            reasons.append("max_accuracy_drop not checked: no independent retrain to compare with")
        else:
            accuracy_floor = reference_accuracy - gate.max_accuracy_drop
            if accuracy < accuracy_floor - TOLERANCE:
                reasons.append(
                    f"accuracy {accuracy:.4f} < {accuracy_floor:.4f}: the independent retrain's "
                    f"{reference_accuracy:.4f} minus max_accuracy_drop {gate.max_accuracy_drop}"
                )
    if gate.max_nfr_ratio is not None:
        if nfr is None or reference_nfr is None:
            reasons.append("max_nfr_ratio not checked: no independent retrain to compare with")
        else:
            nfr_ceiling = gate.max_nfr_ratio * reference_nfr
            if nfr > nfr_ceiling + TOLERANCE:
                reasons.append(
                    f"nfr_old_classes {nfr:.4f} > {nfr_ceiling:.4f}: max_nfr_ratio {gate.max_nfr_ratio} "
                    f"x the independent retrain's {reference_nfr:.4f}"
                )
    failed = [reason for reason in reasons if "not checked" not in reason]
    return GateVerdict(
        passed=not failed,
        reasons=reasons,
        nfr_old_classes=nfr,
        accuracy=accuracy,
        max_nfr=max_nfr,
        min_accuracy=min_accuracy,
        max_accuracy_drop=gate.max_accuracy_drop,
        max_nfr_ratio=gate.max_nfr_ratio,
        reference_nfr_old_classes=reference_nfr,
        reference_accuracy=reference_accuracy,
        accuracy_floor=accuracy_floor,
        nfr_ceiling=nfr_ceiling,
    )


def promotion_blocker(model: ModelVersion) -> str | None:
    """Why promoting `model` needs force and a reason; None when the gate lets it through.

    Only candidates are promoted without force, and a trained one only if its gate passed
    (an uploaded model has no gate).
    """
    if model.status != ModelStatus.CANDIDATE:
        return f"model {model.id} is {model.status.value}, not a candidate"
    verdict = model.gate_verdict or {}
    if model.job_id is not None and not verdict.get("passed"):
        reasons = "; ".join(verdict.get("reasons", [])) or "no gate verdict"
        return f"model {model.id} did not pass its gate ({reasons})"
    return None
