"""Sweeps: students trained together equal students trained alone; the winner policy; the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from engine_support import synthetic_images

from contracts.selection import (
    DEFAULT_MAX_ACCURACY_DROP,
    DEFAULT_SWEEP,
    MAX_CANDIDATES,
    Figures,
    Policy,
    Selection,
    SweepError,
    candidate_label,
    candidate_params,
    check_sweep,
    choose,
    resolve,
)
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
    # Two epochs on 90 images per class: enough for the two trials to differ in validation
    # accuracy, so that the choice between them means something.
    small = ["--epochs", "2", "--train-samples-per-class", "90", "--eval-samples-per-class", "10", "--quiet"]
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
            "bias=0,4",
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
    assert [t["params"]["bias"] for t in result["trials"]] == [0, 4]
    assert result["policy"]["split"] == "validation"
    # Without --max-val-nfr the bound is the reference's own validation NFR; the winner is
    # the most accurate trial within it (ties: lower NFR, then the earlier trial), or the
    # lowest NFR (ties: higher accuracy, earlier) when none is within it. Worked out here
    # from the trials' figures, independently of mpt.sweep.choose_winner.
    bound = result["reference_validation"]["nfr_old_classes"]
    assert result["policy"]["bound"] == bound
    figures = [(t["validation"]["accuracy"], t["validation"]["nfr_old_classes"]) for t in result["trials"]]
    within = [i for i, (_, nfr) in enumerate(figures) if nfr <= bound]
    if within:
        expected = sorted(within, key=lambda i: (-figures[i][0], figures[i][1], i))[0]
    else:
        expected = sorted(range(len(figures)), key=lambda i: (figures[i][1], -figures[i][0], i))[0]
    assert result["winner"] == expected, (figures, bound)
    assert figures[0] != figures[1]  # not a tie settled by order
    # The file written is the winner's: evaluating it reproduces the sweep's report.
    evaluated = tmp_path / "evaluated.json"
    assert (
        main(
            [
                "evaluate",
                "--data",
                data,
                "--old",
                str(tmp_path / "v1.safetensors"),
                "--new",
                str(tmp_path / "v2.safetensors"),
                "--json",
                str(evaluated),
                *small,
            ]
        )
        == 0
    )
    assert json.loads(evaluated.read_text())["report"] == result["report"]
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


# ---------------------------------------------------------------------------------------------
# contracts.selection: the service's policies, its sweep checks and its defaults
# ---------------------------------------------------------------------------------------------

REFERENCE = Figures(accuracy=0.80, nfr=0.04)
CANDIDATES = [Figures(0.81, 0.05), Figures(0.80, 0.02), Figures(0.795, 0.01), Figures(0.79, 0.005)]
LABELS = ["bias=0", "bias=1", "bias=2", "bias=4"]


def test_min_nfr_within_an_accuracy_drop_of_the_reference():
    selection = Selection(Policy.MIN_NFR).resolved()
    assert selection.max_accuracy_drop == DEFAULT_MAX_ACCURACY_DROP == 0.005
    choice = choose(selection, CANDIDATES, REFERENCE, LABELS)
    # Floor 0.80 - 0.005 = 0.795, inclusive: bias=0, 1, 2 qualify; bias=2 flips least of them.
    assert choice.qualified == [0, 1, 2] and choice.winner == 2 and not choice.fallback
    assert choice.bound == pytest.approx(0.795)
    assert "bias=2" in choice.explanation and "lowest NFR" in choice.explanation
    assert "0.005" in choice.rule or "0.50 points" in choice.rule
    # A wider drop admits bias=4.
    assert choose(Selection(Policy.MIN_NFR, max_accuracy_drop=0.02).resolved(), CANDIDATES, REFERENCE).winner == 3
    # None within the floor: the highest accuracy (the smallest cost) is the fallback.
    far_behind = [Figures(0.70, 0.01), Figures(0.75, 0.03), Figures(0.75, 0.02)]
    choice = choose(selection, far_behind, REFERENCE, ["a", "b", "c"])
    assert choice.fallback and choice.qualified == [] and choice.winner == 2
    assert "No candidate" in choice.explanation and "fallback" in choice.explanation


def test_max_accuracy_within_an_absolute_or_relative_nfr_bound():
    # Default: no more flips than the reference (ratio 1): bias=1, 2, 4 qualify; bias=1 is the most accurate.
    choice = choose(Selection(Policy.MAX_ACCURACY).resolved(), CANDIDATES, REFERENCE, LABELS)
    assert choice.bound == pytest.approx(0.04) and choice.qualified == [1, 2, 3] and choice.winner == 1
    # Half the reference's NFR: 0.02, inclusive.
    choice = choose(Selection(Policy.MAX_ACCURACY, max_nfr_ratio=0.25).resolved(), CANDIDATES, REFERENCE, LABELS)
    assert choice.bound == pytest.approx(0.01) and choice.winner == 2
    choice = choose(Selection(Policy.MAX_ACCURACY, max_nfr=0.001).resolved(), CANDIDATES, REFERENCE, LABELS)
    assert choice.fallback and choice.winner == 3 and "lowest NFR" in choice.explanation
    # Ties: the lower NFR, then the earlier candidate.
    tied = [Figures(0.8, 0.02), Figures(0.8, 0.01), Figures(0.8, 0.01)]
    assert choose(Selection(Policy.MAX_ACCURACY).resolved(), tied, REFERENCE).winner == 1


def test_selection_bounds_belong_to_their_policy():
    with pytest.raises(SweepError) as error:
        Selection(Policy.MIN_NFR, max_nfr=0.1).resolved()
    assert error.value.field == ("selection", "max_nfr")
    with pytest.raises(SweepError) as error:
        Selection(Policy.MAX_ACCURACY, max_nfr=0.1, max_nfr_ratio=1).resolved()
    assert error.value.field == ("selection", "max_nfr_ratio")
    with pytest.raises(SweepError) as error:
        Selection(Policy.MAX_ACCURACY, max_accuracy_drop=0.1).resolved()
    assert error.value.field == ("selection", "max_accuracy_drop")
    assert Selection.from_dict(Selection(Policy.MAX_ACCURACY, max_nfr=0.02).to_dict()) == Selection(
        Policy.MAX_ACCURACY, max_nfr=0.02
    )


def test_sweep_checks_name_the_field():
    def field_of(values, method="mpt-kl", fixed=None, has_base=True):
        with pytest.raises(SweepError) as error:
            check_sweep(values, method=method, fixed_params=fixed or {}, has_base=has_base)
        return error.value.field, error.value.message

    assert check_sweep({"bias": [0, 1], "tau": [2, 5]}, method="mpt-kl", fixed_params={}, has_base=True) == {
        "bias": [0, 1],
        "tau": [2, 5],
    }
    field, message = field_of({"bias": [0, 1, 2, 4], "tau": [1, 2, 5]})
    assert field == ("sweep", "tau") and "12 candidates" in message and f"at most {MAX_CANDIDATES}" in message
    assert field_of({"bogus": [1]})[0] == ("sweep", "bogus")
    assert field_of({"bias": []})[0] == ("sweep", "bias")
    assert field_of({"bias": [1, 1]})[0] == ("sweep", "bias")
    field, message = field_of({"bias": [0, 1]}, method="pct-kl")
    assert field == ("sweep", "bias") and "does not use bias" in message
    assert field_of({"bias": [0, 1]}, fixed={"bias": 2})[0] == ("sweep", "bias")
    assert field_of({"elodi_ensemble_size": [2, 3]}, method="elodi")[0] == ("sweep", "elodi_ensemble_size")
    assert field_of({"bias": [0, 1]}, has_base=False)[0] == ("sweep",)


def test_service_defaults():
    # An MPT method without b: the default sweep and min_nfr within 0.005.
    sweep, selection = resolve(method="mpt-kl", fixed_params={}, sweep=None, selection=None, has_base=True)
    assert sweep == {"bias": list(DEFAULT_SWEEP["bias"])} == {"bias": [0.0, 1.0, 2.0, 4.0]}
    assert selection == Selection(Policy.MIN_NFR, max_accuracy_drop=0.005)
    # b given: exactly one run, as before.
    assert resolve(method="mpt-kl", fixed_params={"bias": 4}, sweep=None, selection=None, has_base=True) == (None, None)
    # Methods without b, and first versions, train one model.
    assert resolve(method="pct-kl", fixed_params={}, sweep=None, selection=None, has_base=True) == (None, None)
    assert resolve(method="independent", fixed_params={}, sweep=None, selection=None, has_base=False) == (None, None)
    # A selection alone shapes the default sweep; with b fixed there is nothing to choose from.
    _, selection = resolve(
        method="mpt-lm", fixed_params={}, sweep=None, selection=Selection(Policy.MAX_ACCURACY), has_base=True
    )
    assert selection == Selection(Policy.MAX_ACCURACY, max_nfr_ratio=1.0)
    with pytest.raises(SweepError) as error:
        resolve(method="mpt-kl", fixed_params={"bias": 1}, sweep=None, selection=Selection(), has_base=True)
    assert error.value.field == ("selection",) and "method_params.bias" in error.value.message
    assert candidate_params({"bias": [0, 1], "tau": [2]}) == [{"bias": 0, "tau": 2}, {"bias": 1, "tau": 2}]
    assert candidate_label({"bias": 1.0, "tau": 2.5}, ["bias", "tau"]) == "bias=1, tau=2.5"
