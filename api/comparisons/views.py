"""/comparisons: the flip report of any model version against any other, computed on demand.

A pair that an update job evaluated (a version and its base) is answered from its stored
report at once; any other pair is queued for a light worker, which evaluates both versions on
the evaluation split of the newer one's update job and stores the report and its ledger. A
second request finds the first (one row per ordered pair), so the report is computed once.
"""

from __future__ import annotations

from typing import TypedDict, Unpack

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.comparisons.schemas import ComparisonCreate, ComparisonOut
from api.deps import READ, SUBMIT, QueueDep, SessionDep
from api.errors import Loc, error_responses
from api.queue import TaskQueue
from api.schemas import RowId
from db.comparisons.models import Comparison, ComparisonStatus
from db.comparisons.service import get_comparison, request_comparison

router = APIRouter(prefix="/comparisons", tags=["flips"], responses=error_responses(401, 403))

RETRY_AFTER_S = "2"


def comparison_out(comparison: Comparison) -> ComparisonOut:
    return ComparisonOut.model_validate(
        {
            **{column: getattr(comparison, column) for column in ComparisonOut.model_fields if column != "report_url"},
            "report_url": f"/models/{comparison.model_id}/flips?against={comparison.baseline_model_id}",
        }
    )


class ComparisonOptions(TypedDict, total=False):
    """What start_comparison passes on to request_comparison (its defaults apply when left out)."""

    model_loc: Loc
    baseline_loc: Loc
    retry_failed: bool


def start_comparison(
    session: Session, queue: TaskQueue, *, model_id: int, baseline_model_id: int, **options: Unpack[ComparisonOptions]
) -> Comparison:
    """Find or queue the comparison of a pair; send it to a light worker when queued now (a lost
    one is the reconciler's to send again, not a reader's)."""
    comparison, queued_now = request_comparison(
        session, model_id=model_id, baseline_model_id=baseline_model_id, **options
    )
    if queued_now:
        queue.compare_models(comparison.id)
    return comparison


def pending_response(comparison: Comparison) -> JSONResponse:
    """202 with the comparison and where to follow it."""
    return JSONResponse(
        comparison_out(comparison).model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/comparisons/{comparison.id}", "Retry-After": RETRY_AFTER_S},
    )


@router.post(
    "",
    dependencies=[SUBMIT],
    response_model=ComparisonOut,
    responses={
        202: {"description": "queued or computing: follow Location", "model": ComparisonOut},
        **error_responses(400, 404, 409, 422),
    },
)
def create(
    body: ComparisonCreate, session: SessionDep, queue: QueueDep, response: Response
) -> ComparisonOut | JSONResponse:
    """Ask for the report of `model_id` against `baseline_model_id`: 200 when it is stored
    (the report is at `report_url`), 202 while a worker computes it. A failed comparison is
    queued again. Reading `GET /models/{id}/flips?against=` (scope `read`) queues the same
    computation; this route (scope `submit`, like every POST) is the one that retries a failure."""
    comparison = start_comparison(
        session,
        queue,
        model_id=body.model_id,
        baseline_model_id=body.baseline_model_id,
        model_loc=("body", "model_id"),
        baseline_loc=("body", "baseline_model_id"),
    )
    if comparison.status in (ComparisonStatus.QUEUED, ComparisonStatus.RUNNING):
        return pending_response(comparison)
    response.status_code = 200
    return comparison_out(comparison)


@router.get("/{comparison_id}", dependencies=[READ], response_model=ComparisonOut, responses=error_responses(404))
def read(comparison_id: RowId, session: SessionDep) -> ComparisonOut:
    """A comparison's state: queued, running, succeeded (report at `report_url`) or failed (`error`)."""
    return comparison_out(get_comparison(session, comparison_id=comparison_id))
