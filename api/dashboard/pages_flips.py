"""Flip reports: a model against its predecessor and any two versions compared."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal
from urllib.parse import urlencode

from fastapi import Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.comparisons.views import start_comparison
from api.dashboard.charts import BarGroup, bar_chart
from api.dashboard.site import render_page, router
from api.deps import PaginationDep, SessionDep
from api.errors import service_error_response
from api.schemas import RowId
from contracts.flips import Transition
from db.comparisons.models import ComparisonStatus
from db.comparisons.service import comparison_for_report
from db.errors import NotFound, ServiceError
from db.flips.models import FlipKind, ReportRole
from db.flips.service import find_report, list_samples
from db.model_versions.service import get_model, list_models

# Cells of a transition matrix are shaded in this many steps (CSS classes heat-0 .. heat-8, so
# that no inline style is needed).
HEAT_STEPS = 8


def transition_matrices(transitions: Sequence[Transition]) -> dict[str, dict]:
    """One matrix per flip kind: {(old prediction, new prediction): {count, intrusion, heat}} with
    the busiest cell of that kind, so that negative and positive flips are never added up."""
    matrices: dict[str, dict] = {}
    for kind in ("negative", "positive"):
        cells: dict[tuple[int, int], dict] = {}
        for row in transitions:
            if row.kind.value != kind:
                continue
            cell = cells.setdefault((row.old_prediction, row.new_prediction), {"count": 0, "intrusion": False})
            cell["count"] += row.count
            cell["intrusion"] = cell["intrusion"] or row.intrusion
        busiest = max((cell["count"] for cell in cells.values()), default=0)
        for cell in cells.values():
            cell["heat"] = round(HEAT_STEPS * cell["count"] / busiest) if busiest else 0
        matrices[kind] = {"cells": cells, "busiest": busiest, "total": sum(c["count"] for c in cells.values())}
    return matrices


@router.get("/models/{model_id}/flips", response_class=HTMLResponse)
def flips_page(
    model_id: RowId,
    request: Request,
    session: SessionDep,
    pagination: PaginationDep,
    against: RowId | None = Query(None),
    kind: Literal["", "negative", "positive"] = Query(""),
    label: str = Query("", pattern=r"^\d*$"),
    intrusion: bool = Query(False),
) -> Response:  # the report (HTMLResponse), or a RedirectResponse to the compare page
    """The regression report: headline figures, per-class NFR, transitions, flipped samples."""
    model = get_model(session, model_id=model_id)
    baseline_id = against if against is not None else model.parent_id
    if baseline_id is None:
        raise NotFound(
            f"model {model_id} is a first version: it has no predecessor to compare with", loc=("path", "model_id")
        )
    baseline = get_model(session, model_id=baseline_id, loc=("query", "against"))
    report = find_report(session, model_id=model_id, baseline_model_id=baseline_id)
    if report is None:
        # No update job evaluated this pair: the compare view computes it.
        return RedirectResponse(f"/dashboard/compare?{urlencode({'model': model_id, 'against': baseline_id})}", 303)
    reference = find_report(session, model_id=model_id, baseline_model_id=baseline_id, role=ReportRole.REFERENCE)
    summary = report.summary
    classes = report.classes
    label_index = int(label) if label and int(label) < len(classes) else None
    page = list_samples(
        session,
        report_id=report.id,
        kind=FlipKind(kind) if kind else None,
        label=label_index,
        intrusion=True if intrusion else None,
        page=pagination.page,
        page_size=pagination.page_size,
    )
    reference_nfr = {row.index: row.nfr for row in reference.summary.per_class} if reference else {}
    groups = [
        BarGroup(label=row.name, values=[row.nfr, reference_nfr.get(row.index)] if reference else [row.nfr])
        for row in summary.per_class
        if not row.is_new
    ]
    series_names = (
        [model.method or "this model", "independent retrain"] if reference else [model.method or "this model"]
    )
    matrices = transition_matrices(summary.transitions)
    model_neg = summary.scopes.all.negative_flips
    reference_neg = reference.summary.scopes.all.negative_flips if reference else None
    filters = {
        "against": against,
        "kind": kind or None,
        "label": label or None,
        "intrusion": "true" if intrusion else None,
    }
    return render_page(
        request,
        "flips.html",
        model=model,
        baseline=baseline,
        report=report,
        reference=reference,
        summary=summary,
        classes=classes,
        k_old=report.k_old,
        per_class_chart=bar_chart(groups, series_names=series_names, label="negative flip rate per old class"),
        matrices=matrices,
        comparison=comparison_for_report(session, report_id=report.id),
        model_neg=model_neg,
        reference_neg=reference_neg,
        avoided=None if reference_neg is None else reference_neg - model_neg,
        page=page,
        pages=max(1, -(-page.total // page.page_size)),
        kind=kind,
        label=label_index,
        intrusion=intrusion,
        filters={k: v for k, v in filters.items() if v is not None},
        csv_query={k: v for k, v in {**filters, "format": "csv"}.items() if v is not None},
    )


# ---- comparing any two versions ---------------------------------------------------------------


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    session: SessionDep,
    model: RowId | None = Query(None),
    against: RowId | None = Query(None),
    retry: bool = Query(False),
) -> Response:  # the compare page (HTMLResponse), or a RedirectResponse to the stored report
    """Pick two versions; their report when it is stored, else the computation's progress
    (the page reloads itself until the light worker has stored it)."""
    models = list_models(session, page=1, page_size=500).items
    context: dict = {"models": models, "model_id": model, "against_id": against, "comparison": None, "errors": {}}
    if model is None or against is None:
        return render_page(request, "compare.html", **context)
    if find_report(session, model_id=model, baseline_model_id=against) is not None:
        return RedirectResponse(f"/dashboard/models/{model}/flips?{urlencode({'against': against})}", 303)
    try:
        comparison = start_comparison(
            session,
            request.app.state.queue,
            model_id=model,
            baseline_model_id=against,
            model_loc=("query", "model"),
            retry_failed=retry,
        )
    except ServiceError as error:
        session.rollback()
        context["errors"] = {str(error.loc[-1]) if error.loc else "form": error.message}
        return render_page(request, "compare.html", status_code=service_error_response(error).status_code, **context)
    if comparison.status == ComparisonStatus.SUCCEEDED:
        return RedirectResponse(f"/dashboard/models/{model}/flips?{urlencode({'against': against})}", 303)
    context["comparison"] = comparison
    context["model"] = get_model(session, model_id=model)
    context["baseline"] = get_model(session, model_id=against)
    context["split_model"] = get_model(session, model_id=comparison.split_model_id)
    return render_page(request, "compare.html", **context)
