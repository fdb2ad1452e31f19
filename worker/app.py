"""The Celery application of the workers.

Start a training worker per GPU with `--pool=solo` (torch must not run before a fork) and
`CUDA_VISIBLE_DEVICES` pinned: `celery -A worker.app worker --pool=solo -Q training`.
"""

from __future__ import annotations

from celery import Celery

from contracts.tasks import TASK_QUEUES
from db.settings import Settings


def create_celery(settings: Settings) -> Celery:
    broker_url, transport_options = settings.broker_connection()
    app = Celery("flipguard", broker=broker_url, include=["worker.tasks"])
    app.conf.update(
        # A job is acknowledged only when it ends, and a worker that dies mid-job returns its
        # message to the queue: the database claim (with heartbeat) decides who runs it.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # the database is the source of truth, not a result backend
        # Redis redelivers an unacknowledged message after the visibility timeout: it must
        # outlast the longest job, or a healthy running job would be delivered twice.
        broker_transport_options={"visibility_timeout": 7 * 24 * 3600, **transport_options},
        broker_connection_retry_on_startup=True,
        task_routes={task: {"queue": queue} for task, queue in TASK_QUEUES.items()},
        worker_hijack_root_logger=False,
    )
    return app


app = create_celery(Settings())
