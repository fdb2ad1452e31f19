"""Data-set inspection: read a registered data set once, within the worker's data limits, and
mark it ready (with its description and a few sample thumbnails) or failed with the reason."""

from __future__ import annotations

import logging
import uuid

import numpy as np

from db.datasets.service import claim_inspection, mark_dataset_failed, mark_dataset_ready
from mpt.data import DataError, ImageFiles, ImageSet, thumbnails
from mpt.formats import open_dataset
from mpt.recipe import Recipe
from worker.runtime import artifact_path, data_limits, settings, with_db_retries

log = logging.getLogger(__name__)


def inspect_dataset(*, dataset_id: int) -> str:
    """Read a registered data set once: classes, split sizes, image sizes and modes (an image
    folder's from its files' headers, no pixels decoded), content digest.

    The delivery is counted in the row before anything is read; one past
    max_inspect_deliveries (the earlier ones killed their workers or hung) fails the data set
    unread. Reading is bounded by data_limits(), and whatever it raises fails the data set with
    the reason: the worker survives any data set, and every data set ends ready or failed.
    """
    current = settings()
    dataset = with_db_retries(lambda s: claim_inspection(s, dataset_id=dataset_id, timeout_s=current.inspect_timeout_s))
    if dataset is None:
        return "dropped: not pending, or another delivery is inspecting it"
    if dataset.inspect_attempts > current.max_inspect_deliveries:
        reason = (
            f"the inspection did not finish in {current.max_inspect_deliveries} deliveries: each one killed "
            f"its worker or ran past {current.inspect_timeout_s:g} s (FLIPGUARD_MAX_INSPECT_DELIVERIES, "
            "FLIPGUARD_INSPECT_TIMEOUT_S)"
        )
    else:
        try:
            bundle = open_dataset(dataset.uri, dataset.format.value, limits=data_limits())
            described = bundle.describe()
            samples_uri = store_dataset_samples(dataset_id, bundle.test)
        except DataError as error:
            reason = str(error)
        except Exception as error:
            log.exception("inspecting data set %s crashed", dataset_id)
            reason = f"internal error ({type(error).__name__}): {error}"
        else:
            with_db_retries(
                lambda s: mark_dataset_ready(s, dataset_id=dataset_id, samples_uri=samples_uri, **described)
            )
            return "ready"
    with_db_retries(lambda s: mark_dataset_failed(s, dataset_id=dataset_id, error=reason))
    return f"failed: {reason}"


# Sample images kept per data set for the dashboard: a few per class, at most this many in all.
SAMPLES_PER_CLASS = 4
MAX_SAMPLES = 64


def store_dataset_samples(dataset_id: int, test: ImageSet | ImageFiles) -> str | None:
    """Write the first few test images of each class to the artifact store (an .npz the API
    serves without torch) as thumbnails: images of mixed sizes are fitted to one square, and
    only these few files are decoded; None when the split is empty."""
    per_class = max(1, min(SAMPLES_PER_CLASS, MAX_SAMPLES // max(len(test.classes), 1)))
    picked: list[int] = []
    for label in range(len(test.classes)):
        members = (test.labels == label).nonzero().flatten()[:per_class].tolist()
        picked.extend(members[: MAX_SAMPLES - len(picked)])
    if not picked:
        return None
    uri = f"datasets/dataset-{dataset_id}-{uuid.uuid4().hex[:8]}.npz"
    path = artifact_path(uri)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        side = Recipe().ledger_thumbnail_side
        shape = test.shape or (test.channels, side, side)  # mixed sizes: fitted to a square
        images = thumbnails(test, picked, shape, side)
        np.savez(path, labels=test.labels[picked].numpy(), images=images.numpy())
    except OSError:  # the pictures are a convenience: a full store must not fail the data set
        log.exception("could not store sample images of data set %s", dataset_id)
        path.unlink(missing_ok=True)
        return None
    return uri
