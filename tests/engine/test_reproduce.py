"""`mpt reproduce` end to end on a tiny synthetic data set: results.json, the markdown report,
the sweep plot and the chain, all through mpt.cli.main."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpt.cli import main

TINY = ["--epochs", "1", "--batch-size", "32", "--train-samples-per-class", "40", "--arch", "small_cnn", "--quiet"]


def _striped(per_class: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """16x16 grey images: class c is a bright bar at its own row, over noise."""
    labels = np.repeat(np.arange(classes), per_class)
    images = rng.integers(0, 60, size=(labels.size, 16, 16), dtype=np.uint8)
    for i, c in enumerate(labels):
        images[i, 1 + 2 * c : 3 + 2 * c, 2:14] = 220
    return images, labels


def assert_headline_recomputes(figures: dict, counts: dict) -> None:
    """Every headline figure equals its formula (docs/METHOD.md) applied to the raw counts, and
    the counts hold the identities every report must."""
    every, old = counts["scopes"]["all"], counts["scopes"]["old_classes"]
    new_samples = counts["new_class_samples"]
    # New-class samples are neither negative flips nor right for the old model.
    assert every["negative_flips"] == old["negative_flips"] == figures["negative_flips"]
    assert every["old_correct"] == old["old_correct"]
    assert every["samples"] == old["samples"] + new_samples
    assert counts["both_correct"] == every["old_correct"] - every["negative_flips"]
    assert (
        counts["both_correct"] + counts["both_wrong"] + every["negative_flips"] + every["positive_flips"]
        == (every["samples"])
    )

    def relative(scope):
        denominator = scope["old_correct"] / scope["samples"] * (1 - scope["new_correct"] / scope["samples"])
        return scope["negative_flips"] / scope["samples"] / denominator if denominator else 0.0

    assert figures["nfr_old_classes"] == old["negative_flips"] / old["samples"]
    assert figures["nfr_all"] == every["negative_flips"] / every["samples"]
    assert figures["relative_nfr_old_classes"] == pytest.approx(relative(old), rel=1e-12)
    assert figures["relative_nfr_all"] == pytest.approx(relative(every), rel=1e-12)
    assert figures["pfr_all"] == every["positive_flips"] / every["samples"]
    assert figures["accuracy"] == every["new_correct"] / every["samples"]
    assert figures["accuracy_old_classes"] == old["new_correct"] / old["samples"]
    assert figures["old_model_accuracy_old_classes"] == old["old_correct"] / old["samples"]
    if new_samples:
        assert figures["accuracy_new_classes"] == pytest.approx(
            (every["new_correct"] - old["new_correct"]) / new_samples, rel=1e-12
        )
    else:
        assert figures["accuracy_new_classes"] is None
    assert figures["btc"] == (counts["both_correct"] / every["old_correct"] if every["old_correct"] else None)
    old_wrong = every["samples"] - every["old_correct"]
    assert figures["bec"] == (counts["both_wrong"] / old_wrong if old_wrong else None)
    assert figures["intrusion_flips"] == counts["intrusion_flips"] <= every["negative_flips"]


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    x_train, y_train = _striped(50, 6, rng)
    x_test, y_test = _striped(20, 6, rng)
    path = tmp_path_factory.mktemp("tiny") / "tiny.npz"
    np.savez(
        path,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        classes=np.array([f"c{i}" for i in range(6)]),
    )
    return path


def test_reproduce_writes_json_and_markdown(tiny_npz, tmp_path, capsys):
    out = tmp_path / "study"
    code = main(
        [
            "reproduce",
            "--data",
            str(tiny_npz),
            "--old-classes",
            "0-2",
            "--new-classes",
            "3-5",
            "--methods",
            "independent,mpt-kl",
            "--seeds",
            "0",
            "--out-dir",
            str(out),
            *TINY,
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["preset"] == "quick" and results["seeds"] == [0]
    assert results["recipe"]["epochs"] == 1 and results["recipe"]["train_samples_per_class"] == 40
    assert results["old_classes"] == ["c0", "c1", "c2"] and len(results["classes"]) == 6
    assert [m["seed"] for m in results["old_models"]] == [0]
    runs = results["runs"]
    assert [(r["kind"], r["method"]) for r in runs] == [("method", "independent"), ("method", "mpt-kl")]
    for run in runs:
        counts = run["counts"]
        # 20 evaluation images per class, 3 old classes and 3 new ones.
        assert counts["scopes"]["old_classes"]["samples"] == 60 and counts["scopes"]["all"]["samples"] == 120
        assert counts["new_class_samples"] == 60
        assert run["classes"] == [f"c{i}" for i in range(6)] and run["k_old"] == 3
        assert_headline_recomputes(run["headline"], counts)
        assert run["wall_s"] > 0
    # Both runs are judged against the same old model on the same samples.
    old_counts = [run["counts"]["scopes"]["old_classes"]["old_correct"] for run in runs]
    assert old_counts[0] == old_counts[1]
    assert results["runs"][0]["headline"]["old_model_accuracy_old_classes"] == old_counts[0] / 60
    assert runs[0]["bias"] is None and runs[1]["bias"] == 4.0
    # The independent row trained the reference; mpt-kl reused it from the store.
    assert "reference" in runs[0]["phase_s"] and "reference" not in runs[1]["phase_s"]
    markdown = (out / "results.md").read_text()
    assert "## Methods" in markdown and "| independent |" in markdown and "| mpt-kl |" in markdown
    assert "NFR old (%)" in markdown and "BTC (%)" in markdown
    assert "mpt-kl" in capsys.readouterr().out  # the console table


def test_reproduce_sweep_and_chain(tiny_npz, tmp_path):
    out = tmp_path / "sweep"
    code = main(
        [
            "reproduce",
            "--data",
            str(tiny_npz),
            "--old-classes",
            "0-2",
            "--new-classes",
            "3-5",
            "--methods",
            "mpt-kl",
            "--seeds",
            "0",
            "--sweep-bias",
            "0,4",
            "--chain",
            "0-1:0-3:0-5",
            "--chain-methods",
            "independent,mpt-kl",
            "--out-dir",
            str(out),
            *TINY,
        ]
    )
    assert code == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    sweep = [r for r in runs if r["kind"] == "sweep"]
    assert [r["bias"] for r in sweep] == [0.0, 4.0]
    assert "reused_from" not in sweep[0] and sweep[1]["reused_from"] == "mpt-kl"  # b=4 is the mpt-kl row
    (method_row,) = [r for r in runs if r["kind"] == "method" and r["method"] == "mpt-kl"]
    assert (sweep[1]["headline"], sweep[1]["counts"]) == (method_row["headline"], method_row["counts"])
    for run in sweep:
        assert_headline_recomputes(run["headline"], run["counts"])
        assert run["counts"]["scopes"]["all"]["old_correct"] == method_row["counts"]["scopes"]["all"]["old_correct"]
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    chain = [r for r in runs if r["kind"] == "chain"]
    assert [(r["method"], r["step"], len(r["classes"])) for r in chain] == [
        ("independent", 2, 4),
        ("independent", 3, 6),
        ("mpt-kl", 2, 4),
        ("mpt-kl", 3, 6),
    ]
    for run in chain:
        versus_first = run["versus_first"]
        assert run["first_classes"] == ["c0", "c1"] and run["classes"][:2] == ["c0", "c1"]
        assert versus_first["counts"]["scopes"]["all"]["samples"] == 40  # v1's two classes only
        assert versus_first["counts"]["new_class_samples"] == 0
        assert run["k_old"] == len(run["classes"]) - 2
        assert_headline_recomputes(run["headline"], run["counts"])
        assert_headline_recomputes(versus_first["headline"], versus_first["counts"])
        if run["step"] == 2:
            # v2's predecessor is v1: against v1 on v1's classes is its own old-classes scope.
            assert versus_first["counts"]["scopes"]["all"] == run["counts"]["scopes"]["old_classes"]
    markdown = (out / "results.md").read_text()
    assert "## Sweep of b" in markdown and "| b=0 |" in markdown and "## Chain of updates" in markdown
    assert "v1 -> v2" in markdown and "v2 -> v3" in markdown


def test_reproduce_rejects_unknown_method(tiny_npz, tmp_path, capsys):
    code = main(
        [
            "reproduce",
            "--data",
            str(tiny_npz),
            "--old-classes",
            "0-2",
            "--new-classes",
            "3-5",
            "--methods",
            "mpt-xx",
            "--out-dir",
            str(tmp_path),
            *TINY,
        ]
    )
    assert code == 2 and "unknown method" in capsys.readouterr().err


def test_reproduce_policy_sweep(tiny_npz, tmp_path):
    out = tmp_path / "policy"
    code = main(
        [
            "reproduce",
            "--data",
            str(tiny_npz),
            "--old-classes",
            "0-2",
            "--new-classes",
            "3-5",
            "--methods",
            "none",
            "--seeds",
            "0",
            "--policy-sweep",
            "0,1,4",
            "--selection",
            "max_accuracy_drop=0.01",
            "--out-dir",
            str(out),
            *TINY,
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["selection"] == {"policy": "min_nfr", "max_accuracy_drop": 0.01}
    rows = [r for r in results["runs"] if r["kind"] == "policy"]
    assert [r["label"] for r in rows] == ["independent", "b=0", "b=1", "b=4", "policy"]
    by_label = {r["label"]: r for r in rows}
    chosen = by_label["policy"]
    # The policy row is one of the b rows, chosen on the validation figures by min_nfr within 0.01.
    assert by_label[chosen["chosen"]]["headline"] == chosen["headline"]
    floor = by_label["independent"]["validation"]["accuracy"] - 0.01
    qualified = [r for r in rows[1:4] if r["validation"]["accuracy"] >= floor - 1e-9]
    if qualified:
        assert chosen["validation"]["nfr_old_classes"] == min(r["validation"]["nfr_old_classes"] for r in qualified)
    assert chosen["explanation"]
    markdown = (out / "results.md").read_text()
    assert "## The policy's choice beside fixed b" in markdown and "| policy |" in markdown
    assert "Chosen: seed 0:" in markdown and "target >= 50%" in markdown
