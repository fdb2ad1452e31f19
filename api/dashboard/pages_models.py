"""The overview, a model version's page and its promotion (a confirmation page, then a form POST)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from api.dashboard.charts import Series, line_chart, percent
from api.dashboard.pages_updates import sweep_panel
from api.dashboard.site import render_page, router
from api.deps import ADMIN, AdminToken, SessionDep
from api.errors import service_error_response
from api.model_versions.schemas import GateVerdict
from api.schemas import RowId
from contracts.flips import FlipSummary
from db.errors import ServiceError
from db.flips.models import FlipReport, ReportRole
from db.flips.service import VersionFigures, find_report, version_figures
from db.model_versions.gate import promotion_blocker
from db.model_versions.models import ModelVersion
from db.model_versions.service import get_model, get_production, lineage, list_families, list_models, promote_model
from db.tokens.service import actor
from db.updates.models import UpdateJob
from db.updates.submission import count_jobs_by_status, list_jobs

Figure = Callable[[FlipSummary], float | None]
# The scalar figures a model page compares: (label, the model's figure in a flip summary, the
# predecessor's figure where the summary holds one, lower is better).
COMPARED: tuple[tuple[str, Figure, Figure | None, bool], ...] = (
    ("Accuracy, all samples", lambda s: s.scopes.all.new_accuracy, lambda s: s.scopes.all.old_accuracy, False),
    (
        "Accuracy, old classes",
        lambda s: s.scopes.old_classes.new_accuracy,
        lambda s: s.scopes.old_classes.old_accuracy,
        False,
    ),
    ("NFR, old classes", lambda s: s.scopes.old_classes.nfr, None, True),
    ("NFR, all samples", lambda s: s.scopes.all.nfr, None, True),
    ("Relative NFR, old classes", lambda s: s.scopes.old_classes.relative_nfr, None, True),
    ("PFR, all samples", lambda s: s.scopes.all.pfr, None, False),
)


@router.get("", response_class=HTMLResponse)
def overview(request: Request, session: SessionDep) -> HTMLResponse:
    """Families with their production version, recent jobs, recent versions."""
    jobs = list_jobs(session, page=1, page_size=25)
    versions = list_models(session, page=1, page_size=20)
    results = {
        job.id: get_model(session, model_id=job.result_model_id)
        for job in jobs.items
        if job.result_model_id is not None
    }
    return render_page(
        request,
        "overview.html",
        families=list_families(session),
        jobs=jobs,
        results=results,
        versions=versions,
        counts=count_jobs_by_status(session),
    )


@dataclass
class ChainEntry:
    """A version of a model page's lineage, its report against its parent and its figures."""

    model: ModelVersion
    report: FlipReport | None
    figures: VersionFigures | None

    @property
    def accuracy(self) -> float | None:
        return self.figures.accuracy if self.figures else None

    @property
    def measured_on(self) -> str | None:
        return self.figures.describe() if self.figures else None


@router.get("/models/{model_id}", response_class=HTMLResponse)
def model_page(model_id: RowId, request: Request, session: SessionDep) -> HTMLResponse:
    """A version against its predecessor, its lineage, gate verdict and promotion."""
    model = get_model(session, model_id=model_id)
    versions = list(reversed(lineage(session, model_id=model_id)))  # oldest first
    figures = version_figures(session, versions)
    chain: list[ChainEntry] = []
    for version in versions:
        report = (
            find_report(session, model_id=version.id, baseline_model_id=version.parent_id)
            if version.parent_id is not None
            else None
        )
        chain.append(ChainEntry(model=version, report=report, figures=figures.get(version.id)))
    report = chain[-1].report
    reference = (
        find_report(session, model_id=model.id, baseline_model_id=model.parent_id, role=ReportRole.REFERENCE)
        if report is not None and model.parent_id is not None
        else None
    )
    summary = report.summary if report else None
    reference_summary = reference.summary if reference else None
    rows = [
        {
            "label": label,
            # Relative NFR is a ratio, every other figure a percentage.
            "ratio": label.startswith("Relative NFR"),
            "predecessor": of_predecessor(summary) if summary is not None and of_predecessor else None,
            "model": of_model(summary) if summary is not None else None,
            "reference": of_model(reference_summary) if reference_summary is not None else None,
            "lower_is_better": lower_is_better,
        }
        for label, of_model, of_predecessor, lower_is_better in COMPARED
    ]
    # Each version's x label carries its class count: accuracies over 5 and 10 classes are not
    # the same quantity, and the chart must not let one line pretend they are.
    positions: dict[float, str] = {
        index: f"v{entry.model.version} ({len(entry.model.classes)} cl.)" for index, entry in enumerate(chain)
    }
    accuracy_lines = [
        Series(
            "accuracy on the version's own classes (x label: how many)",
            [(i, e.accuracy) for i, e in enumerate(chain)],
        ),
        Series(
            "accuracy on the predecessor's classes",
            [(i, e.report.summary.scopes.old_classes.new_accuracy if e.report else None) for i, e in enumerate(chain)],
            dashed=True,
        ),
    ]
    nfr_lines = [
        Series("NFR, old classes", [(i, e.report.nfr_old_classes if e.report else None) for i, e in enumerate(chain)]),
        Series(
            "NFR, all samples",
            [(i, e.report.nfr_all if e.report else None) for i, e in enumerate(chain)],
            dashed=True,
        ),
    ]
    family_versions = list_models(session, family=model.family, page=1, page_size=100).items
    return render_page(
        request,
        "model.html",
        model=model,
        chain=chain,
        own=chain[-1],
        report=report,
        reference=reference,
        rows=rows,
        others=[other for other in family_versions if other.id != model.id],
        accuracy_chart=line_chart(
            accuracy_lines,
            label="accuracy per version (each on its own classes; the x label gives how many)",
            x_labels=positions,
            y_format=lambda v: percent(v, 0),
            empty="no version with a report yet",
        ),
        nfr_chart=line_chart(
            nfr_lines,
            label="negative flip rate per version",
            x_labels=positions,
            y_format=lambda v: percent(v, 1),
            y_floor=0,
            empty="no version with a report yet",
        ),
        needs_force=needs_force(model),
        # Every key of the verdict's schema, so that verdicts stored before a rule existed render too.
        verdict={key: None for key in GateVerdict.model_fields} | model.gate_verdict if model.gate_verdict else None,
        sweep=sweep_panel(session, session.get(UpdateJob, model.job_id) if model.job_id is not None else None),
    )


def needs_force(model: ModelVersion) -> bool:
    """Whether promoting this version overrides its gate (and so needs a reason)."""
    return promotion_blocker(model) is not None


# ---- promotion: a confirmation page, then a plain form POST ------------------------------------


def _promotion_context(
    session: Session, model: ModelVersion, *, force: bool, reason: str, errors: dict[str, str]
) -> dict:
    production = get_production(session, family=model.family)
    return {
        "model": model,
        "production": production if production is not None and production.id != model.id else None,
        "force": force,
        "reason": reason,
        "needs_force": needs_force(model),
        "errors": errors,
    }


@router.get("/models/{model_id}/promote", response_class=HTMLResponse, dependencies=[ADMIN])
def promote_confirm(
    model_id: RowId,
    request: Request,
    session: SessionDep,
    force: bool = Query(False),
    reason: str = Query("", max_length=2000),
) -> HTMLResponse:
    """What promoting this version would do, and the button that does it."""
    model = get_model(session, model_id=model_id)
    errors = {}
    if force and not reason.strip():
        errors["reason"] = "a forced promotion needs a reason: it is recorded with the promotion"
    return render_page(
        request,
        "promote.html",
        **_promotion_context(session, model, force=force, reason=reason, errors=errors),
    )


@router.post("/models/{model_id}/promote", response_class=HTMLResponse)
def promote_confirmed(
    model_id: RowId,
    request: Request,
    session: SessionDep,
    token: AdminToken,
    force: bool = Form(False),
    reason: str = Form("", max_length=2000),
) -> Response:  # the confirmation page again with the refusal (HTMLResponse), or a RedirectResponse
    """Promote after the confirmation (admin scope); a refusal is shown next to its field."""
    try:
        promote_model(session, model_id=model_id, promoted_by=actor(token=token), force=force, reason=reason or None)
    except ServiceError as error:
        session.rollback()
        model = get_model(session, model_id=model_id)
        field = "reason" if error.loc[-1:] == ("reason",) else "form"
        context = _promotion_context(session, model, force=force, reason=reason, errors={field: error.message})
        return render_page(request, "promote.html", status_code=service_error_response(error).status_code, **context)
    return RedirectResponse(f"/dashboard/models/{model_id}", status_code=303)
