"""Celery tasks: each takes a row id and hands it to worker.jobs, worker.inspection or
worker.comparisons."""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery.signals import worker_ready, worker_shutdown

from contracts.tasks import COMPARE_MODELS_TASK, INSPECT_DATASET_TASK, RUN_UPDATE_TASK, TRAINING_QUEUE
from worker import comparisons, inspection, jobs, runtime
from worker.app import app
from worker.liveness import Liveness
from worker.reconciler import start_reconciler

if TYPE_CHECKING:  # for the annotations only: the module is not otherwise loaded here
    from celery.worker.consumer import Consumer

_liveness: list[Liveness] = []


@app.task(name=RUN_UPDATE_TASK)
def run_update(job_id: int) -> str:
    return jobs.execute_update(job_id=job_id)


@app.task(name=INSPECT_DATASET_TASK)
def inspect_dataset(dataset_id: int) -> str:
    return inspection.inspect_dataset(dataset_id=dataset_id)


@app.task(name=COMPARE_MODELS_TASK)
def compare_models(comparison_id: int) -> str:
    return comparisons.execute_comparison(comparison_id=comparison_id)


@worker_ready.connect
def _start_reconciler(sender: Consumer, **_: object) -> None:
    # Every worker reconciles: one lost message is then found even if only one worker lives.
    start_reconciler(
        app=app, settings=runtime.settings(), session_factory=runtime.session_factory(), queue=TRAINING_QUEUE
    )


@worker_ready.connect
def _start_liveness(sender: Consumer, **_: object) -> None:
    # The node name (-n) and the queues this worker consumes (-Q), for /health.
    queues = list(sender.app.amqp.queues.consume_from)
    _liveness.append(
        Liveness(
            name=sender.hostname, queues=queues, settings=runtime.settings(), session_factory=runtime.session_factory()
        ).start()
    )


@worker_shutdown.connect
def _stop_liveness(**_: object) -> None:
    for liveness in _liveness:
        liveness.stop()
