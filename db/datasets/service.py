"""Data set registration (API) and the inspection results (worker)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.base import rows_changed, utcnow
from db.datasets.models import Dataset, DatasetFormat, DatasetStatus
from db.errors import Conflict, NotFound
from db.pagination import Page, paginate


def get_dataset(session: Session, *, dataset_id: int, loc: tuple = ("path", "dataset_id")) -> Dataset:
    """The data set with this id; NotFound naming `loc` otherwise."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"data set {dataset_id} does not exist", loc=loc)
    return dataset


def list_datasets(
    session: Session, *, status: DatasetStatus | None = None, page: int = 1, page_size: int = 50
) -> Page[Dataset]:
    """Data sets, newest first, optionally of one status."""
    statement = select(Dataset).order_by(Dataset.id.desc())
    if status is not None:
        statement = statement.where(Dataset.status == status)
    return paginate(session, statement, page=page, page_size=page_size)


def create_dataset(session: Session, *, name: str, uri: str, format: DatasetFormat) -> Dataset:
    """Register a data set as `pending` (the worker inspects it); the name must be new."""
    dataset = Dataset(name=name, uri=uri, format=format, status=DatasetStatus.PENDING)
    session.add(dataset)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"a data set named {name!r} already exists", loc=("body", "name")) from None
    return dataset


def mark_dataset_ready(
    session: Session,
    *,
    dataset_id: int,
    classes: list[str],
    train_size: int,
    test_size: int,
    image_shape: list[int] | None,
    image_summary: dict | None = None,
    digest: str,
    samples_uri: str | None = None,
) -> Dataset:
    """Record what the worker found in the data set and make it usable by update jobs."""
    dataset = get_dataset(session, dataset_id=dataset_id)
    dataset.classes = list(classes)
    dataset.train_size = train_size
    dataset.test_size = test_size
    dataset.image_shape = list(image_shape) if image_shape is not None else None
    dataset.image_summary = image_summary
    dataset.digest = digest
    dataset.samples_uri = samples_uri
    dataset.status = DatasetStatus.READY
    dataset.error = None
    session.commit()
    return dataset


def mark_dataset_failed(session: Session, *, dataset_id: int, error: str) -> Dataset:
    """Record why the worker could not read the data set."""
    dataset = get_dataset(session, dataset_id=dataset_id)
    dataset.status = DatasetStatus.FAILED
    dataset.error = error
    session.commit()
    return dataset


def _inspection_due(*, now: datetime, timeout_s: float) -> ColumnElement[bool]:
    """Pending, and no delivery started within the timeout (none yet, or one presumed dead)."""
    return and_(
        Dataset.status == DatasetStatus.PENDING,
        or_(
            Dataset.inspect_started_at.is_(None),
            Dataset.inspect_started_at < now - timedelta(seconds=timeout_s),
        ),
    )


def claim_inspection(session: Session, *, dataset_id: int, timeout_s: float) -> Dataset | None:
    """Count one delivery of the inspection task before it starts reading; None if the data set
    is no longer pending or another delivery started less than `timeout_s` ago.

    One conditional UPDATE, so two deliveries cannot both claim it.
    """
    now = utcnow()
    claimed = rows_changed(
        session,
        update(Dataset)
        .where(Dataset.id == dataset_id, _inspection_due(now=now, timeout_s=timeout_s))
        .values(inspect_attempts=Dataset.inspect_attempts + 1, inspect_started_at=now),
    )
    session.commit()
    if claimed != 1:
        return None
    return session.get(Dataset, dataset_id, populate_existing=True)


def datasets_needing_inspection(session: Session, *, timeout_s: float, grace_s: float) -> list[int]:
    """Pending data sets no live delivery holds: never claimed for `grace_s` (a lost message),
    or claimed more than `timeout_s` ago (its worker died or hangs)."""
    now = utcnow()
    statement = select(Dataset.id).where(
        _inspection_due(now=now, timeout_s=timeout_s),
        or_(Dataset.inspect_started_at.is_not(None), Dataset.created_at < now - timedelta(seconds=grace_s)),
    )
    return list(session.scalars(statement.order_by(Dataset.id)))
