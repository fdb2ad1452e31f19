"""The data set pages."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from api.dashboard.site import render_page, router
from api.datasets.views import stored_samples as _dataset_samples
from api.deps import PaginationDep, SessionDep, SettingsDep
from api.schemas import RowId
from db.datasets.service import get_dataset, list_datasets
from db.updates.submission import list_jobs

# ---- data sets --------------------------------------------------------------------------------


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, session: SessionDep, pagination: PaginationDep) -> HTMLResponse:
    """Registered data sets with their status, error, classes and sizes."""
    page = list_datasets(session, page=pagination.page, page_size=pagination.page_size)
    return render_page(request, "datasets.html", page=page, pages=max(1, -(-page.total // page.page_size)))


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_page(dataset_id: RowId, request: Request, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    """One data set: what the worker found, and a few sample images per class."""
    dataset = get_dataset(session, dataset_id=dataset_id)
    samples: dict[int, list[int]] = {}
    stored = _dataset_samples(settings, dataset)
    if stored is not None:
        for position, label in enumerate(stored[0].tolist()):
            samples.setdefault(int(label), []).append(position)
    jobs = [job for job in list_jobs(session, page=1, page_size=500).items if job.dataset_id == dataset.id]
    return render_page(request, "dataset.html", dataset=dataset, samples=samples, jobs=jobs[:20])
