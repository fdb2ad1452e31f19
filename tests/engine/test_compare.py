"""mpt.compare: the report of any model against any other equals the update's report for a
version and its base, and stays defined in the other direction."""

from __future__ import annotations

import pytest
import torch

from mpt.artifacts import LoadedModel, ModelSpec
from mpt.compare import compare, report_classes
from mpt.data import ImageSet
from mpt.nets import build_net
from mpt.update import evaluate

OLD = ["a", "b", "c"]
ALL = ["a", "b", "c", "d", "e"]


def model(classes: list[str], seed: int) -> LoadedModel:
    net = build_net("small_cnn", num_classes=len(classes), in_channels=1, seed=seed)
    spec = ModelSpec(
        arch="small_cnn", classes=tuple(classes), in_channels=1, image_size=(28, 28), mean=(0.5,), std=(0.25,)
    )
    return LoadedModel(net.eval(), spec)


@pytest.fixture(scope="module")
def split() -> ImageSet:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (60, 1, 28, 28), dtype=torch.uint8, generator=generator)
    return ImageSet(images, torch.arange(60) % len(ALL), list(ALL))


def test_a_version_against_its_base_is_the_update_report(split):
    base, version = model(OLD, 1), model(ALL, 2)
    expected, expected_ledger = evaluate(
        model=version, baseline=base, evaluation=split, k_old=3, device=torch.device("cpu")
    )
    summary, ledger = compare(model=version, baseline=base, evaluation=split, device=torch.device("cpu"))
    assert summary == expected
    assert torch.equal(ledger.sample_index, expected_ledger.sample_index)


def test_the_base_against_a_newer_version(split):
    base, version = model(OLD, 1), model(ALL, 2)
    summary, ledger = compare(model=base, baseline=version, evaluation=split, device=torch.device("cpu"))
    forward, _ = compare(model=version, baseline=base, evaluation=split, device=torch.device("cpu"))
    # Baseline first: the newer version's five classes, all of which it knows.
    assert list(summary.classes) == ALL and summary.k_old == 5
    every = summary.scopes.all
    # The same samples and predictions seen from the other side: flips swap kinds.
    assert every.samples == 60
    assert every.negative_flips == forward.scopes.all.positive_flips
    assert every.positive_flips == forward.scopes.all.negative_flips
    # The old model never predicts d or e: it is wrong on all their samples.
    assert all(row.new_correct == 0 for row in summary.per_class if row.name in ("d", "e"))
    assert len(ledger) == every.negative_flips + every.positive_flips


def test_classes_outside_the_split_are_refused(split):
    with pytest.raises(ValueError, match="not classes of the evaluation split"):
        compare(model=model(["a", "z"], 1), baseline=model(OLD, 2), evaluation=split, device=torch.device("cpu"))


def test_report_classes_put_the_baseline_first():
    assert report_classes(baseline_classes=["c", "a"], split_classes=ALL) == ["c", "a", "b", "d", "e"]
