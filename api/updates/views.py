"""/updates: schedule update jobs (idempotently), follow them, cancel them."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from api.deps import READ, SUBMIT, PaginationDep, QueueDep, SessionDep, SettingsDep, SubmitToken
from api.errors import ApiError, error_responses
from api.queue import TaskQueue
from api.schemas import Page, RowId
from api.storage import checked_weights_response, read_model_metadata
from api.updates.schemas import UpdateCreate, UpdateDetail, UpdateOut
from db.datasets.models import Dataset
from db.errors import InvalidInput, ServiceError
from db.model_versions.models import ModelVersion
from db.pagination import Page as RowPage
from db.references.models import ReferenceModel
from db.settings import Settings
from db.tokens.models import ApiToken
from db.updates.models import JobStatus, UpdateJob
from db.updates.submission import create_job, get_job, list_candidates, list_events, list_jobs, request_cancel

router = APIRouter(prefix="/updates", tags=["updates"], responses=error_responses(401, 403))


def request_hash(body: UpdateCreate) -> str:
    """A digest of the parsed request, to tell a replay from a different request."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def scoped_idempotency_key(token: ApiToken | None, key: str | None) -> str | None:
    """The stored key: the client's key under its token's id, so that two tokens never share
    a key (with authentication off, all requests share one scope)."""
    if key is None:
        return None
    return f"{token.id if token is not None else '-'}:{key}"


def check_normalisation_fits(session: Session, body: UpdateCreate) -> None:
    """A recipe's mean and std must have one value per channel of the data set's images."""
    mean = body.recipe.mean
    dataset = session.get(Dataset, body.dataset_id)
    if mean is None or dataset is None or not dataset.image_shape:
        return  # create_job names a missing or unready data set
    channels = dataset.image_shape[0]
    if len(mean) != channels:
        raise InvalidInput(
            f"recipe.mean and recipe.std have {len(mean)} values "
            f"but data set {dataset.id} has {channels}-channel images",
            loc=("body", "recipe", "mean"),
        )


def base_image_size(settings: Settings, base: ModelVersion) -> tuple[int, ...] | None:
    """The base model's input size [H, W] from its file's metadata (the database does not store
    it), or None when the file cannot be read: the worker then names the problem."""
    try:
        return tuple(read_model_metadata(settings.artifact_path(base.artifact_uri), loc=()).image_size)
    except (OSError, ServiceError):
        return None


def check_image_size_kept(session: Session, settings: Settings, body: UpdateCreate) -> None:
    """An update keeps its base model's input size (docs/ARCHITECTURE.md, "Images"): a recipe's
    other image_size is refused here rather than by the worker."""
    wanted = body.recipe.image_size
    base = session.get(ModelVersion, body.base_model_id) if body.base_model_id is not None else None
    if wanted is None or base is None:
        return  # create_job names a missing base model
    size = base_image_size(settings, base)
    if size is None or size == (wanted, wanted):
        return
    shown = f"{size[0]}" if size[0] == size[1] else f"{size[0]}x{size[1]}"
    raise InvalidInput(
        f"an update keeps its base model's image size, {shown} px (model {base.id}); "
        f"recipe.image_size asks for {wanted}: leave it out",
        loc=("body", "recipe", "image_size"),
    )


@router.post(
    "",
    status_code=202,
    response_model=UpdateOut,
    responses={
        200: {"description": "a replay of an earlier request with the same Idempotency-Key", "model": UpdateOut},
        **error_responses(400, 409, 422),
    },
)
def submit(
    body: UpdateCreate,
    response: Response,
    session: SessionDep,
    queue: QueueDep,
    settings: SettingsDep,
    token: SubmitToken,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="repeat a request safely: the same key and body "
            "return the same job (200); the same key with another body is a 409. Keys are "
            "scoped to the API token: another token's key never matches",
        ),
    ] = None,
) -> UpdateJob:
    """Schedule a compatible retrain of a deployed model (or a first version from scratch)."""
    job, created = submit_update(session, queue, body, settings=settings, token=token, idempotency_key=idempotency_key)
    if not created:
        response.status_code = 200
    return job


def submit_update(
    session: Session,
    queue: TaskQueue,
    body: UpdateCreate,
    *,
    settings: Settings,
    token: ApiToken | None,
    idempotency_key: str | None = None,
) -> tuple[UpdateJob, bool]:
    """Validate and queue an update (the REST route and the dashboard's form both call this)."""
    check_normalisation_fits(session, body)
    check_image_size_kept(session, settings, body)
    job, created = create_job(
        session,
        request=body.to_job_request(),
        idempotency_key=scoped_idempotency_key(token, idempotency_key),
        request_hash=request_hash(body),
    )
    # Sent after the commit, so the worker finds the row. A replay of a still queued job
    # sends again in case the first send failed: claiming is atomic, extra deliveries are dropped.
    if created or job.status == JobStatus.QUEUED:
        queue.run_update(job.id)
    return job, created


@router.get("", dependencies=[READ], response_model=Page[UpdateOut])
def list_all(
    session: SessionDep,
    pagination: PaginationDep,
    status: JobStatus | None = Query(None, description="only jobs in this status"),
) -> RowPage[UpdateJob]:
    """Update jobs, newest first."""
    return list_jobs(session, status=status, page=pagination.page, page_size=pagination.page_size)


@router.get("/{job_id}", dependencies=[READ], response_model=UpdateDetail, responses=error_responses(404))
def read(job_id: RowId, session: SessionDep) -> UpdateDetail:
    """One job with its progress, per-epoch events and, for a sweep, its candidates."""
    job = get_job(session, job_id=job_id)
    return UpdateDetail.model_validate(
        {
            **UpdateOut.model_validate(job).model_dump(),
            "events": list_events(session, job_id=job_id),
            "candidates": list_candidates(session, job_id=job_id),
        }
    )


@router.get(
    "/{job_id}/reference/weights",
    dependencies=[READ],
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **error_responses(404, 500)},
)
def download_reference(job_id: RowId, session: SessionDep, settings: SettingsDep) -> FileResponse:
    """The safetensors weights of the independent reference the job trained (or reused from the
    cache): the model its flip report compares the update with, sha256 checked."""
    job = get_job(session, job_id=job_id)
    reference = session.get(ReferenceModel, job.reference_model_id) if job.reference_model_id is not None else None
    if reference is None:
        raise ApiError(
            404,
            f"update job {job_id} has no independent reference (a first version, or not trained yet)",
            loc=("path", "job_id"),
            error_type="not_found",
        )
    return checked_weights_response(
        settings.artifact_path(reference.artifact_uri),
        sha256=reference.sha256,
        filename=f"{job.family}-job{job_id}-reference.safetensors",
        what=f"the reference weights of update job {job_id}",
        loc=("path", "job_id"),
    )


@router.post("/{job_id}/cancel", dependencies=[SUBMIT], response_model=UpdateOut, responses=error_responses(404, 409))
def cancel(job_id: RowId, session: SessionDep) -> UpdateJob:
    """Cancel a job: a queued job is cancelled at once, a running one at its worker's next check."""
    return request_cancel(session, job_id=job_id)
