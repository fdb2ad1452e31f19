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

from db_helpers import queued_comparisons
from sqlalchemy import update

from db.base import utcnow
from db.comparisons.models import Comparison, ComparisonStatus
from db.comparisons.service import claim_comparison, comparisons_needing_dispatch, fail_comparison

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
    fail_comparison(session, comparison_id=failed, error="boom")
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
