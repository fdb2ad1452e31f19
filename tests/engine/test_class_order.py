"""Class mapping by name, end to end through mpt.update.run_update.

The old model is trained on a data set that lists its classes as owl, cat, dog; the update's
data set lists them in another order, interleaved with new classes (emu, dog, yak, owl, ant,
cat), so the class map is not the identity. The update's report must agree with an evaluation
done by class name alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpt.formats import load_dataset
from mpt.recipe import MethodParams, Recipe
from mpt.update import run_update
from tests.by_name import assert_summary_matches, evaluate_by_name, predicted_names, striped_by_name

OLD_DATA_CLASSES = ["owl", "cat", "dog"]
UPDATE_DATA_CLASSES = ["emu", "dog", "yak", "owl", "ant", "cat"]
RECIPE = Recipe(epochs=2, batch_size=32, lr=0.05, crop_padding=1)


def write_npz(path, classes: list[str], *, seed: int):
    rng = np.random.default_rng(seed)
    x_train, y_train = striped_by_name(classes, 40, rng)
    x_test, y_test = striped_by_name(classes, 25, rng)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, classes=np.array(classes))
    return path


@pytest.fixture(scope="module")
def updated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class-order")
    old_bundle = load_dataset(write_npz(folder / "old.npz", OLD_DATA_CLASSES, seed=1))
    bundle = load_dataset(write_npz(folder / "update.npz", UPDATE_DATA_CLASSES, seed=2))
    v1 = run_update(
        bundle=old_bundle,
        base=None,
        classes=None,
        arch="small_cnn",
        method="independent",
        params=MethodParams(),
        recipe=RECIPE,
        seed=0,
        device="cpu",
    ).model
    outcome = run_update(
        bundle=bundle,
        base=v1,
        classes=None,
        arch=None,
        method="mpt-kl",
        params=MethodParams(),
        recipe=RECIPE,
        seed=0,
        device="cpu",
    )
    return bundle, v1, outcome


def test_the_old_classes_keep_the_old_models_order_and_the_new_ones_follow_in_data_order(updated):
    _, v1, outcome = updated
    assert v1.spec.classes == ("owl", "cat", "dog")
    assert outcome.model.spec.classes == ("owl", "cat", "dog", "emu", "yak", "ant")
    assert outcome.report.classes == outcome.model.spec.classes and outcome.report.k_old == 3
    assert outcome.reference.spec.classes == outcome.model.spec.classes


@pytest.mark.parametrize("which", ["model", "reference"])
def test_the_report_equals_an_evaluation_by_class_name(updated, which):
    bundle, v1, outcome = updated
    model = outcome.model if which == "model" else outcome.reference
    summary = outcome.report if which == "model" else outcome.reference_report
    # Every test sample is evaluated, in the data set's order: sample i is bundle.test's i.
    assert torch.equal(outcome.data.evaluation.images, bundle.test.images)
    images = bundle.test.images
    true = [bundle.classes[label] for label in bundle.test.labels.tolist()]
    old = predicted_names(v1.net, v1.spec.classes, v1.spec.mean, v1.spec.std, images)
    new = predicted_names(model.net, model.spec.classes, model.spec.mean, model.spec.std, images)
    expected = evaluate_by_name(true=true, old=old, new=new, old_classes=OLD_DATA_CLASSES, classes=UPDATE_DATA_CLASSES)
    # The case is not degenerate: the old model is mostly right, and some samples flip.
    old_scope = expected.scopes["old_classes"]
    assert old_scope["old_correct"] > old_scope["samples"] // 2
    assert old_scope["negative_flips"] > 0 and expected.scopes["all"]["positive_flips"] > 0

    assert_summary_matches(summary.to_dict(), expected)
    if which == "model":
        classes = summary.classes
        ledger = {
            row["sample_index"]: (
                row["kind"],
                classes[row["label"]],
                classes[row["old_prediction"]],
                classes[row["new_prediction"]],
            )
            for row in outcome.ledger.rows()
        }
        assert ledger == expected.flips
