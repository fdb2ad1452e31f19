"""Update job pages (progress, curves, a sweep's candidates) and the form that submits an update."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fastapi import Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.dashboard.charts import ScatterPoint, Series, line_chart, percent, scatter_chart
from api.dashboard.site import render_page, router
from api.deps import QueueDep, SessionDep, SettingsDep, SubmitToken
from api.errors import service_error_response
from api.schemas import RowId
from api.updates.schemas import UpdateCreate
from api.updates.views import submit_update
from contracts.methods import UpdateMethod
from contracts.model_file import HEAD_WEIGHT_KEYS
from contracts.selection import Figures, candidate_label, candidate_params
from db.datasets.service import list_datasets
from db.errors import ServiceError
from db.model_versions.service import get_model, list_models
from db.updates.models import ACTIVE_STATUSES, JobEvent, JobStatus, UpdateJob
from db.updates.submission import get_job, list_candidates, list_events


def candidate_labels(job: UpdateJob | None) -> list[str]:
    """The names of a sweeping job's candidates in grid order ('bias=1'), known before it ends."""
    if job is None or not job.sweep:
        return []
    return [candidate_label(params, list(job.sweep)) for params in candidate_params(job.sweep)]


def job_curve_charts(events: Iterable[JobEvent], job: UpdateJob | None = None) -> dict:
    """Per-epoch series of a job's events: one line per training phase, and per candidate of a sweep."""
    phases: dict[str, list[tuple[int, dict]]] = {}
    labels = candidate_labels(job)
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


def sweep_panel(session: Session, job: UpdateJob | None) -> dict | None:
    """A sweeping job's candidates, the choice among them and their accuracy-NFR chart; None without a sweep."""
    if job is None or not job.sweep:
        return None
    candidates = list_candidates(session, job_id=job.id)
    choice = job.choice or {}
    reference = choice.get("reference_validation") or {}
    points = []
    for candidate in candidates:
        figures = Figures.of_headline(candidate.validation)
        if figures is not None:
            role = "winner" if candidate.chosen else "candidate"
            points.append(ScatterPoint(candidate.label, figures.nfr, figures.accuracy, role))
    reference_figures = Figures.of_headline(reference)
    if reference_figures is not None:
        points.append(
            ScatterPoint("independent retrain", reference_figures.nfr, reference_figures.accuracy, role="reference")
        )
    return {
        "job": job,
        "candidates": candidates,
        "labels": candidate_labels(job),
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


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: RowId, request: Request, session: SessionDep) -> HTMLResponse:
    """One job: live progress, per-epoch curves, cancel, error."""
    job = get_job(session, job_id=job_id)
    return render_page(
        request,
        "job.html",
        job=job,
        curves=job_curve_charts(list_events(session, job_id=job_id), job),
        active=job.status in (JobStatus.QUEUED, *ACTIVE_STATUSES),
        result=get_model(session, model_id=job.result_model_id) if job.result_model_id else None,
        sweep=sweep_panel(session, job),
    )


@router.get("/jobs/{job_id}/curves", response_class=HTMLResponse)
def job_curves(job_id: RowId, request: Request, session: SessionDep) -> HTMLResponse:
    """The curves of a job page alone (the page's script refreshes them after each epoch)."""
    job = get_job(session, job_id=job_id)
    return render_page(request, "job_curves.html", curves=job_curve_charts(list_events(session, job_id=job_id), job))


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

    def value(name: str) -> int | float | str | None:
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
    if isinstance(classes, str):  # a text field: value() gives its text or None
        body["classes"] = [name.strip() for name in classes.split(",")]
    body["recipe"] = {key: value(f"recipe.{key}") for key in RECIPE_FIELDS}
    body["method_params"] = {key: value(f"method_params.{key}") for key in PARAM_FIELDS}
    body["gate"] = {key: value(f"gate.{key}") for key in GATE_FIELDS}
    body["gate"]["auto_promote"] = form.get("gate.auto_promote") == "true"
    for group in ("recipe", "method_params", "gate"):
        body[group] = {key: item for key, item in body[group].items() if item is not None}
    return {key: item for key, item in body.items() if item is not None}, errors


def _field_of(loc: Sequence[str | int]) -> str:
    """The form field an error's loc points at (`recipe.epochs`, `classes`, ...)."""
    parts = [str(part) for part in loc if part != "body"]
    if parts[:1] == ["classes"]:
        return "classes"
    return ".".join(parts) or "form"


def _update_form(
    request: Request, session: Session, *, values: dict, errors: dict[str, str], status_code: int = 200
) -> HTMLResponse:
    models = list_models(session, page=1, page_size=500).items
    datasets = list_datasets(session, page=1, page_size=500).items
    return render_page(
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
) -> HTMLResponse:
    """The form that submits an update job (the same validation as POST /updates)."""
    values = {
        "base_model_id": str(base) if base is not None else "",
        "dataset_id": str(dataset) if dataset is not None else "",
        "method": UpdateMethod.MPT_KL if base is not None else UpdateMethod.INDEPENDENT,
    }
    return _update_form(request, session, values=values, errors={})


@router.post("/updates/new", response_class=HTMLResponse)
async def submit_update_form(
    request: Request, session: SessionDep, queue: QueueDep, settings: SettingsDep, token: SubmitToken
) -> Response:  # the form again with its errors (HTMLResponse), or a RedirectResponse to the job
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
        job, _ = submit_update(session, queue, body, settings=settings, token=token)
    except ServiceError as error:
        session.rollback()
        status = service_error_response(error).status_code
        return _update_form(
            request, session, values=values, errors={_field_of(error.loc): error.message}, status_code=status
        )
    return RedirectResponse(f"/dashboard/jobs/{job.id}", status_code=303)
