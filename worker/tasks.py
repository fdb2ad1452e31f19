"""Celery tasks: each takes a row id and hands it to worker.jobs."""

from __future__ import annotations

from worker.app import app
from worker import jobs


@app.task(name="flipguard.run_update")
def run_update(job_id: int) -> str:
    return jobs.execute_update(job_id=job_id)


@app.task(name="flipguard.inspect_dataset")
def inspect_dataset(dataset_id: int) -> str:
    return jobs.inspect_dataset(dataset_id=dataset_id)
