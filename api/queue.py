"""The API's Celery client: it only enqueues tasks by name and holds no task code."""

from __future__ import annotations

from celery import Celery

from db.settings import Settings

INSPECT_DATASET_TASK = "flipguard.inspect_dataset"
RUN_UPDATE_TASK = "flipguard.run_update"
COMPARE_MODELS_TASK = "flipguard.compare_models"
LIGHT_QUEUE = "light"
TRAINING_QUEUE = "training"


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
        self.celery.send_task(INSPECT_DATASET_TASK, args=[dataset_id], queue=LIGHT_QUEUE)

    def run_update(self, job_id: int) -> None:
        """Ask a training worker to run an update job (a duplicate delivery is harmless)."""
        self.celery.send_task(RUN_UPDATE_TASK, args=[job_id], queue=TRAINING_QUEUE)

    def compare_models(self, comparison_id: int) -> None:
        """Ask a light worker to compute the flip report of an on-demand comparison."""
        self.celery.send_task(COMPARE_MODELS_TASK, args=[comparison_id], queue=LIGHT_QUEUE)

    def ping(self) -> None:
        """Raise if the broker cannot be reached."""
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
