"""The training loop: exact resume after cancellation, reproducibility, failure modes."""

from __future__ import annotations

import pytest
import torch
from engine_support import synthetic_images

from mpt.data import ImageSet, channel_stats
from mpt.nets import build_net
from mpt.recipe import MethodParams, Recipe
from mpt.train import Callbacks, NonFiniteLoss, Teachers, TrainingCancelled, TrainingSetup, train

K_OLD, K = 5, 10


@pytest.fixture(scope="module")
def data():
    images, labels = synthetic_images(30, K, seed=4)  # 300 Fashion-MNIST-shaped images
    train_set = ImageSet(
        torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long(), [f"c{i}" for i in range(K)]
    )
    validation_images, validation_labels = synthetic_images(4, K, seed=5)
    validation = ImageSet(
        torch.from_numpy(validation_images).unsqueeze(1), torch.from_numpy(validation_labels).long(), train_set.classes
    )
    mean, std = channel_stats(train_set.images)
    return train_set, validation, mean, std


RECIPE = Recipe(epochs=3, batch_size=64, lr=0.05, poll_every_steps=1, crop_padding=2)


def new_mask():
    mask = torch.zeros(K, dtype=torch.bool)
    mask[K_OLD:] = True
    return mask


def teachers():
    return Teachers(
        old=build_net("small_cnn", num_classes=K_OLD, in_channels=1, seed=101),
        reference=build_net("small_cnn", num_classes=K, in_channels=1, seed=102),
    )


def run(data, *, method="mpt-kl", recipe=RECIPE, seed=7, net_seed=1, teacher_set=None, **kwargs):
    train_set, validation, mean, std = data
    net = build_net("small_cnn", num_classes=K, in_channels=1, seed=net_seed)
    setup = TrainingSetup(
        train_set=train_set,
        recipe=recipe,
        new_mask=new_mask(),
        mean=mean,
        std=std,
        seed=seed,
        teachers=teacher_set if teacher_set is not None else teachers(),
        validation=validation,
        device=torch.device("cpu"),
        **kwargs,
    )
    history = train(setup, net=net, method=method, params=MethodParams())
    return net, history


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(data, tmp_path):
    straight, straight_history = run(data)

    checkpoint = tmp_path / "run.ckpt"
    polls_after_checkpoint = []

    def should_cancel():
        # Cancel at the first poll after epoch 1's checkpoint exists (epoch 2's first step).
        if checkpoint.exists():
            polls_after_checkpoint.append(1)
            return True
        return False

    with pytest.raises(TrainingCancelled):
        run(data, checkpoint_path=checkpoint, callbacks=Callbacks(should_cancel=should_cancel))
    assert checkpoint.exists() and polls_after_checkpoint == [1]

    epochs_seen = []
    resumed, resumed_history = run(
        data,
        net_seed=999,  # a different init: the checkpoint must overwrite every tensor
        checkpoint_path=checkpoint,
        callbacks=Callbacks(on_epoch_end=lambda epoch, m: epochs_seen.append(epoch)),
    )
    assert epochs_seen == [1, 2]  # resumed after the one finished epoch
    assert_same_state(resumed, straight)
    assert resumed_history == straight_history[1:]


def test_seeded_runs_are_reproducible(data):
    recipe = Recipe(epochs=2, batch_size=64, lr=0.05, crop_padding=2)
    a, history_a = run(data, method="mpt-kl", recipe=recipe)
    b, history_b = run(data, method="mpt-kl", recipe=recipe)
    assert_same_state(a, b)
    assert history_a == history_b
    assert [m["epoch"] for m in history_a] == [0, 1]
    assert {"train_loss", "val_accuracy", "val_nfr", "lr"} <= set(history_a[0])
    c, _ = run(data, method="mpt-kl", recipe=recipe, seed=8)  # another data order and augmentation
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_training_learns_the_synthetic_task(data):
    _, history = run(
        data,
        method="independent",
        teacher_set=Teachers(),
        recipe=Recipe(epochs=3, batch_size=32, lr=0.05, crop_padding=0),
    )
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.3  # chance is 0.1


def test_huge_learning_rate_raises_non_finite_loss(data):
    with pytest.raises(NonFiniteLoss, match="non-finite"):
        run(data, method="independent", teacher_set=Teachers(), recipe=Recipe(epochs=2, batch_size=64, lr=1e30))


def test_nan_teacher_raises_non_finite_loss(data, tmp_path):
    bad = teachers()
    with torch.no_grad():
        bad.old.fc.weight.fill_(float("nan"))
    checkpoint = tmp_path / "nan.ckpt"
    with pytest.raises(NonFiniteLoss):
        run(
            data,
            teacher_set=bad,
            recipe=Recipe(epochs=1, batch_size=64, poll_every_steps=50),
            checkpoint_path=checkpoint,
        )
    assert not checkpoint.exists()  # no garbage weights stored


@pytest.mark.parametrize(
    "method, teacher_set, missing",
    [
        ("mpt-kl", Teachers(old=None), "the old model"),
        ("mpt-lm", "old-only", "an independent reference model"),
        ("pct-kl", Teachers(), "the old model"),
        ("elodi", "old-only", "an ensemble"),
    ],
)
def test_method_missing_its_teacher(data, method, teacher_set, missing):
    if teacher_set == "old-only":
        teacher_set = Teachers(old=build_net("small_cnn", num_classes=K_OLD, in_channels=1, seed=0))
    with pytest.raises(ValueError, match=f"method {method} needs {missing}"):
        run(data, method=method, teacher_set=teacher_set)


def elodi_run(data, *, method: str, params: MethodParams, epochs: int = 3):
    """Train with the old model and a two-model ensemble as teachers; returns the per-epoch
    train losses and the student's weights after each epoch."""
    train_set, _, mean, std = data
    net = build_net("small_cnn", num_classes=K, in_channels=1, seed=1)
    states = []
    setup = TrainingSetup(
        train_set=train_set,
        recipe=Recipe(epochs=epochs, batch_size=64, lr=0.05, crop_padding=2),
        new_mask=new_mask(),
        mean=mean,
        std=std,
        seed=0,
        teachers=Teachers(
            old=build_net("small_cnn", num_classes=K_OLD, in_channels=1, seed=13),
            ensemble=[build_net("small_cnn", num_classes=K, in_channels=1, seed=s) for s in (11, 12)],
        ),
        device=torch.device("cpu"),
        callbacks=Callbacks(
            on_epoch_end=lambda epoch, metrics: states.append({k: v.clone() for k, v in net.state_dict().items()})
        ),
    )
    history = train(setup, net=net, method=method, params=params)
    return [m["train_loss"] for m in history], states


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize("method", ["elodi", "elodi-topk"])
def test_elodi_is_plain_cross_entropy_before_its_start_epoch_and_distils_from_it_on(data, method):
    plain_losses, plain_states = elodi_run(data, method="independent", params=MethodParams())
    losses, states = elodi_run(data, method=method, params=MethodParams(elodi_start_epoch=1))
    # Epoch 0 (before elodi_start_epoch = 1): exactly the independent run, loss and weights.
    assert losses[0] == plain_losses[0]
    assert same_state(states[0], plain_states[0])
    # From epoch 1 on the distillation terms join: another loss, other weights.
    for epoch in (1, 2):
        assert torch.isfinite(torch.tensor(losses[epoch]))
        assert losses[epoch] != plain_losses[epoch], epoch
        assert not same_state(states[epoch], plain_states[epoch]), epoch


def test_elodi_whose_start_epoch_is_never_reached_is_plain_cross_entropy(data):
    plain_losses, plain_states = elodi_run(data, method="independent", params=MethodParams(), epochs=2)
    losses, states = elodi_run(data, method="elodi", params=MethodParams(elodi_start_epoch=2), epochs=2)
    assert losses == plain_losses
    assert all(same_state(a, b) for a, b in zip(states, plain_states, strict=True))
    # And one that starts at once differs from the first epoch.
    losses, states = elodi_run(data, method="elodi", params=MethodParams(elodi_start_epoch=0), epochs=2)
    assert losses[0] != plain_losses[0] and not same_state(states[0], plain_states[0])


def test_progress_reaches_one(data):
    progress = []
    run(
        data,
        method="independent",
        teacher_set=Teachers(),
        recipe=Recipe(epochs=1, batch_size=64, poll_every_steps=2),
        callbacks=Callbacks(on_progress=progress.append),
    )
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_launch_settings_leave_the_recipe_digest_alone():
    """cuda_graphs and pack_students change how the same maths is launched, not the weights it
    reaches: a cached reference stays valid; a job stored with the removed compile_on_cuda runs."""
    assert Recipe(cuda_graphs=True, pack_students="on").digest() == Recipe().digest()
    assert Recipe.from_dict({"compile_on_cuda": True, "epochs": 3}) == Recipe(epochs=3)
    with pytest.raises(ValueError, match="pack_students"):
        Recipe(pack_students="sometimes")
