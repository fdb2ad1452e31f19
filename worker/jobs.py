"""The job lifecycle of docs/ARCHITECTURE.md: claim, train through the engine, evaluate, register.

The training loop never waits on the database: a heartbeat thread writes progress and reads
the cancellation flag every few seconds, and the loop polls that thread's flag.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
from sqlalchemy.exc import OperationalError

from contracts.jobs import Candidate, RegisteredModel, SweepResult
from contracts.methods import UpdateMethod
from contracts.selection import Selection
from db.datasets.models import Dataset
from db.datasets.service import get_dataset
from db.errors import JobNotOwned
from db.model_versions.models import ModelVersion
from db.model_versions.service import get_model
from db.references.service import add_reference, find_reference
from db.updates.completion import complete_job
from db.updates.lifecycle import cancel_job_finished, claim_job, fail_job, heartbeat, record_event
from db.updates.models import JobStatus, UpdateJob
from db.updates.submission import list_events
from mpt.artifacts import ArtifactError, LoadedModel, load_model, save_model
from mpt.data import DataBundle, DataError, thumbnails
from mpt.formats import open_dataset
from mpt.recipe import MethodParams, Recipe
from mpt.reference import Progress, ReferenceStore
from mpt.sweep import SweepOutcome, run_sweep
from mpt.train import Callbacks, NonFiniteLoss, TrainingCancelled
from mpt.update import UpdateOutcome, run_update
from worker.runtime import artifact_path, data_limits, given_up, session_factory, settings, with_db_retries

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
# Failures that are the job's own (its data, its weights, its numbers): reported as they are.
JOB_ERRORS = (DataError, ArtifactError, NonFiniteLoss, ValueError)


class _EngineArgs(TypedDict):
    """What run_update and run_sweep take alike for a job (not its base model: a sweep needs one)."""

    bundle: DataBundle
    classes: list[str] | None
    arch: str
    method: str
    params: MethodParams
    recipe: Recipe
    seed: int
    store: ReferenceStore
    device: str
    checkpoint_dir: Path
    progress: Progress


@dataclass
class JobMonitor:
    """Heartbeats the job from a thread; tells the loop when to stop (cancel or takeover)."""

    job_id: int
    interval_s: float
    epochs: int
    phase: str = "starting"
    progress: float = 0.0
    epoch: int | None = None
    status: JobStatus = JobStatus.RUNNING
    data_path: str | None = None
    cancel_requested: bool = False
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> JobMonitor:
        self.beat()
        threading.Thread(target=self._run, name=f"heartbeat-{self.job_id}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def beat(self) -> None:
        try:
            with session_factory()() as session:
                self.cancel_requested = heartbeat(
                    session,
                    job_id=self.job_id,
                    worker_id=WORKER_ID,
                    phase=self.phase,
                    progress=self.progress,
                    epoch=self.epoch,
                    status=self.status,
                    data_path=self.data_path,
                )
        except JobNotOwned:
            self.lost = True
        except OperationalError:
            log.warning("heartbeat for job %s failed: database unreachable", self.job_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()

    def should_stop(self) -> bool:
        return self.cancel_requested or self.lost

    def enter_phase(self, phase: str) -> None:
        # A training phase starts in its first epoch (the row must not keep the previous
        # phase's last epoch); evaluating has none, and readers show none for it.
        training = phase not in ("evaluating", "starting")
        self.phase, self.progress, self.epoch = phase, 0.0, 1 if training else None
        if phase == "evaluating":
            self.status = JobStatus.EVALUATING
        self.beat()

    def on_data_path(self, data_path: str) -> None:
        self.data_path = data_path
        self.beat()

    def on_progress(self, fraction: float) -> None:
        self.progress = fraction
        # The epoch being trained, 1-based, as a person reads "epoch 3/4".
        self.epoch = min(int(fraction * self.epochs) + 1, self.epochs)

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        with_db_retries(
            lambda s: record_event(s, job_id=self.job_id, phase=self.phase, epoch=epoch + 1, metrics=metrics)
        )
        # A short epoch can end between two heartbeats (and before the loop's next progress
        # poll): write the finished epoch and its share of the phase now.
        self.epoch = epoch + 1
        self.progress = max(self.progress, min((epoch + 1) / max(self.epochs, 1), 1.0))
        self.beat()


class DatabaseReferenceStore:
    """Independent references cached in the artifact store and indexed in the database."""

    def __init__(self) -> None:
        self.last_id: int | None = None

    def load(self, key: str) -> LoadedModel | None:
        with session_factory()() as session:
            row = find_reference(session, cache_key=key)
        if row is None:
            return None
        self.last_id = row.id
        return load_model(artifact_path(row.artifact_uri), sha256=row.sha256)

    def save(self, key: str, model: LoadedModel) -> None:
        uri = f"references/{key}.safetensors"
        sha256 = save_model(artifact_path(uri), model.net, model.spec)
        row = with_db_retries(
            lambda s: add_reference(
                s,
                cache_key=key,
                artifact_uri=uri,
                sha256=sha256,
                architecture=model.spec.arch,
                classes=list(model.spec.classes),
            )
        )
        self.last_id = row.id


def execute_update(*, job_id: int) -> str:
    """Run one update job to its end state; returns that state (for the worker's log)."""
    with session_factory()() as session:
        job = claim_job(session, job_id=job_id, worker_id=WORKER_ID, heartbeat_timeout_s=settings().heartbeat_timeout_s)
        if job is None:
            return "dropped: another live worker holds it, or it has finished"
        if job.attempts > settings().max_job_attempts:
            # Every earlier claim ended without a result: its worker died or stopped heartbeating.
            reason = given_up(
                runs=job.attempts - 1,
                cause="the worker died or stopped heartbeating",
                setting="FLIPGUARD_MAX_JOB_ATTEMPTS",
                limit=settings().max_job_attempts,
            )
            with_db_retries(lambda s: fail_job(s, job_id=job_id, error=reason))
            return f"failed: {reason}"
        dataset = get_dataset(session, dataset_id=job.dataset_id)
        base_row = get_model(session, model_id=job.base_model_id) if job.base_model_id else None

    # Frequent enough that a cancel request stops the loop within a couple of seconds.
    interval = max(0.5, min(2.0, settings().heartbeat_timeout_s / 4))
    monitor = JobMonitor(job_id=job_id, interval_s=interval, epochs=job.epochs or Recipe.epochs).start()
    checkpoint_dir = artifact_path(f"checkpoints/job-{job_id}")
    written: list[Path] = []
    try:
        version, model_uri = _train_and_register(job, dataset, base_row, monitor, checkpoint_dir, written)
        if version.artifact_uri != model_uri:
            _remove(written)  # a concurrent completion of this job registered first
        outcome = f"succeeded: model {version.id}"
    except TrainingCancelled:
        _remove(written)
        if monitor.lost:  # the new owner resumes from the checkpoints: leave them
            return "stopped: the job was taken over by another worker"
        with_db_retries(lambda s: cancel_job_finished(s, job_id=job_id))
        outcome = "cancelled"
    except JOB_ERRORS as error:
        _remove(written)
        reason = str(error)
        with_db_retries(lambda s: fail_job(s, job_id=job_id, error=reason))
        outcome = f"failed: {reason}"
    except Exception as error:
        _remove(written)
        log.exception("update job %s crashed", job_id)
        reason = f"internal error ({type(error).__name__}): {error}"
        with_db_retries(lambda s: fail_job(s, job_id=job_id, error=reason))
        outcome = "failed: internal error"
    finally:
        monitor.stop()
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return outcome


def _train_and_register(
    job: UpdateJob,
    dataset: Dataset,
    base_row: ModelVersion | None,
    monitor: JobMonitor,
    checkpoint_dir: Path,
    written: list[Path],
) -> tuple[ModelVersion, str]:
    """Run the engine for a claimed job, write its artifacts (listed in `written`), register.

    Returns the registered version and the URI this run wrote its weights to.
    """
    recipe = Recipe.from_dict(job.recipe)
    params = MethodParams.from_dict(job.method_params)
    base = load_model(artifact_path(base_row.artifact_uri), sha256=base_row.sha256) if base_row else None
    bundle = open_dataset(dataset.uri, dataset.format.value, limits=data_limits())
    if bundle.digest != dataset.digest:
        raise DataError(
            f"data set {dataset.id} changed on disk since it was registered "
            f"(digest {bundle.digest[:12]} != {(dataset.digest or '')[:12]}); register it again"
        )
    store = DatabaseReferenceStore()
    progress = Progress(
        on_phase=monitor.enter_phase,
        on_data_path=monitor.on_data_path,
        callbacks=Callbacks(
            on_epoch_end=monitor.on_epoch_end,
            on_progress=monitor.on_progress,
            should_cancel=monitor.should_stop,
        ),
    )
    common = _EngineArgs(
        bundle=bundle,
        classes=job.classes,
        arch=job.architecture,
        method=job.method,
        params=params,
        recipe=recipe,
        seed=job.seed,
        store=store,
        device=settings().device,
        checkpoint_dir=checkpoint_dir,
        progress=progress,
    )
    sweep = None
    outcome: SweepOutcome | UpdateOutcome
    if job.sweep:
        # Every candidate trains together (checkpointed together each epoch); only the
        # winner, chosen on the validation split, goes on to be registered.
        assert base is not None  # contracts.selection: a sweep updates a base model
        swept = run_sweep(base=base, values=job.sweep, selection=Selection.from_dict(job.selection), **common)
        outcome = swept
        model_out = swept.best.model
        sweep = _sweep_result(job.id, swept, swept_names=list(job.sweep))
    else:
        single = run_update(base=base, **common)
        outcome = single
        model_out = single.model
    if monitor.should_stop():
        raise TrainingCancelled("cancelled during evaluation")
    stem = f"job-{job.id}-{uuid.uuid4().hex[:8]}"
    model_uri = f"models/{stem}.safetensors"
    written.append(artifact_path(model_uri))
    sha256 = save_model(written[-1], model_out.net, model_out.spec)
    images_uri = None
    if outcome.ledger is not None:
        assert outcome.inputs is not None  # both pipelines return the splits they evaluated on
        images_uri = f"reports/{stem}.npz"
        written.append(artifact_path(images_uri))
        written[-1].parent.mkdir(parents=True, exist_ok=True)
        # Thumbnails of what the new model saw, not full-resolution inputs: thousands of
        # flips at 224 px stay a few megabytes.
        np.savez_compressed(
            written[-1],
            sample_index=outcome.ledger.sample_index.numpy(),
            images=thumbnails(
                outcome.inputs.evaluation,
                outcome.ledger.sample_index.tolist(),
                outcome.inputs.shape,
                recipe.ledger_thumbnail_side,
            ).numpy(),
        )
    monitor.stop()
    if monitor.lost:
        raise TrainingCancelled("another worker took the job over")
    model = RegisteredModel(
        artifact_uri=model_uri,
        sha256=sha256,
        architecture=model_out.spec.arch,
        classes=tuple(model_out.spec.classes),
        recipe=recipe.to_dict(),
        method=UpdateMethod(job.method),
    )
    version = with_db_retries(
        lambda s: complete_job(
            s,
            job_id=job.id,
            model=model,
            report=outcome.report,
            ledger=outcome.ledger.rows() if outcome.ledger is not None else None,
            images_uri=images_uri,
            reference_report=outcome.reference_report,
            reference_model_id=store.last_id,
            sweep=sweep,
        )
    )
    return version, model_uri


def _sweep_result(job_id: int, outcome: SweepOutcome, *, swept_names: list[str]) -> SweepResult:
    """Every candidate's figures and curves, for complete_job.

    A resumed sweep's engine histories start at its checkpoint; the earlier epochs are in the
    job's events (phase `sweep`, one metrics row per student), so the curves come from both.
    """
    events = with_db_retries(
        lambda s: [e for e in list_events(s, job_id=job_id) if e.phase == "sweep" and e.epoch is not None]
    )
    histories: list[dict[int, dict]] = [{} for _ in outcome.trials]
    for event in events:
        for index, metrics in enumerate((event.metrics or {}).get("students", [])[: len(histories)]):
            epoch = metrics.get("epoch", (event.epoch or 1) - 1)  # metrics count from 0, events from 1
            histories[index][epoch] = dict(metrics)
    for index, trial in enumerate(outcome.trials):
        histories[index].update({metrics["epoch"]: dict(metrics) for metrics in trial.history})
    return SweepResult(
        candidates=tuple(
            Candidate(
                index=index,
                label=trial.label,
                params={name: getattr(trial.params, name) for name in swept_names},
                validation=trial.validation,
                history=[histories[index][epoch] for epoch in sorted(histories[index])],
            )
            for index, trial in enumerate(outcome.trials)
        ),
        choice=outcome.choice,
        reference_validation=outcome.reference_validation,
    )


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
