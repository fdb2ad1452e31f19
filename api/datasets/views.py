"""/datasets: register data sets (inspected by a light worker) and read them back."""

from __future__ import annotations

from fastapi import APIRouter, Query

from api.datasets.schemas import DatasetCreate, DatasetOut
from api.deps import READ, SUBMIT, PaginationDep, QueueDep, SessionDep, SettingsDep
from api.errors import error_responses
from api.schemas import Page, RowId
from api.storage import resolve_data_path
from db.datasets.models import DatasetStatus
from db.datasets.service import create_dataset, get_dataset, list_datasets

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=error_responses(401, 403))


@router.post(
    "", dependencies=[SUBMIT], status_code=202, response_model=DatasetOut, responses=error_responses(400, 409, 422)
)
def register_dataset(body: DatasetCreate, session: SessionDep, settings: SettingsDep, queue: QueueDep):
    """Register a data set: it starts `pending` until a worker has read its classes and sizes."""
    path = resolve_data_path(body.uri, settings=settings, loc=("body", "uri"))
    dataset = create_dataset(session, name=body.name, uri=str(path), format=body.format)
    queue.inspect_dataset(dataset.id)
    return dataset


@router.get("", dependencies=[READ], response_model=Page[DatasetOut])
def list_all(
    session: SessionDep,
    pagination: PaginationDep,
    status: DatasetStatus | None = Query(None, description="only data sets in this status"),
):
    """Registered data sets, newest first."""
    return list_datasets(session, status=status, page=pagination.page, page_size=pagination.page_size)


@router.get("/{dataset_id}", dependencies=[READ], response_model=DatasetOut, responses=error_responses(404))
def read(dataset_id: RowId, session: SessionDep):
    """One data set, with the classes and sizes the worker found."""
    return get_dataset(session, dataset_id=dataset_id)
