"""/models/{id}/flips: a version's regression report against a baseline, its ledger and images.

An update job stores the report of its version against its base. The report against any
other version is computed on demand (api/comparisons): a request for a pair with no stored
report answers 202 with the comparison to follow, and the report once a light worker stored it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from api.comparisons.schemas import ComparisonOut
from api.comparisons.views import pending_response, start_comparison
from api.deps import READ, PaginationDep, QueueDep, SessionDep, SettingsDep
from api.errors import ApiError, error_responses
from api.flips.schemas import FlipFigures, FlipReportOut, FlipSampleOut
from api.schemas import Page, RowId
from api.storage import png_bytes
from db.comparisons.models import ComparisonStatus
from db.errors import Conflict, InvalidInput, NotFound
from db.flips.models import FlipKind, FlipReport, FlipSample, ReportRole
from db.flips.service import find_report, get_sample, iter_samples, list_samples
from db.model_versions.service import get_model

router = APIRouter(prefix="/models/{model_id}/flips", tags=["flips"], responses=error_responses(401, 403))

AGAINST = Query(
    None,
    description="the baseline model id; default: the model's predecessor. A pair with no stored "
    "report is computed on demand: 202 with the comparison (Location: /comparisons/{id}) until "
    "a light worker has stored it.",
    examples=[1],
)
# Images are upscaled (nearest neighbour) until their short side reaches this many pixels.
MIN_IMAGE_SIDE = 224
CSV_COLUMNS = (
    "sample_index",
    "label",
    "label_name",
    "old_prediction",
    "old_prediction_name",
    "new_prediction",
    "new_prediction_name",
    "old_confidence",
    "new_confidence",
    "kind",
    "is_intrusion",
)


def _baseline_id(session: Session, *, model_id: int, against: int | None) -> int:
    """The baseline of a request: `against`, else the model's predecessor."""
    model = get_model(session, model_id=model_id)
    baseline = against if against is not None else model.parent_id
    if baseline is None:
        raise NotFound(
            f"model {model_id} is a first version with no predecessor: name the model to compare it against",
            loc=("query", "against"),
        )
    return baseline


def _report(session: Session, *, model_id: int, against: int | None) -> FlipReport:
    """The stored report of the model against `against` or its predecessor (404 if none)."""
    baseline = _baseline_id(session, model_id=model_id, against=against)
    report = find_report(session, model_id=model_id, baseline_model_id=baseline)
    if report is None:
        raise NotFound(
            f"no stored flip report of model {model_id} against model {baseline} yet",
            loc=("query", "against") if against is not None else ("path", "model_id"),
        )
    return report


def _label_index(label: str | None, classes: list[str]) -> int | None:
    """A class given by index or name, as an index into the report's classes."""
    if label is None:
        return None
    if label.isdigit() and int(label) < len(classes):
        return int(label)
    if label in classes:
        return classes.index(label)
    raise InvalidInput(f"unknown class {label!r}: give an index below {len(classes)} or a name", loc=("query", "label"))


def _sample_row(sample: FlipSample, classes: list[str], image_url: str | None) -> dict:
    """A ledger row with class names beside the indices."""
    return {
        "sample_index": sample.sample_index,
        "label": sample.label,
        "label_name": classes[sample.label],
        "old_prediction": sample.old_prediction,
        "old_prediction_name": classes[sample.old_prediction],
        "new_prediction": sample.new_prediction,
        "new_prediction_name": classes[sample.new_prediction],
        "old_confidence": sample.old_confidence,
        "new_confidence": sample.new_confidence,
        "kind": sample.kind.value,
        "is_intrusion": sample.is_intrusion,
        "image_url": image_url,
    }


def _image_url(request: Request, *, model_id: int, sample_index: int, against: int | None) -> str:
    """The path of a flipped sample's image, keeping the chosen baseline."""
    path = request.url_for("flip_image", model_id=model_id, sample_index=sample_index).path
    return f"{path}?against={against}" if against is not None else path


@router.get(
    "",
    dependencies=[READ],
    response_model=FlipReportOut,
    responses={
        200: {"content": {"text/csv": {}}},
        202: {"description": "no stored report yet: computing it (follow Location)", "model": ComparisonOut},
        **error_responses(404, 409, 422),
    },
)
def read_report(
    model_id: RowId,
    request: Request,
    session: SessionDep,
    queue: QueueDep,
    pagination: PaginationDep,
    against: RowId | None = AGAINST,
    kind: FlipKind | None = Query(None, description="only negative or positive flips"),
    label: str | None = Query(None, description="only samples of this true class (index or name)", examples=["boot"]),
    intrusion: bool | None = Query(None, description="only (or no) intrusion flips"),
    format: Literal["json", "csv"] = Query("json", description="`csv`: the whole filtered ledger"),
) -> FlipReportOut | Response:
    """The model's flip report against its predecessor (or `against`), with paginated flips.

    Both NFR scopes with their raw counts, relative NFR, PFR, BTC, BEC, accuracy overall / on
    old classes / on new classes, per-class rows and prediction transitions; the reference
    model's figures beside them under `reference`. A pair no update job evaluated is computed
    on demand: 202 with the comparison (follow `Location`) until the report is stored; 409 with
    the reason if computing it failed (POST /comparisons tries again).
    """
    baseline_id = _baseline_id(session, model_id=model_id, against=against)
    report = find_report(session, model_id=model_id, baseline_model_id=baseline_id)
    if report is None:
        comparison = start_comparison(
            session, queue, model_id=model_id, baseline_model_id=baseline_id, retry_failed=False
        )
        if comparison.status == ComparisonStatus.FAILED:
            raise Conflict(
                f"computing the report of model {model_id} against model {baseline_id} failed: "
                f"{comparison.error} (POST /comparisons tries again)",
                loc=("query", "against"),
            )
        if comparison.status != ComparisonStatus.SUCCEEDED or comparison.report_id is None:
            return pending_response(comparison)
        stored = session.get(FlipReport, comparison.report_id)
        if stored is None:  # removed since: compute it again
            raise NotFound(f"the report of comparison {comparison.id} is gone", loc=("query", "against"))
        report = stored
    label_index = _label_index(label, report.classes)
    filters: dict[str, Any] = dict(report_id=report.id, kind=kind, label=label_index, intrusion=intrusion)
    if format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for sample in iter_samples(session, **filters):
            writer.writerow(_sample_row(sample, report.classes, None))
        return Response(
            buffer.getvalue(),
            media_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="flips-model{model_id}-vs-{report.baseline_model_id}.csv"'
            },
        )
    reference = find_report(
        session, model_id=model_id, baseline_model_id=report.baseline_model_id, role=ReportRole.REFERENCE
    )
    page = list_samples(session, **filters, page=pagination.page, page_size=pagination.page_size)
    items = [
        FlipSampleOut.model_validate(
            _sample_row(
                sample,
                report.classes,
                _image_url(request, model_id=model_id, sample_index=sample.sample_index, against=against)
                if report.images_uri
                else None,
            )
        )
        for sample in page.items
    ]
    return FlipReportOut(
        report_id=report.id,
        model_id=model_id,
        baseline_model_id=report.baseline_model_id,
        split=report.split,
        k_old=report.k_old,
        classes=report.classes,
        figures=FlipFigures.from_summary(report.summary),
        reference=FlipFigures.from_summary(reference.summary) if reference else None,
        samples=Page[FlipSampleOut](items=items, total=page.total, page=page.page, page_size=page.page_size),
    )


def _stored_pixels(path: Path, *, sample_index: int) -> np.ndarray:
    """The (C, H, W) uint8 pixels of one sample from a report's image file."""
    with np.load(path, allow_pickle=False) as archive:
        positions = np.flatnonzero(archive["sample_index"] == sample_index)
        if positions.size == 0:
            raise NotFound(f"no image stored for sample {sample_index}", loc=("path", "sample_index"))
        pixels = np.asarray(archive["images"][positions[0]], dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[0] not in (1, 3):
        raise ValueError(f"stored images must be (C, H, W) with 1 or 3 channels, got {pixels.shape}")
    return pixels


@router.get(
    "/{sample_index}/image",
    dependencies=[READ],
    name="flip_image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **error_responses(404, 500)},
)
def read_image(
    model_id: RowId,
    sample_index: RowId,
    session: SessionDep,
    settings: SettingsDep,
    against: RowId | None = AGAINST,
) -> Response:
    """A flipped evaluation sample as a PNG, enlarged so that small images are visible."""
    report = _report(session, model_id=model_id, against=against)
    if get_sample(session, report_id=report.id, sample_index=sample_index) is None:
        raise NotFound(f"sample {sample_index} did not flip in this report", loc=("path", "sample_index"))
    if report.images_uri is None:
        raise NotFound("this report stored no images", loc=("path", "sample_index"))
    path = settings.artifact_path(report.images_uri)
    if not path.is_file():
        raise ApiError(
            404,
            "the report's image file is missing from the artifact store",
            loc=("path", "sample_index"),
            error_type="artifact_missing",
        )
    try:
        png = png_bytes(_stored_pixels(path, sample_index=sample_index), min_side=MIN_IMAGE_SIDE)
    except NotFound:
        raise
    except Exception as error:  # a damaged file in the store: zip, npy header, shape or pixel errors
        raise ApiError(
            500,
            f"the report's image file is corrupt ({type(error).__name__}: {error})",
            loc=("path", "sample_index"),
            error_type="artifact_corrupt",
        ) from None
    return Response(png, media_type="image/png")
