"""/dashboard: the internal MLOps pages, rendered on the server from the same db service
functions the REST routers call. Actions (promote, cancel) and live progress go through the
REST endpoints from small same-origin scripts (static/dashboard.js)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.dashboard.charts import BarGroup, ScatterPoint, Series, bar_chart, line_chart, percent, scatter_chart
from api.deps import READ, TOKEN_COOKIE, PaginationDep, SessionDep, SettingsDep
from api.errors import Unauthenticated, api_error_response, service_error_response
from api.model_versions.schemas import GateVerdict
from api.schemas import RowId
from api.security import check_same_origin
from contracts.flips import FlipSummary
from contracts.selection import candidate_label, candidate_params
from db.errors import NotFound
from db.flips.models import FlipKind, ReportRole
from db.flips.service import find_report, list_samples
from db.model_versions.gate import promotion_blocker
from db.model_versions.service import get_model, lineage, list_families, list_models
from db.tokens.models import Scope
from db.tokens.service import authenticate
from db.updates.models import ACTIVE_STATUSES, JobStatus, UpdateJob
from db.updates.submission import count_jobs_by_status, get_job, list_candidates, list_events, list_jobs

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["pct"] = percent
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


def _own_accuracy(chain: list[dict], index: int) -> float | None:
    """A version's accuracy on its classes: from its report, or for a version without one
    (a first or uploaded version) as the baseline of its successor's report."""
    report = chain[index]["report"]
    if report is not None:
        return report.accuracy
    if index + 1 < len(chain) and chain[index + 1]["report"] is not None:
        return chain[index + 1]["report"].summary.scopes.old_classes.old_accuracy
    return None


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


@router.get("/models/{model_id}", response_class=HTMLResponse)
def model_page(model_id: RowId, request: Request, session: SessionDep):
    """A version against its predecessor, its lineage, gate verdict and promotion."""
    model = get_model(session, model_id=model_id)
    chain = []
    for version in reversed(lineage(session, model_id=model_id)):  # oldest first
        report = (
            find_report(session, model_id=version.id, baseline_model_id=version.parent_id)
            if version.parent_id is not None
            else None
        )
        chain.append({"model": version, "report": report})
    for index, entry in enumerate(chain):
        entry["accuracy"] = _own_accuracy(chain, index)
    report = chain[-1]["report"]
    reference = (
        find_report(session, model_id=model.id, baseline_model_id=model.parent_id, role=ReportRole.REFERENCE)
        if report is not None
        else None
    )
    summary = report.summary if report else None
    reference_summary = reference.summary if reference else None
    rows = [
        {
            "label": label,
            "predecessor": of_predecessor(summary) if summary is not None and of_predecessor else None,
            "model": of_model(summary) if summary is not None else None,
            "reference": of_model(reference_summary) if reference_summary is not None else None,
            "lower_is_better": lower_is_better,
        }
        for label, of_model, of_predecessor, lower_is_better in COMPARED
    ]
    positions = {index: f"v{entry['model'].version}" for index, entry in enumerate(chain)}
    accuracy_lines = [
        Series("accuracy on its own classes", [(i, e["accuracy"]) for i, e in enumerate(chain)]),
        Series(
            "accuracy on the predecessor's classes",
            [
                (i, e["report"].summary.scopes.old_classes.new_accuracy if e["report"] else None)
                for i, e in enumerate(chain)
            ],
            dashed=True,
        ),
    ]
    nfr_lines = [
        Series(
            "NFR, old classes", [(i, e["report"].nfr_old_classes if e["report"] else None) for i, e in enumerate(chain)]
        ),
        Series(
            "NFR, all samples",
            [(i, e["report"].nfr_all if e["report"] else None) for i, e in enumerate(chain)],
            dashed=True,
        ),
    ]
    return _page(
        request,
        "model.html",
        model=model,
        chain=chain,
        report=report,
        reference=reference,
        rows=rows,
        accuracy_chart=line_chart(
            accuracy_lines,
            label="accuracy per version",
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
        needs_force=promotion_blocker(model) is not None,
        # Every key of the verdict's schema, so that verdicts stored before a rule existed render too.
        verdict={key: None for key in GateVerdict.model_fields} | model.gate_verdict if model.gate_verdict else None,
        sweep=_sweep_panel(session, session.get(UpdateJob, model.job_id) if model.job_id is not None else None),
    )


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
        raise NotFound(f"no stored flip report of model {model_id} against model {baseline_id}")
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
    # Transition matrix: old prediction (rows, the baseline's classes) -> new prediction.
    cells: dict[tuple[int, int], dict] = {}
    for row in summary.transitions:
        cell = cells.setdefault(
            (row.old_prediction, row.new_prediction), {"negative": 0, "positive": 0, "intrusion": False}
        )
        cell[row.kind.value] += row.count
        cell["intrusion"] = cell["intrusion"] or row.intrusion
    busiest = max((c["negative"] + c["positive"] for c in cells.values()), default=0)
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
        cells=cells,
        busiest=busiest,
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
