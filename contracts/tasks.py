"""Celery task and queue names: the API sends by name, the worker registers under the same."""

from __future__ import annotations

RUN_UPDATE_TASK = "flipguard.run_update"
INSPECT_DATASET_TASK = "flipguard.inspect_dataset"
# The flip report of two stored versions that no update job evaluated (docs/API.md).
COMPARE_MODELS_TASK = "flipguard.compare_models"
# GPU workers consume the training queue; a CPU worker the light one, so that inspecting a
# data set never waits behind a training job.
TRAINING_QUEUE = "training"
LIGHT_QUEUE = "light"
TASK_QUEUES = {RUN_UPDATE_TASK: TRAINING_QUEUE, INSPECT_DATASET_TASK: LIGHT_QUEUE, COMPARE_MODELS_TASK: LIGHT_QUEUE}
