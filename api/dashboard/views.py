"""/dashboard: the internal MLOps pages, rendered on the server from the same db service
functions the REST routers call. Actions (promote, cancel) and live progress go through the
REST endpoints from small same-origin scripts (static/dashboard.js)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from api.comparisons.views import start_comparison
from api.dashboard.charts import BarGroup, ScatterPoint, Series, bar_chart, line_chart, percent, scatter_chart
from api.datasets.views import stored_samples as _dataset_samples
from api.deps import ADMIN, READ, SUBMIT, TOKEN_COOKIE, PaginationDep, QueueDep, SessionDep, SettingsDep
from api.errors import Unauthenticated, api_error_response, service_error_response
from api.model_versions.schemas import GateVerdict
from api.schemas import RowId
from api.security import check_same_origin
from api.updates.schemas import UpdateCreate
from api.updates.views import submit_update
from contracts.flips import FlipSummary, Transition
from contracts.methods import UpdateMethod
from contracts.model_file import HEAD_WEIGHT_KEYS
from contracts.selection import candidate_label, candidate_params
from db.comparisons.models import ComparisonStatus
from db.comparisons.service import comparison_for_report
from db.datasets.service import get_dataset, list_datasets
from db.errors import NotFound, ServiceError
from db.flips.models import FlipKind, FlipReport, ReportRole
from db.flips.service import VersionFigures, find_report, list_samples, version_figures
from db.model_versions.gate import promotion_blocker
from db.model_versions.models import ModelVersion
from db.model_versions.service import get_model, get_production, lineage, list_families, list_models, promote_model
from db.tokens.models import ApiToken, Scope
from db.tokens.service import authenticate
from db.updates.models import ACTIVE_STATUSES, JobStatus, UpdateJob
from db.updates.submission import count_jobs_by_status, get_job, list_candidates, list_events, list_jobs

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["pct"] = percent
# Relative NFR is a ratio (docs/METHOD.md), shown with three decimals on every page and in the CLI.
templates.env.filters["ratio"] = lambda value: "—" if value is None else f"{value:.3f}"
templates.env.filters["when"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"
templates.env.filters["combine_query"] = lambda base, **extra: urlencode({**base, **extra})
templates.env.globals["LIVE_STATUSES"] = ("queued", "running", "evaluating")

router = APIRouter(prefix="/dashboard", include_in_schema=False, dependencies=[READ])
# The login form is the one dashboard page open without a token.
login_router = APIRouter(prefix="/dashboard", include_in_schema=False)

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


def install_dashboard(app: FastAPI) -> None:
    """Add the dashboard's pages and its static files (CSS, JS) to the app."""
    app.include_router(login_router)
    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")

    @app.exception_handler(Unauthenticated)
    async def login_first(request: Request, error: Unauthenticated) -> JSONResponse | RedirectResponse:
        # A page opened without a (valid) cookie goes to the login form; the REST API answers 401.
        if request.method == "GET" and request.url.path.startswith("/dashboard/"):
            return RedirectResponse(f"/dashboard/login?{urlencode({'next': request.url.path})}", 303)
        if request.method == "GET" and request.url.path == "/dashboard":
            return RedirectResponse("/dashboard/login", 303)
        return api_error_response(error)

    @app.exception_handler(NotFound)
    async def not_found_page(request: Request, error: NotFound) -> HTMLResponse | JSONResponse:
        # Pages answer a missing row with an HTML page; the REST API keeps its JSON body.
        if request.url.path == "/dashboard" or request.url.path.startswith("/dashboard/"):
            return _page(request, "error.html", status_code=404, message=error.message)
        return service_error_response(error)


def _safe_next(target: str) -> str:
    """Where to go after logging in: a dashboard path only (no open redirect)."""
    return target if target.startswith("/dashboard") and "//" not in target else "/dashboard"


@login_router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = Query("/dashboard", max_length=2000)):
    """The form that stores an API token (with the `read` scope) in an HttpOnly cookie."""
    return _page(request, "login.html", next=_safe_next(next), message=None)


@login_router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: str = Form(max_length=200),
    next: str = Form("/dashboard", max_length=2000),
):
    """Check the token and keep it in a cookie that scripts cannot read and other sites never send."""
    check_same_origin(request, settings, required=False)  # no logging a victim in from another site
    row = authenticate(session, token=token.strip())
    if row is None or Scope.READ not in row.scopes:
        return _page(
            request,
            "login.html",
            status_code=401,
            next=_safe_next(next),
            message="unknown or revoked token, or one without the read scope",
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        TOKEN_COOKIE, token.strip(), httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )
    return response


@login_router.post("/logout")
def logout(request: Request, settings: SettingsDep):
    """Forget the token cookie."""
    check_same_origin(request, settings, required=False)
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(TOKEN_COOKIE, path="/")
    return response


def _page(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def _candidate_labels(job: UpdateJob | None) -> list[str]:
    """The names of a sweeping job's candidates in grid order ('bias=1'), known before it ends."""
    if job is None or not job.sweep:
        return []
    return [candidate_label(params, list(job.sweep)) for params in candidate_params(job.sweep)]


def _job_curves(events, job: UpdateJob | None = None) -> dict:
    """Per-epoch series of a job's events: one line per training phase, and per candidate of a sweep."""
    phases: dict[str, list[tuple[int, dict]]] = {}
    labels = _candidate_labels(job)
    for event in events:
        if event.epoch is None:
            continue
        metrics = event.metrics or {}
        # The worker records {"epoch", "students": [{train_loss, val_accuracy, val_nfr, lr}, ...]}:
        # one student, or a sweep's candidates in grid order.
        students = metrics.get("students") or [metrics]
        if event.phase == "sweep":
            for index, student in enumerate(students):
                name = labels[index] if index < len(labels) else f"candidate {index}"
                phases.setdefault(name, []).append((event.epoch, student))
        else:
            phases.setdefault(event.phase, []).append((event.epoch, students[0]))

    def lines(key: str) -> list[Series]:
        return [
            Series(
                name=phase,
                points=[(epoch, row.get(key)) for epoch, row in rows],
                dashed=phase == "reference" or phase.startswith("ensemble-"),
            )
            for phase, rows in phases.items()
        ]

    return {
        "loss": line_chart(
            lines("train_loss"),
            label="training loss per epoch",
            x_title="epoch",
            y_floor=0,
            empty="no finished epoch yet",
        ),
        "accuracy": line_chart(
            lines("val_accuracy"),
            label="validation accuracy per epoch",
            x_title="epoch",
            y_format=lambda v: percent(v, 0),
            empty="no finished epoch yet",
        ),
        "nfr": line_chart(
            lines("val_nfr"),
            label="validation NFR per epoch",
            x_title="epoch",
            y_format=lambda v: percent(v, 1),
            y_floor=0,
            empty="no NFR yet",
        ),
        "epochs": sum(len(rows) for rows in phases.values()),
    }


def _sweep_panel(session, job: UpdateJob | None) -> dict | None:
    """A sweeping job's candidates, the choice among them and their accuracy-NFR chart; None without a sweep."""
    if job is None or not job.sweep:
        return None
    candidates = list_candidates(session, job_id=job.id)
    choice = job.choice or {}
    reference = choice.get("reference_validation") or {}
    points = []
    for candidate in candidates:
        accuracy, nfr = candidate.validation.get("accuracy"), candidate.validation.get("nfr_old_classes")
        if accuracy is not None and nfr is not None:
            points.append(ScatterPoint(candidate.label, nfr, accuracy, "winner" if candidate.chosen else "candidate"))
    if reference.get("accuracy") is not None and reference.get("nfr_old_classes") is not None:
        points.append(
            ScatterPoint("independent retrain", reference["nfr_old_classes"], reference["accuracy"], role="reference")
        )
    return {
        "job": job,
        "candidates": candidates,
        "labels": _candidate_labels(job),
        "choice": choice,
        "reference": reference,
        "chart": scatter_chart(
            points,
            label="validation accuracy against validation NFR of every candidate",
            x_title="validation NFR, old classes",
            y_title="validation accuracy",
            x_format=lambda v: percent(v, 1),
            y_format=lambda v: percent(v, 1),
            empty="the candidates' figures appear when the sweep has finished",
        ),
    }


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


@router.get("", response_class=HTMLResponse)
def overview(request: Request, session: SessionDep):
    """Families with their production version, recent jobs, recent versions."""
    jobs = list_jobs(session, page=1, page_size=25)
    versions = list_models(session, page=1, page_size=20)
    results = {
        job.id: get_model(session, model_id=job.result_model_id)
        for job in jobs.items
        if job.result_model_id is not None
    }
    return _page(
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
def model_page(model_id: RowId, request: Request, session: SessionDep):
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
    return _page(
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
        sweep=_sweep_panel(session, session.get(UpdateJob, model.job_id) if model.job_id is not None else None),
    )


def needs_force(model) -> bool:
    """Whether promoting this version overrides its gate (and so needs a reason)."""
    return promotion_blocker(model) is not None


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: RowId, request: Request, session: SessionDep):
    """One job: live progress, per-epoch curves, cancel, error."""
    job = get_job(session, job_id=job_id)
    return _page(
        request,
        "job.html",
        job=job,
        curves=_job_curves(list_events(session, job_id=job_id), job),
        active=job.status in (JobStatus.QUEUED, *ACTIVE_STATUSES),
        result=get_model(session, model_id=job.result_model_id) if job.result_model_id else None,
        sweep=_sweep_panel(session, job),
    )


@router.get("/jobs/{job_id}/curves", response_class=HTMLResponse)
def job_curves(job_id: RowId, request: Request, session: SessionDep):
    """The curves of a job page alone (the page's script refreshes them after each epoch)."""
    job = get_job(session, job_id=job_id)
    return _page(request, "job_curves.html", curves=_job_curves(list_events(session, job_id=job_id), job))


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
):
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
    return _page(
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


# ---- promotion: a confirmation page, then a plain form POST ------------------------------------


def _promotion_context(session, model, *, force: bool, reason: str, errors: dict[str, str]) -> dict:
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
):
    """What promoting this version would do, and the button that does it."""
    model = get_model(session, model_id=model_id)
    errors = {}
    if force and not reason.strip():
        errors["reason"] = "a forced promotion needs a reason: it is recorded with the promotion"
    return _page(
        request,
        "promote.html",
        **_promotion_context(session, model, force=force, reason=reason, errors=errors),
    )


@router.post("/models/{model_id}/promote", response_class=HTMLResponse, dependencies=[ADMIN])
def promote_confirmed(
    model_id: RowId,
    request: Request,
    session: SessionDep,
    force: bool = Form(False),
    reason: str = Form("", max_length=2000),
):
    """Promote after the confirmation (admin scope); a refusal is shown next to its field."""
    try:
        promote_model(session, model_id=model_id, force=force, reason=reason or None)
    except ServiceError as error:
        session.rollback()
        model = get_model(session, model_id=model_id)
        field = "reason" if error.loc[-1:] == ("reason",) else "form"
        context = _promotion_context(session, model, force=force, reason=reason, errors={field: error.message})
        return _page(request, "promote.html", status_code=service_error_response(error).status_code, **context)
    return RedirectResponse(f"/dashboard/models/{model_id}", status_code=303)


# ---- data sets --------------------------------------------------------------------------------


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, session: SessionDep, pagination: PaginationDep):
    """Registered data sets with their status, error, classes and sizes."""
    page = list_datasets(session, page=pagination.page, page_size=pagination.page_size)
    return _page(request, "datasets.html", page=page, pages=max(1, -(-page.total // page.page_size)))


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_page(dataset_id: RowId, request: Request, session: SessionDep, settings: SettingsDep):
    """One data set: what the worker found, and a few sample images per class."""
    dataset = get_dataset(session, dataset_id=dataset_id)
    samples: dict[int, list[int]] = {}
    stored = _dataset_samples(settings, dataset)
    if stored is not None:
        for position, label in enumerate(stored[0].tolist()):
            samples.setdefault(int(label), []).append(position)
    jobs = [job for job in list_jobs(session, page=1, page_size=500).items if job.dataset_id == dataset.id]
    return _page(request, "dataset.html", dataset=dataset, samples=samples, jobs=jobs[:20])


# ---- submitting an update ---------------------------------------------------------------------

# The form's fields, named by their path in the request body (UpdateCreate).
RECIPE_FIELDS = ("epochs", "batch_size", "lr", "train_samples_per_class", "eval_samples_per_class")
PARAM_FIELDS = ("bias",)
GATE_FIELDS = ("max_nfr", "min_accuracy")


# Form fields holding whole numbers and numbers; every other field is text.
INTEGER_FIELDS = {"base_model_id", "dataset_id", "seed", *(f"recipe.{key}" for key in RECIPE_FIELDS if key != "lr")}
NUMBER_FIELDS = {
    "recipe.lr",
    *(f"method_params.{key}" for key in PARAM_FIELDS),
    *(f"gate.{key}" for key in GATE_FIELDS),
}


def _form_body(form: dict[str, str]) -> tuple[dict, dict[str, str]]:
    """The request body of the dashboard's form and the errors of fields that are not numbers.

    Empty fields are omitted (they take the API's defaults); numbers are parsed here, as a
    form sends text, so that the body is what a JSON client would send to POST /updates.
    """
    errors: dict[str, str] = {}

    def value(name: str):
        text = (form.get(name) or "").strip()
        if not text:
            return None
        try:
            if name in INTEGER_FIELDS:
                return int(text)
            if name in NUMBER_FIELDS:
                return float(text)
        except ValueError:
            errors[name] = "a whole number" if name in INTEGER_FIELDS else "a number"
            return None
        return text

    body: dict = {
        "base_model_id": value("base_model_id"),
        "family": value("family"),
        "architecture": value("architecture"),
        "dataset_id": value("dataset_id"),
        "method": value("method"),
        "seed": value("seed"),
    }
    classes = value("classes")
    if classes is not None:
        body["classes"] = [name.strip() for name in classes.split(",")]
    body["recipe"] = {key: value(f"recipe.{key}") for key in RECIPE_FIELDS}
    body["method_params"] = {key: value(f"method_params.{key}") for key in PARAM_FIELDS}
    body["gate"] = {key: value(f"gate.{key}") for key in GATE_FIELDS}
    body["gate"]["auto_promote"] = form.get("gate.auto_promote") == "true"
    for group in ("recipe", "method_params", "gate"):
        body[group] = {key: item for key, item in body[group].items() if item is not None}
    return {key: item for key, item in body.items() if item is not None}, errors


def _field_of(loc) -> str:
    """The form field an error's loc points at (`recipe.epochs`, `classes`, ...)."""
    parts = [str(part) for part in loc if part != "body"]
    if parts[:1] == ["classes"]:
        return "classes"
    return ".".join(parts) or "form"


def _update_form(request: Request, session, *, values: dict, errors: dict[str, str], status_code: int = 200):
    models = list_models(session, page=1, page_size=500).items
    datasets = list_datasets(session, page=1, page_size=500).items
    return _page(
        request,
        "update_form.html",
        status_code=status_code,
        values=values,
        errors=errors,
        models=models,
        datasets=datasets,
        methods=[method.value for method in UpdateMethod],
        architectures=list(HEAD_WEIGHT_KEYS),
        recipe_fields=RECIPE_FIELDS,
    )


@router.get("/updates/new", response_class=HTMLResponse)
def update_form(
    request: Request, session: SessionDep, base: RowId | None = Query(None), dataset: RowId | None = Query(None)
):
    """The form that submits an update job (the same validation as POST /updates)."""
    values = {
        "base_model_id": str(base) if base is not None else "",
        "dataset_id": str(dataset) if dataset is not None else "",
        "method": "mpt-kl" if base is not None else "independent",
    }
    return _update_form(request, session, values=values, errors={})


@router.post("/updates/new", response_class=HTMLResponse)
async def submit_update_form(
    request: Request, session: SessionDep, queue: QueueDep, token: Annotated[ApiToken | None, SUBMIT]
):
    """Validate the form exactly as POST /updates does; errors are shown next to their fields."""
    async with request.form(max_files=0, max_fields=40) as form:
        values = {key: item for key, item in form.items() if isinstance(item, str)}
    fields, errors = _form_body(values)
    try:
        body = UpdateCreate.model_validate(fields)
    except ValidationError as invalid:
        for detail in invalid.errors(include_url=False):
            errors.setdefault(_field_of(detail["loc"]), detail["msg"])
    if errors:
        return _update_form(request, session, values=values, errors=errors, status_code=422)
    try:
        job, _ = submit_update(session, queue, body, token=token)
    except ServiceError as error:
        session.rollback()
        status = service_error_response(error).status_code
        return _update_form(
            request, session, values=values, errors={_field_of(error.loc): error.message}, status_code=status
        )
    return RedirectResponse(f"/dashboard/jobs/{job.id}", status_code=303)


# ---- comparing any two versions ---------------------------------------------------------------


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    session: SessionDep,
    model: RowId | None = Query(None),
    against: RowId | None = Query(None),
    retry: bool = Query(False),
):
    """Pick two versions; their report when it is stored, else the computation's progress
    (the page reloads itself until the light worker has stored it)."""
    models = list_models(session, page=1, page_size=500).items
    context: dict = {"models": models, "model_id": model, "against_id": against, "comparison": None, "errors": {}}
    if model is None or against is None:
        return _page(request, "compare.html", **context)
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
        return _page(request, "compare.html", status_code=service_error_response(error).status_code, **context)
    if comparison.status == ComparisonStatus.SUCCEEDED:
        return RedirectResponse(f"/dashboard/models/{model}/flips?{urlencode({'against': against})}", 303)
    context["comparison"] = comparison
    context["model"] = get_model(session, model_id=model)
    context["baseline"] = get_model(session, model_id=against)
    context["split_model"] = get_model(session, model_id=comparison.split_model_id)
    return _page(request, "compare.html", **context)
