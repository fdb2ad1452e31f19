"""The API's Celery client: it only enqueues tasks by name and holds no task code."""

from __future__ import annotations

from celery import Celery

from contracts.tasks import COMPARE_MODELS_TASK, INSPECT_DATASET_TASK, RUN_UPDATE_TASK, TASK_QUEUES
from db.settings import Settings


class TaskQueue:
    """Sends flipguard tasks to the broker configured in settings."""

    def __init__(self, settings: Settings):
        broker_url, transport_options = settings.broker_connection()
        self.celery = Celery("flipguard-api", broker=broker_url, set_as_current=False)
        self.celery.conf.update(
            broker_transport_options=transport_options,
            task_serializer="json",
            task_ignore_result=True,
            # Fail a request quickly when the broker is down instead of hanging it.
            task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
            broker_connection_timeout=3,
        )

    def inspect_dataset(self, dataset_id: int) -> None:
        """Ask a light worker to read a data set's classes, sizes and digest."""
        self.celery.send_task(INSPECT_DATASET_TASK, args=[dataset_id], queue=TASK_QUEUES[INSPECT_DATASET_TASK])

    def run_update(self, job_id: int) -> None:
        """Ask a training worker to run an update job (a duplicate delivery is harmless)."""
        self.celery.send_task(RUN_UPDATE_TASK, args=[job_id], queue=TASK_QUEUES[RUN_UPDATE_TASK])

    def compare_models(self, comparison_id: int) -> None:
        """Ask a light worker to compute the flip report of an on-demand comparison."""
        self.celery.send_task(COMPARE_MODELS_TASK, args=[comparison_id], queue=TASK_QUEUES[COMPARE_MODELS_TASK])

    def ping(self) -> None:
        """Raise if the broker cannot be reached."""
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
