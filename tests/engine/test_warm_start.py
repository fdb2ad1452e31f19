"""Recipe.warm_start: the update's student starts from the base model, the reference from scratch."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from engine_support import synthetic_images

import mpt.reference
from mpt.data import DataBundle, ImageSet, content_digest
from mpt.nets import build_net
from mpt.recipe import MethodParams, Recipe
from mpt.sweep import run_sweep
from mpt.update import run_update

K_OLD, K, SEED = 5, 10, 3
RECIPE = Recipe(epochs=1, batch_size=64, lr=0.05, crop_padding=2)
HEAD = ("fc.weight", "fc.bias")


def image_set(per_class: int, seed: int) -> ImageSet:
    images, labels = synthetic_images(per_class, K, seed=seed)
    return ImageSet(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long(), [f"c{i}" for i in range(K)])


@pytest.fixture(scope="module")
def bundle() -> DataBundle:
    train_set, test_set = image_set(20, seed=10), image_set(6, seed=11)
    return DataBundle(train_set, test_set, content_digest(train_set, test_set))


@pytest.fixture(scope="module")
def base(bundle):
    return run_update(
        bundle=bundle,
        base=None,
        classes=bundle.train.classes[:K_OLD],
        arch="small_cnn",
        method="independent",
        params=MethodParams(),
        recipe=RECIPE,
        seed=SEED,
        device="cpu",
    ).model


@pytest.fixture()
def initial_states(monkeypatch) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """(method, weights) of every network the pipeline hands to the training loop, as handed."""
    starts = []
    real_train = mpt.reference.train

    def recording_train(setup, *, net, method, **kwargs):
        starts.append((method, {k: v.clone() for k, v in net.state_dict().items()}))
        return real_train(setup, net=net, method=method, **kwargs)

    monkeypatch.setattr(mpt.reference, "train", recording_train)
    return starts


def update(bundle, base, *, method="mpt-kl", params=MethodParams(), **recipe_fields):
    return run_update(
        bundle=bundle,
        base=base,
        classes=None,
        arch=None,
        method=method,
        params=params,
        recipe=dataclasses.replace(RECIPE, **recipe_fields),
        seed=SEED,
        device="cpu",
    )


def fresh_state() -> dict[str, torch.Tensor]:
    return build_net("small_cnn", num_classes=K, in_channels=1, seed=SEED).state_dict()


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_warm_student_starts_from_the_base_except_the_new_head_rows(bundle, base, initial_states):
    update(bundle, base, warm_start=True)
    (reference_method, reference_start), (student_method, student_start) = initial_states
    assert (reference_method, student_method) == ("independent", "mpt-kl")
    fresh, old = fresh_state(), base.net.state_dict()
    assert_same(reference_start, fresh)
    for key, value in student_start.items():
        if key in HEAD:
            assert torch.equal(value[:K_OLD], old[key]) and torch.equal(value[K_OLD:], fresh[key][K_OLD:]), key
        else:
            assert torch.equal(value, old[key]), key


def test_off_by_default_starts_from_the_seeded_init_and_keeps_reference_keys(bundle, base, initial_states):
    assert Recipe().warm_start is False
    update(bundle, base)
    assert [method for method, _ in initial_states] == ["independent", "mpt-kl"]
    for _, start in initial_states:
        assert_same(start, fresh_state())
    # warm_start is left out of the references' cache key: the keys computed before it existed
    # stay valid, and warm and cold runs share their references.
    assert Recipe().digest() == Recipe(warm_start=True).digest()


def test_warm_independent_is_fine_tuning_not_the_reference(bundle, base, initial_states):
    outcome = update(bundle, base, method="independent", warm_start=True)
    assert outcome.model is not outcome.reference and len(outcome.history) == RECIPE.epochs
    assert [method for method, _ in initial_states] == ["independent", "independent"]
    assert torch.equal(initial_states[1][1]["fc.weight"][:K_OLD], base.net.state_dict()["fc.weight"])


def test_warm_sweep_students_equal_warm_lone_updates(bundle, base):
    recipe = dataclasses.replace(RECIPE, warm_start=True)
    trial = run_sweep(bundle=bundle, base=base, values={"bias": [2.0]}, recipe=recipe, seed=SEED, device="cpu").trials[
        0
    ]
    lone = update(bundle, base, params=MethodParams(bias=2.0), warm_start=True).model
    assert_same(trial.model.net.state_dict(), lone.net.state_dict())


def test_warm_start_needs_the_base_architecture(bundle, base):
    with pytest.raises(ValueError, match=r"warm_start needs the base model's architecture \(small_cnn\), not resnet18"):
        run_update(
            bundle=bundle,
            base=base,
            classes=None,
            arch="resnet18",
            method="mpt-kl",
            params=MethodParams(),
            recipe=dataclasses.replace(RECIPE, warm_start=True),
            seed=SEED,
            device="cpu",
        )
