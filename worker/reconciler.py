"""Re-dispatch jobs, data set inspections and comparisons that no broker message carries any more.

Redis without persistence loses its queues on a restart, the filesystem transport forgets a
message a killed worker had taken, and Redis returns a dead worker's unacknowledged message
only after the (long) visibility timeout. The database knows better: a job that is queued,
or active with a stale heartbeat, and not waiting in the training queue is sent again.
Duplicates are harmless: `claim_job` lets exactly one delivery run the job.

Data sets likewise: one still pending whose inspection was never claimed, or was claimed longer
than FLIPGUARD_INSPECT_TIMEOUT_S ago (its worker was killed, say by a data set that exhausts its
memory), and that has no message waiting in the light queue is sent again; `claim_inspection`
counts every delivery and fails the data set past FLIPGUARD_MAX_INSPECT_DELIVERIES.

Comparisons likewise: one queued past the grace, or running longer than
FLIPGUARD_COMPARISON_TIMEOUT_S (its worker died), with no message waiting in the light queue is
sent again; `claim_comparison` takes a running one past that same bound, so the new delivery
runs it. The waiting message is what keeps a re-sent row from being sent again next round, so
no clock is restarted (a restarted `started_at` would make the new delivery's claim fail).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from celery import Celery
from sqlalchemy.orm import Session

from contracts.tasks import COMPARE_MODELS_TASK, INSPECT_DATASET_TASK, LIGHT_QUEUE, RUN_UPDATE_TASK
from db.comparisons.service import comparisons_needing_dispatch
from db.datasets.service import datasets_needing_inspection
from db.settings import Settings
from db.updates.lifecycle import jobs_needing_dispatch

log = logging.getLogger(__name__)


def _job_id(raw: bytes | str, task: str = RUN_UPDATE_TASK) -> int | None:
    """The row id argument of a serialised Celery message of `task`, None for any other message."""
    try:
        payload = json.loads(raw)
        if payload.get("headers", {}).get("task") != task:
            return None
        args = json.loads(base64.b64decode(payload["body"]))[0]
        return int(args[0])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def waiting_job_ids(app: Celery, settings: Settings, queue: str, task: str = RUN_UPDATE_TASK) -> set[int]:
    """Ids of the rows whose `task` messages wait in `queue` (not yet taken by any worker)."""
    broker_url, options = settings.broker_connection()
    if broker_url.startswith("filesystem"):
        folder = Path(options["data_folder_out"])
        raws = [path.read_bytes() for path in folder.glob(f"*.{queue}.msg") if path.is_file()]
    else:
        with app.connection_for_read() as connection:
            client = connection.default_channel.client
            raws = [
                raw
                for key in client.scan_iter(match=f"{queue}*")
                if client.type(key) == b"list"
                for raw in client.lrange(key, 0, -1)
            ]
    return {row_id for row_id in (_job_id(raw, task) for raw in raws) if row_id is not None}


def _resend_lost(
    *,
    app: Celery,
    settings: Settings,
    session_factory: Callable[[], Session],
    needing: Callable[[Session], list[int]],
    task: str,
    queue: str,
    what: str,
) -> list[int]:
    """Send `task` again for every row id `needing` lists that no message waits for in `queue`;
    returns those ids."""
    with session_factory() as session:
        candidates = needing(session)
    if not candidates:
        return []
    waiting = waiting_job_ids(app, settings, queue, task)
    resent = [row_id for row_id in candidates if row_id not in waiting]
    for row_id in resent:
        app.send_task(task, args=[row_id])
    if resent:
        log.warning("re-dispatched %s: %s", what, resent)
    return resent


def reconcile(*, app: Celery, settings: Settings, session_factory: Callable[[], Session], queue: str) -> list[int]:
    """Send again every job that needs a worker and has no message waiting; returns their ids."""
    return _resend_lost(
        app=app,
        settings=settings,
        session_factory=session_factory,
        needing=lambda session: jobs_needing_dispatch(
            session, heartbeat_timeout_s=settings.heartbeat_timeout_s, queued_grace_s=settings.reconcile_interval_s
        ),
        task=RUN_UPDATE_TASK,
        queue=queue,
        what="jobs with no broker message",
    )


def reconcile_datasets(*, app: Celery, settings: Settings, session_factory: Callable[[], Session]) -> list[int]:
    """Send the inspection of every pending data set that no live delivery holds and no
    message carries again; returns their ids."""
    return _resend_lost(
        app=app,
        settings=settings,
        session_factory=session_factory,
        needing=lambda session: datasets_needing_inspection(
            session, timeout_s=settings.inspect_timeout_s, grace_s=settings.reconcile_interval_s
        ),
        task=INSPECT_DATASET_TASK,
        queue=LIGHT_QUEUE,
        what="data set inspections that no worker holds",
    )


def reconcile_comparisons(*, app: Celery, settings: Settings, session_factory: Callable[[], Session]) -> list[int]:
    """Send again every comparison that needs a light worker and has no message waiting; returns their ids."""
    return _resend_lost(
        app=app,
        settings=settings,
        session_factory=session_factory,
        needing=lambda session: comparisons_needing_dispatch(
            session, stale_after_s=settings.comparison_timeout_s, queued_grace_s=settings.reconcile_interval_s
        ),
        task=COMPARE_MODELS_TASK,
        queue=LIGHT_QUEUE,
        what="comparisons with no broker message",
    )


def start_reconciler(
    *, app: Celery, settings: Settings, session_factory: Callable[[], Session], queue: str
) -> threading.Event:
    """Run every pass (jobs, data sets, comparisons) every `settings.reconcile_interval_s` in a
    daemon thread; set the event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(settings.reconcile_interval_s):
            try:
                reconcile(app=app, settings=settings, session_factory=session_factory, queue=queue)
                reconcile_datasets(app=app, settings=settings, session_factory=session_factory)
                reconcile_comparisons(app=app, settings=settings, session_factory=session_factory)
            except Exception:  # a broker or database outage: try again next round
                log.exception("reconciliation failed")

    threading.Thread(target=loop, name="reconciler", daemon=True).start()
    return stop
