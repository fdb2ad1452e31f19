"""/datasets: register data sets (inspected by a light worker) and read them back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi import APIRouter, Query, Response

from api.datasets.schemas import DatasetCreate, DatasetOut, DatasetSample, DatasetSamples
from api.deps import READ, SUBMIT, PaginationDep, QueueDep, SessionDep, SettingsDep
from api.errors import ApiError, error_responses
from api.schemas import Page, RowId
from api.storage import png_bytes, resolve_data_path
from db.datasets.models import Dataset, DatasetFormat, DatasetStatus
from db.datasets.service import create_dataset, get_dataset, list_datasets
from db.errors import InvalidInput, NotFound
from db.pagination import Page as RowPage
from db.settings import Settings

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=error_responses(401, 403))


# npz is one file; every other format is a folder (docs/ARCHITECTURE.md, data sets).
FILE_FORMATS = {DatasetFormat.NPZ}
# Images are upscaled (nearest neighbour) until their short side reaches this many pixels.
MIN_IMAGE_SIDE = 112


def check_format_fits(path: Path, data_format: DatasetFormat) -> None:
    """Refuse at once a uri of the wrong kind for its format (a folder given as npz, a file
    given as an image folder), instead of letting the worker fail on it later."""
    if data_format in FILE_FORMATS and not path.is_file():
        raise InvalidInput(f"format {data_format.value} needs a .npz file, but {path} is a folder", loc=("body", "uri"))
    if data_format not in FILE_FORMATS and not path.is_dir():
        raise InvalidInput(
            f"format {data_format.value} needs a folder, but {path} is a file"
            + (" (a .npz file: use format npz)" if path.suffix == ".npz" else ""),
            loc=("body", "uri"),
        )


@router.post(
    "", dependencies=[SUBMIT], status_code=202, response_model=DatasetOut, responses=error_responses(400, 409, 422)
)
def register_dataset(body: DatasetCreate, session: SessionDep, settings: SettingsDep, queue: QueueDep) -> Dataset:
    """Register a data set: it starts `pending` until a worker has read its classes and sizes."""
    path = resolve_data_path(body.uri, settings=settings, loc=("body", "uri"))
    check_format_fits(path, body.format)
    dataset = create_dataset(session, name=body.name, uri=str(path), format=body.format)
    queue.inspect_dataset(dataset.id)
    return dataset


@router.get("", dependencies=[READ], response_model=Page[DatasetOut])
def list_all(
    session: SessionDep,
    pagination: PaginationDep,
    status: DatasetStatus | None = Query(None, description="only data sets in this status"),
) -> RowPage[Dataset]:
    """Registered data sets, newest first."""
    return list_datasets(session, status=status, page=pagination.page, page_size=pagination.page_size)


@router.get("/{dataset_id}", dependencies=[READ], response_model=DatasetOut, responses=error_responses(404))
def read(dataset_id: RowId, session: SessionDep) -> Dataset:
    """One data set, with the classes and sizes the worker found."""
    return get_dataset(session, dataset_id=dataset_id)


def stored_samples(settings: Settings, dataset: Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    """The labels and images the worker stored at inspection, if any."""
    if dataset.samples_uri is None:
        return None
    path = settings.artifact_path(dataset.samples_uri)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as archive:
        return np.asarray(archive["labels"]), np.asarray(archive["images"])


@router.get("/{dataset_id}/samples", dependencies=[READ], response_model=DatasetSamples, responses=error_responses(404))
def list_samples(dataset_id: RowId, session: SessionDep, settings: SettingsDep) -> DatasetSamples:
    """A few test images per class, stored by the worker when it inspected the data set."""
    dataset = get_dataset(session, dataset_id=dataset_id)
    try:
        stored = stored_samples(settings, dataset)
    except Exception as error:  # a damaged file in the store
        raise ApiError(
            500,
            f"the data set's sample image file is corrupt ({type(error).__name__}: {error})",
            loc=("path", "dataset_id"),
            error_type="artifact_corrupt",
        ) from None
    classes = dataset.classes or []
    items = []
    if stored is not None:
        labels, _images = stored
        items = [
            DatasetSample(
                position=position,
                label=int(label),
                label_name=classes[int(label)] if int(label) < len(classes) else str(int(label)),
                image_url=f"/datasets/{dataset_id}/samples/{position}/image",
            )
            for position, label in enumerate(labels.tolist())
        ]
    return DatasetSamples(dataset_id=dataset_id, items=items)


@router.get(
    "/{dataset_id}/samples/{position}/image",
    dependencies=[READ],
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **error_responses(404)},
)
def sample_image(dataset_id: RowId, position: RowId, session: SessionDep, settings: SettingsDep) -> Response:
    """One stored sample image as a PNG, enlarged so that small images are visible."""
    dataset = get_dataset(session, dataset_id=dataset_id)
    try:
        stored = stored_samples(settings, dataset)
        if stored is None or position >= len(stored[0]):
            raise NotFound(f"data set {dataset_id} has no stored sample {position}", loc=("path", "position"))
        png = png_bytes(stored[1][position], min_side=MIN_IMAGE_SIDE)
    except NotFound:
        raise
    except Exception as error:  # a damaged file in the store: zip, npy header, shape or pixel errors
        raise ApiError(
            500,
            f"the data set's sample image file is corrupt ({type(error).__name__}: {error})",
            loc=("path", "position"),
            error_type="artifact_corrupt",
        ) from None
    return Response(png, media_type="image/png")
