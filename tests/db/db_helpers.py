"""Rows the database tests start from, written through the db services."""

from __future__ import annotations


def ready_dataset(session, *, name="fmnist", classes=("a", "b", "c", "d"), image_shape=(1, 28, 28)):
    """A data set the worker has inspected (image_shape None: images of different sizes)."""
    from db.datasets.models import DatasetFormat
    from db.datasets.service import create_dataset, mark_dataset_ready

    dataset = create_dataset(session, name=name, uri="/data/x", format=DatasetFormat.NPZ)
    return mark_dataset_ready(
        session,
        dataset_id=dataset.id,
        classes=list(classes),
        train_size=100,
        test_size=20,
        image_shape=list(image_shape) if image_shape else None,
        digest="d" * 16,
    )


def uploaded_model(session, *, family="shoes", classes=("a", "b")):
    """A deployed model registered by upload (version 1 of a new family is production)."""
    from db.model_versions.service import register_uploaded_model

    return register_uploaded_model(
        session,
        family=family,
        architecture="small_cnn",
        classes=list(classes),
        artifact_uri="/artifacts/models/base.safetensors",
        sha256="0" * 64,
    )


def model_result(classes=("a", "b", "c", "d")):
    """The trained model a worker passes to complete_job."""
    from contracts.jobs import RegisteredModel

    return RegisteredModel(
        artifact_uri="/artifacts/models/new.safetensors",
        sha256="1" * 64,
        architecture="small_cnn",
        classes=tuple(classes),
        recipe={"epochs": 2},
        method="mpt-kl",
    )


def queued_comparisons(session, count: int) -> list[int]:
    """`count` queued comparisons, each of its own ordered pair of uploaded models, stored as
    request_comparison stores a pair once it found the evaluation split."""
    from db.comparisons.models import Comparison, ComparisonStatus

    baseline = uploaded_model(session, family="baseline")
    rows = [
        Comparison(
            model_id=uploaded_model(session, family=f"family{index}").id,
            baseline_model_id=baseline.id,
            split_model_id=baseline.id,
            status=ComparisonStatus.QUEUED,
        )
        for index in range(count)
    ]
    session.add_all(rows)
    session.commit()
    return [row.id for row in rows]


def flip_summary(nfr_old: float = 0.0, accuracy: float = 1.0):
    """A flip summary with the figures the db reads; the others are zero or None."""
    from contracts.flips import FlipScopes, FlipSummary, ScopeFigures

    scope = ScopeFigures(
        samples=100,
        negative_flips=int(nfr_old * 100),
        positive_flips=0,
        old_correct=0,
        new_correct=0,
        nfr=nfr_old,
        pfr=0.0,
        relative_nfr=nfr_old * 2,
        old_accuracy=None,
        new_accuracy=accuracy,
    )
    return FlipSummary(
        classes=("a", "b", "c", "d"),
        k_old=2,
        scopes=FlipScopes(all=scope, old_classes=scope),
        new_class_accuracy=accuracy,
        new_class_samples=0,
        both_correct=0,
        both_wrong=0,
        btc=None,
        bec=None,
        intrusion_flips=0,
        per_class=(),
        transitions=(),
    )
