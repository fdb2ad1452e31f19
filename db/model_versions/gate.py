"""The gate: whether a trained version may replace its family's production version.

Its one home: the worker's completion records the verdict, promotion and the dashboard ask
what stops a promotion without force.
"""

from __future__ import annotations

from contracts.flips import FlipSummary
from contracts.jobs import Gate
from db.flips.service import summary_columns
from db.model_versions.models import ModelStatus, ModelVersion


def evaluate_gate(gate: Gate, summary: FlipSummary | None) -> dict:
    """The gate's verdict on a model's report: {"passed", "reasons", figures checked}."""
    figures = summary_columns(summary) if summary is not None else {}
    nfr = figures.get("nfr_old_classes")
    accuracy = figures.get("accuracy")
    reasons = []
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
    failed = [reason for reason in reasons if "not checked" not in reason]
    return {
        "passed": not failed,
        "reasons": reasons,
        "nfr_old_classes": nfr,
        "accuracy": accuracy,
        "max_nfr": max_nfr,
        "min_accuracy": min_accuracy,
    }


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
