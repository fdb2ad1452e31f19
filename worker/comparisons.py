"""On-demand comparisons (light queue): evaluate two stored versions on the evaluation split of
one version's update job and store the flip report and its ledger.

The split is rebuilt exactly as the update job built it (mpt.update.prepare_data selects the
version's classes from the data set's test split and keeps `eval_samples_per_class` of each,
seeded with the job's seed), so a comparison and the job's own report see the same samples.
"""

from __future__ import annotations

import logging
import uuid

import numpy as np

from db.comparisons.service import claim_comparison, complete_comparison, fail_comparison, split_source
from db.datasets.service import get_dataset
from db.errors import ServiceError
from db.model_versions.service import get_model
from mpt.artifacts import ArtifactError, load_model
from mpt.compare import compare
from mpt.data import DataError, thumbnails
from mpt.formats import open_dataset
from mpt.recipe import Recipe
from mpt.train import resolve_device
from worker.runtime import artifact_path, given_up, session_factory, settings, with_db_retries

log = logging.getLogger(__name__)


def execute_comparison(*, comparison_id: int) -> str:
    """Compute one comparison to its end state; returns that state (for the worker's log)."""
    with session_factory()() as session:
        comparison = claim_comparison(
            session, comparison_id=comparison_id, stale_after_s=settings().comparison_timeout_s
        )
        if comparison is None:
            return "dropped: finished, or running elsewhere"
        attempt = comparison.attempts
        if attempt > settings().max_comparison_attempts:
            # Every earlier claim ended without a result: its worker died or hung.
            reason = given_up(
                runs=attempt - 1,
                cause="the worker died or hung",
                setting="FLIPGUARD_MAX_COMPARISON_ATTEMPTS",
                limit=settings().max_comparison_attempts,
            )
            reason += "; ask again to retry"
            with_db_retries(lambda s: fail_comparison(s, comparison_id=comparison_id, attempt=attempt, error=reason))
            return f"failed: {reason}"
        model_row = get_model(session, model_id=comparison.model_id)
        baseline_row = get_model(session, model_id=comparison.baseline_model_id)
        try:
            split_row, job = split_source(session, model=model_row, baseline=baseline_row)
        except ServiceError as error:
            reason = error.message
            with_db_retries(lambda s: fail_comparison(s, comparison_id=comparison_id, attempt=attempt, error=reason))
            return f"failed: {reason}"
        dataset = get_dataset(session, dataset_id=job.dataset_id)
    path = None
    try:
        model = load_model(artifact_path(model_row.artifact_uri), sha256=model_row.sha256)
        baseline = load_model(artifact_path(baseline_row.artifact_uri), sha256=baseline_row.sha256)
        bundle = open_dataset(dataset.uri, dataset.format.value)
        if bundle.digest != dataset.digest:
            raise DataError(
                f"data set {dataset.id} changed on disk since it was registered "
                f"(digest {bundle.digest[:12]} != {(dataset.digest or '')[:12]}); register it again"
            )
        recipe = Recipe.from_dict(job.recipe)
        evaluation = bundle.test.select_classes(list(split_row.classes)).limit_per_class(
            recipe.eval_samples_per_class, seed=job.seed
        )
        summary, ledger = compare(
            model=model,
            baseline=baseline,
            evaluation=evaluation,
            device=resolve_device(settings().device),
            recipe=recipe,
        )
        images_uri = f"reports/comparison-{comparison_id}-{uuid.uuid4().hex[:8]}.npz"
        path = artifact_path(images_uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Thumbnails of what the model saw, as an update's report stores them.
        images = thumbnails(
            evaluation, ledger.sample_index.tolist(), model.spec.input_shape, recipe.ledger_thumbnail_side
        )
        np.savez_compressed(path, sample_index=ledger.sample_index.numpy(), images=images.numpy())
        rows = ledger.rows()
        report = with_db_retries(
            lambda s: complete_comparison(
                s, comparison_id=comparison_id, attempt=attempt, summary=summary, ledger=rows, images_uri=images_uri
            )
        )
        if report is None:
            path.unlink(missing_ok=True)
            return "dropped: claimed again by another delivery, whose result counts"
        return f"succeeded: report {report.id}"
    except (DataError, ArtifactError, ValueError, OSError) as error:
        reason = str(error)
    except Exception as error:
        log.exception("comparison %s crashed", comparison_id)
        reason = f"internal error ({type(error).__name__}): {error}"
    if path is not None:
        path.unlink(missing_ok=True)
    if not with_db_retries(lambda s: fail_comparison(s, comparison_id=comparison_id, attempt=attempt, error=reason)):
        return "dropped: claimed again by another delivery, whose result counts"
    return f"failed: {reason}"
