"""Sweeps: students trained together equal students trained alone; the winner policy; the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from engine_support import synthetic_images

from mpt.cli import main
from mpt.data import DataBundle, ImageSet, channel_stats, content_digest
from mpt.nets import build_net
from mpt.recipe import MethodParams, Recipe
from mpt.sweep import choose_winner, grid, run_sweep
from mpt.train import Callbacks, Teachers, TrainingSetup, train, train_students
from mpt.update import run_update

K_OLD, K = 5, 10
RECIPE = Recipe(epochs=2, batch_size=64, lr=0.05, poll_every_steps=1, crop_padding=2)


def image_set(per_class: int, seed: int) -> ImageSet:
    images, labels = synthetic_images(per_class, K, seed=seed)
    return ImageSet(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long(), [f"c{i}" for i in range(K)])


def new_mask() -> torch.Tensor:
    mask = torch.zeros(K, dtype=torch.bool)
    mask[K_OLD:] = True
    return mask


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_students_trained_together_equal_students_trained_alone():
    train_set, validation = image_set(20, seed=4), image_set(3, seed=5)
    mean, std = channel_stats(train_set.images)
    teachers = Teachers(
        old=build_net("small_cnn", num_classes=K_OLD, in_channels=1, seed=101),
        reference=build_net("small_cnn", num_classes=K, in_channels=1, seed=102),
    )
    setup = TrainingSetup(
        train_set=train_set,
        recipe=RECIPE,
        new_mask=new_mask(),
        mean=mean,
        std=std,
        seed=7,
        teachers=teachers,
        validation=validation,
        device=torch.device("cpu"),
    )
    biases = [0.0, 4.0]
    epochs_seen = []
    together = [build_net("small_cnn", num_classes=K, in_channels=1, seed=1) for _ in biases]
    histories = train_students(
        dataclasses.replace(
            setup,
            callbacks=Callbacks(
                on_epoch_end=lambda epoch, metrics: epochs_seen.append((epoch, len(metrics["students"])))
            ),
        ),
        nets=together,
        methods=["mpt-kl"] * 2,
        params=[MethodParams(bias=b) for b in biases],
    )
    assert epochs_seen == [(0, 2), (1, 2)]
    for b, net_together, history_together in zip(biases, together, histories, strict=True):
        alone = build_net("small_cnn", num_classes=K, in_channels=1, seed=1)
        history_alone = train(setup, net=alone, method="mpt-kl", params=MethodParams(bias=b))
        assert_same_state(net_together, alone)
        assert history_together == history_alone
    # The two biases really trained two different students.
    assert not torch.equal(together[0].fc.weight, together[1].fc.weight)


def test_sweep_trials_equal_lone_updates_and_keep_their_validation_figures():
    train_set, test_set = image_set(24, seed=10), image_set(6, seed=11)
    bundle = DataBundle(train_set, test_set, content_digest(train_set, test_set))
    recipe = Recipe(epochs=1, batch_size=64, lr=0.05, validation_fraction=0.25)
    v1 = run_update(
        bundle=bundle,
        base=None,
        classes=train_set.classes[:K_OLD],
        arch="small_cnn",
        method="independent",
        params=MethodParams(),
        recipe=recipe,
        seed=3,
        device="cpu",
    ).model

    class MemoryStore(dict):
        load = dict.get

        def save(self, key, model):
            self[key] = model

    store = MemoryStore()
    outcome = run_sweep(
        bundle=bundle, base=v1, values={"bias": [0.0, 2.0]}, recipe=recipe, seed=3, store=store, device="cpu"
    )
    assert [t.params.bias for t in outcome.trials] == [0.0, 2.0]
    for trial in outcome.trials:
        assert {"accuracy", "nfr_old_classes", "nfr_all"} <= set(trial.validation)
        assert trial.validation_report.scopes.old_classes.samples == int((outcome.data.validation.labels < K_OLD).sum())
        lone = run_update(
            bundle=bundle,
            base=v1,
            classes=None,
            arch=None,
            method="mpt-kl",
            params=MethodParams(bias=trial.params.bias),
            recipe=recipe,
            seed=3,
            store=store,
            device="cpu",
        )
        assert_same_state(trial.model.net, lone.model.net)
    figures = [{"accuracy": t.val_accuracy, "nfr": t.val_nfr} for t in outcome.trials]
    assert outcome.winner == choose_winner(figures, max_nfr=outcome.policy["bound"])[0]
    assert outcome.policy["bound"] == outcome.reference_validation["nfr_old_classes"]
    assert outcome.report.k_old == K_OLD and outcome.reference_report is not None


def test_winner_policy():
    figures = [
        {"accuracy": 0.90, "nfr": 0.05},
        {"accuracy": 0.88, "nfr": 0.02},
        {"accuracy": 0.86, "nfr": 0.01},
        {"accuracy": 0.88, "nfr": 0.015},
    ]
    # Highest accuracy among trials within the bound; a tie on accuracy goes to the lower NFR.
    assert choose_winner(figures, max_nfr=0.03) == (3, "highest accuracy within the NFR bound")
    assert choose_winner(figures, max_nfr=0.05)[0] == 0  # the bound is inclusive
    assert choose_winner(figures, max_nfr=None)[0] == 0  # no bound: every trial qualifies
    # Nothing within the bound: the lowest NFR wins.
    index, reason = choose_winner(figures, max_nfr=0.001)
    assert index == 2 and "lowest NFR" in reason
    # Exact ties go to the earlier trial.
    assert choose_winner([{"accuracy": 0.5, "nfr": 0.1}] * 3, max_nfr=0.2)[0] == 0
    with pytest.raises(ValueError):
        choose_winner([], max_nfr=0.1)


def test_grid():
    base = MethodParams(tau=3.0)
    points = grid(base, {"bias": [0, 4], "beta": [1, 5]})
    assert [(p.bias, p.beta, p.tau) for p in points] == [(0, 1, 3.0), (0, 5, 3.0), (4, 1, 3.0), (4, 5, 3.0)]
    assert grid(base, {}) == [base]
    with pytest.raises(ValueError, match="unknown MethodParams"):
        grid(base, {"nonsense": [1]})


def test_cli_sweep(small_fashion_mnist, tmp_path):
    data = str(small_fashion_mnist)
    small = ["--epochs", "1", "--train-samples-per-class", "30", "--eval-samples-per-class", "10", "--quiet"]
    assert main(["train", "--data", data, "--classes", "0-4", "--out", str(tmp_path / "v1.safetensors"), *small]) == 0
    out = tmp_path / "sweep.json"
    code = main(
        [
            "sweep",
            "--data",
            data,
            "--base",
            str(tmp_path / "v1.safetensors"),
            "--sweep",
            "bias=0,2",
            "--cache",
            str(tmp_path / "refs"),
            "--out",
            str(tmp_path / "v2.safetensors"),
            "--json",
            str(out),
            *small,
        ]
    )
    assert code == 0 and (tmp_path / "v2.safetensors").exists()
    result = json.loads(out.read_text())
    assert [t["params"]["bias"] for t in result["trials"]] == [0, 2]
    assert result["winner"] in (0, 1) and result["policy"]["split"] == "validation"
    assert (
        main(
            [
                "sweep",
                "--data",
                data,
                "--base",
                str(tmp_path / "v1.safetensors"),
                "--sweep",
                "bogus=1",
                "--out",
                str(tmp_path / "x.safetensors"),
                *small,
            ]
        )
        == 2
    )
