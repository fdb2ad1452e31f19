"""comparisons_needing_dispatch: which comparisons the reconciler considers sending again (both
backends).

A comparison needs a worker when it is queued past the grace time, or running for longer than
the stale bound (its worker died); never when it has finished, and never while its claim is
young. The stale bound is the claim's own, so the delivery the reconciler sends can claim it.
Whether a broker message still carries it is the reconciler's half
(tests/worker/test_reconciler.py).
"""

from __future__ import annotations

from datetime import timedelta

from db_helpers import flip_summary, queued_comparisons
from sqlalchemy import func, select, update

from db.base import utcnow
from db.comparisons.models import Comparison, ComparisonStatus
from db.comparisons.service import (
    claim_comparison,
    comparisons_needing_dispatch,
    complete_comparison,
    fail_comparison,
    get_comparison,
    request_comparison,
)
from db.flips.models import FlipReport

STALE_AFTER_S = 600
GRACE_S = 30
# Far from both limits, so that a slow machine between arranging and asking changes nothing.
LONG_AGO = timedelta(seconds=3600)
JUST_NOW = timedelta(seconds=1)


def set_times(session, comparison_id: int, **values) -> None:
    session.execute(update(Comparison).where(Comparison.id == comparison_id).values(**values))
    session.commit()


def running(session, comparison_id: int, *, started_at) -> int:
    assert claim_comparison(session, comparison_id=comparison_id, stale_after_s=STALE_AFTER_S) is not None
    set_times(session, comparison_id, created_at=utcnow() - LONG_AGO, started_at=started_at)
    return comparison_id


def test_which_comparisons_need_a_worker(session):
    queued_lost, queued_just_now, running_stale, running_live, failed, succeeded = queued_comparisons(session, 6)
    set_times(session, queued_lost, created_at=utcnow() - LONG_AGO)
    set_times(session, queued_just_now, created_at=utcnow() - JUST_NOW)
    running(session, running_stale, started_at=utcnow() - LONG_AGO)
    running(session, running_live, started_at=utcnow() - JUST_NOW)
    running(session, failed, started_at=utcnow() - LONG_AGO)
    fail_comparison(session, comparison_id=failed, attempt=1, error="boom")
    running(session, succeeded, started_at=utcnow() - LONG_AGO)
    set_times(session, succeeded, status=ComparisonStatus.SUCCEEDED, finished_at=utcnow())

    needing = comparisons_needing_dispatch(session, stale_after_s=STALE_AFTER_S, queued_grace_s=GRACE_S)

    assert needing == [queued_lost, running_stale]


def test_the_bounds_decide_what_is_stale(session):
    queued, running_id = queued_comparisons(session, 2)
    set_times(session, queued, created_at=utcnow() - timedelta(seconds=300))
    running(session, running_id, started_at=utcnow() - timedelta(seconds=300))
    # 300 s is past a 60 s bound and well within a 3600 s one, for either rule.
    assert comparisons_needing_dispatch(session, stale_after_s=60, queued_grace_s=60) == [queued, running_id]
    assert comparisons_needing_dispatch(session, stale_after_s=3600, queued_grace_s=60) == [queued]
    assert comparisons_needing_dispatch(session, stale_after_s=60, queued_grace_s=3600) == [running_id]
    assert comparisons_needing_dispatch(session, stale_after_s=3600, queued_grace_s=3600) == []


def test_a_comparison_is_stale_only_once_strictly_older_than_the_bound(session, monkeypatch):
    # A frozen clock puts rows below, exactly at and one microsecond past each bound.
    import db.comparisons.service as service

    now = utcnow().replace(microsecond=500_000)
    monkeypatch.setattr(service, "utcnow", lambda: now)
    ids = queued_comparisons(session, 6)
    queued_below, queued_at, queued_past = ids[:3]
    running_below, running_at, running_past = ids[3:]
    grace, bound, tick = timedelta(seconds=GRACE_S), timedelta(seconds=STALE_AFTER_S), timedelta(microseconds=1)
    for comparison_id, age in ((queued_below, grace - tick), (queued_at, grace), (queued_past, grace + tick)):
        set_times(session, comparison_id, created_at=now - age)
    for comparison_id, age in ((running_below, bound - tick), (running_at, bound), (running_past, bound + tick)):
        running(session, comparison_id, started_at=now - age)

    needing = comparisons_needing_dispatch(session, stale_after_s=STALE_AFTER_S, queued_grace_s=GRACE_S)
    assert needing == [queued_past, running_past]
    # The claim draws the same line: the delivery the reconciler sends takes exactly those.
    assert claim_comparison(session, comparison_id=running_below, stale_after_s=STALE_AFTER_S) is None
    assert claim_comparison(session, comparison_id=running_at, stale_after_s=STALE_AFTER_S) is None
    taken = claim_comparison(session, comparison_id=running_past, stale_after_s=STALE_AFTER_S)
    assert taken is not None and taken.attempts == 2 and taken.started_at == now


def test_only_the_delivery_that_holds_the_claim_settles_the_comparison(session):
    (comparison_id,) = queued_comparisons(session, 1)
    first = running(session, comparison_id, started_at=utcnow() - LONG_AGO)
    # The first delivery looked dead; a second one claimed the comparison again.
    second = claim_comparison(session, comparison_id=first, stale_after_s=STALE_AFTER_S)
    assert second is not None and second.attempts == 2
    summary = flip_summary()

    late = complete_comparison(session, comparison_id=first, attempt=1, summary=summary, ledger=[], images_uri=None)
    assert late is None
    assert fail_comparison(session, comparison_id=first, attempt=1, error="late") is False
    row = get_comparison(session, comparison_id=first)
    assert row.status == ComparisonStatus.RUNNING and row.report_id is None and row.error is None
    assert session.scalar(select(func.count()).select_from(FlipReport)) == 0, "the late result stored no report"

    report = complete_comparison(session, comparison_id=first, attempt=2, summary=summary, ledger=[], images_uri=None)
    assert report is not None
    row = get_comparison(session, comparison_id=first)
    assert row.status == ComparisonStatus.SUCCEEDED and row.report_id == report.id


def test_asking_again_for_a_failed_comparison_starts_its_count_of_attempts_again(session):
    (comparison_id,) = queued_comparisons(session, 1)
    running(session, comparison_id, started_at=utcnow() - LONG_AGO)
    claim_comparison(session, comparison_id=comparison_id, stale_after_s=STALE_AFTER_S)
    assert fail_comparison(session, comparison_id=comparison_id, attempt=2, error="worker died") is True
    row = get_comparison(session, comparison_id=comparison_id)

    retried, queued_now = request_comparison(session, model_id=row.model_id, baseline_model_id=row.baseline_model_id)

    assert queued_now and retried.status == ComparisonStatus.QUEUED and retried.attempts == 0
