"""/models: register deployed models, list versions, download weights, lineage, promotion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from api.deps import READ, SUBMIT, AdminToken, PaginationDep, SessionDep, SettingsDep
from api.errors import ApiError, error_responses
from api.model_versions.schemas import (
    LineageEntry,
    ModelOut,
    ModelRegisterByUri,
    ModelRegisterForm,
    PromoteRequest,
    VersionFiguresOut,
)
from api.schemas import Page, RowId
from api.storage import (
    StoredFile,
    checked_weights_response,
    copy_data_file,
    read_model_metadata,
    resolve_data_path,
)
from api.uploads import receive_model_upload
from db.flips.service import VersionFigures, version_figures
from db.model_versions.models import ModelStatus, ModelVersion
from db.model_versions.service import (
    get_model,
    lineage,
    list_models,
    promote_model,
    register_uploaded_model,
)
from db.settings import Settings
from db.tokens.service import actor

SchemaT = TypeVar("SchemaT", bound=BaseModel)

router = APIRouter(prefix="/models", tags=["models"], responses=error_responses(401, 403))

REGISTER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "family"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "safetensors weights with flipguard.* metadata",
                        },
                        "family": ModelRegisterForm.model_json_schema()["properties"]["family"],
                    },
                }
            },
            "application/json": {
                "schema": ModelRegisterByUri.model_json_schema(),
                "example": {"family": "shoe-classifier", "uri": "/usr/share/datasets/models/shoes-v1.safetensors"},
            },
        },
    }
}


def _validated(schema: type[SchemaT], values: Mapping[str, object], *, source: str) -> SchemaT:
    """Validate a body by hand (this route reads JSON or a form), with FastAPI's error shape."""
    try:
        return schema.model_validate(values)
    except ValidationError as error:
        raise RequestValidationError(
            [{**detail, "loc": (source, *detail["loc"])} for detail in error.errors(include_url=False)]
        ) from None


def _register_file(
    session: Session, settings: Settings, stored: StoredFile, *, family: str, loc: tuple
) -> ModelVersion:
    """Validate a stored model file and register it; a file that fails is deleted again."""
    try:
        metadata = read_model_metadata(stored.path, loc=loc)
        return register_uploaded_model(
            session,
            family=family,
            architecture=metadata.architecture,
            classes=metadata.classes,
            artifact_uri=stored.uri,
            sha256=stored.sha256,
        )
    except Exception:
        stored.path.unlink(missing_ok=True)
        raise


@router.post(
    "",
    dependencies=[SUBMIT],
    status_code=201,
    response_model=ModelOut,
    openapi_extra=REGISTER_BODY,
    responses=error_responses(400, 409, 413, 422),
)
async def register_model(request: Request, session: SessionDep, settings: SettingsDep) -> ModelVersion:
    """Register a deployed model: a multipart upload (`file`, `family`) or JSON `{family, uri}`.

    The weights must be a safetensors file whose metadata holds `flipguard.arch`,
    `flipguard.classes` (a JSON list without duplicates), `flipguard.in_channels`,
    `flipguard.image_size`, `flipguard.mean` and `flipguard.std`. The first model of a
    family becomes version 1 in production; later ones are candidates.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes + 1_000_000:
        raise ApiError(
            413, f"request larger than {settings.max_upload_bytes} bytes", loc=("body", "file"), error_type="too_large"
        )
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        # Streamed into the artifact store, stopping at max_upload_bytes (api/uploads.py).
        fields, stored = (
            await receive_model_upload(request, settings=settings)
            if content_type.startswith("multipart/form-data")
            else (dict(await request.form(max_files=0, max_fields=10)), None)
        )
        loc = ("body", "file")
        try:
            family = _validated(ModelRegisterForm, fields, source="body").family
            if stored is None:
                raise RequestValidationError([{"loc": loc, "msg": "a safetensors file is required", "type": "missing"}])
        except Exception:
            if stored is not None:
                stored.path.unlink(missing_ok=True)
            raise
        return await run_in_threadpool(_register_file, session, settings, stored, family=family, loc=loc)
    try:
        payload = await request.json()
    except (ValueError, RecursionError):
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "send multipart/form-data or a JSON object", "type": "json_invalid"}]
        ) from None
    if not isinstance(payload, dict):
        raise RequestValidationError([{"loc": ("body",), "msg": "expected a JSON object", "type": "model_type"}])
    body = _validated(ModelRegisterByUri, payload, source="body")
    loc = ("body", "uri")
    source = resolve_data_path(body.uri, settings=settings, loc=loc)
    stored = await run_in_threadpool(copy_data_file, source, settings=settings, loc=loc)
    return await run_in_threadpool(_register_file, session, settings, stored, family=body.family, loc=loc)


def figures_out(figures: VersionFigures | None, model_id: int) -> VersionFiguresOut | None:
    """The API shape of a version's figures."""
    if figures is None:
        return None
    report_model = model_id if figures.measured_as == "model" else figures.other_model_id
    return VersionFiguresOut(
        accuracy=figures.accuracy,
        measured_on=figures.describe(),
        measured_as=figures.measured_as,
        report_model_id=report_model,
        baseline_model_id=figures.other_model_id if figures.measured_as == "model" else model_id,
        samples=figures.samples,
        classes=figures.classes,
        nfr_old_classes=figures.nfr_old_classes,
        nfr_all=figures.nfr_all,
        relative_nfr_old_classes=figures.relative_nfr_old_classes,
    )


def with_figures(session: Session, models: list[ModelVersion]) -> list[ModelOut]:
    """Versions with their headline figures (two queries for the whole list)."""
    figures = version_figures(session, models)
    return [
        ModelOut.model_validate(model).model_copy(update={"figures": figures_out(figures.get(model.id), model.id)})
        for model in models
    ]


@router.get("", dependencies=[READ], response_model=Page[ModelOut])
def list_all(
    session: SessionDep,
    pagination: PaginationDep,
    family: str | None = Query(None, examples=["shoe-classifier"]),
    status: ModelStatus | None = Query(None),
) -> Page[ModelOut]:
    """Model versions, newest first, filtered by family and status, each with its figures."""
    page = list_models(session, family=family, status=status, page=pagination.page, page_size=pagination.page_size)
    return Page[ModelOut](
        items=with_figures(session, page.items), total=page.total, page=page.page, page_size=page.page_size
    )


@router.get("/{model_id}", dependencies=[READ], response_model=ModelOut, responses=error_responses(404))
def read(model_id: RowId, session: SessionDep) -> ModelOut:
    """One model version, with its accuracy and NFR and what they were measured on."""
    return with_figures(session, [get_model(session, model_id=model_id)])[0]


@router.get(
    "/{model_id}/weights",
    dependencies=[READ],
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **error_responses(404, 500)},
)
def download_weights(model_id: RowId, session: SessionDep, settings: SettingsDep) -> FileResponse:
    """The version's safetensors file, after checking that it still matches its sha256."""
    model = get_model(session, model_id=model_id)
    return checked_weights_response(
        settings.artifact_path(model.artifact_uri),
        sha256=model.sha256,
        filename=f"{model.family}-v{model.version}.safetensors",
        what=f"the weights of model {model_id}",
        loc=("path", "model_id"),
    )


@router.get(
    "/{model_id}/lineage", dependencies=[READ], response_model=list[LineageEntry], responses=error_responses(404)
)
def read_lineage(model_id: RowId, session: SessionDep) -> list[LineageEntry]:
    """The version and its predecessors, newest first, each with its figures against its parent."""
    chain = lineage(session, model_id=model_id)
    figures = version_figures(session, chain)
    entries = []
    for model in chain:
        measured = figures.get(model.id)
        entries.append(
            LineageEntry(
                id=model.id,
                version=model.version,
                status=model.status,
                architecture=model.architecture,
                method=model.method,
                created_at=model.created_at,
                classes=len(model.classes),
                accuracy=measured.accuracy if measured else None,
                accuracy_measured_on=measured.describe() if measured else None,
                nfr_old_classes=measured.nfr_old_classes if measured else None,
                nfr_all=measured.nfr_all if measured else None,
                relative_nfr_old_classes=measured.relative_nfr_old_classes if measured else None,
            )
        )
    return entries


@router.post("/{model_id}/promote", response_model=ModelOut, responses=error_responses(400, 404, 409, 422))
def promote(model_id: RowId, body: PromoteRequest, session: SessionDep, token: AdminToken) -> ModelVersion:
    """Make a candidate the family's production version (the previous one is archived).

    Without `force`, the candidate's gate must have passed. A forced promotion (also the way
    to roll back to an archived version) needs a `reason`, which is recorded.
    """
    return promote_model(
        session, model_id=model_id, promoted_by=actor(token=token), force=body.force, reason=body.reason
    )
