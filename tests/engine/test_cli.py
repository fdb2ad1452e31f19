"""End to end through `mpt.cli.main` on a small class-incremental Fashion-MNIST subset:
v1 on classes 0-4, then updates to classes 0-9."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from mpt.cli import main
from mpt.cli_args import parse_classes
from mpt.data import DataError
from mpt.formats import FASHION_MNIST_CLASSES

COMMON = [
    "--epochs",
    "1",
    "--train-samples-per-class",
    "60",
    "--eval-samples-per-class",
    "40",
    "--device",
    "cpu",
    "--quiet",
    "--seed",
    "0",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_fashion_mnist):
    """Run train, update (mpt-kl), update (independent) and evaluate once for the module;
    returns the work folder and {name: (exit code, stdout, stderr)}."""
    work = tmp_path_factory.mktemp("cli")
    data = ["--data", str(small_fashion_mnist)]
    cache = ["--cache", str(work / "cache")]
    outputs = {}

    def call(name, argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
        outputs[name] = (rc, out.getvalue(), err.getvalue())

    v1 = str(work / "v1.safetensors")
    call("train", ["train", *data, "--classes", "0-4", "--out", v1, *COMMON])
    call(
        "mpt-kl",
        [
            "update",
            *data,
            "--base",
            v1,
            "--method",
            "mpt-kl",
            "--out",
            str(work / "v2-mpt.safetensors"),
            "--json",
            str(work / "mpt.json"),
            *cache,
            *COMMON,
        ],
    )
    call(
        "independent",
        [
            "update",
            *data,
            "--base",
            v1,
            "--method",
            "independent",
            "--out",
            str(work / "v2-ind.safetensors"),
            "--json",
            str(work / "ind.json"),
            *cache,
            *COMMON,
        ],
    )
    call(
        "evaluate",
        [
            "evaluate",
            *data,
            "--old",
            v1,
            "--new",
            str(work / "v2-mpt.safetensors"),
            "--json",
            str(work / "eval.json"),
            *COMMON,
        ],
    )
    return work, outputs


def test_every_command_succeeds(runs):
    work, outputs = runs
    for name, (rc, _, err) in outputs.items():
        assert rc == 0, f"{name}: {err}"
    assert "wrote" in outputs["train"][1] and "5 classes" in outputs["train"][1]
    for name in ("v1", "v2-mpt", "v2-ind"):
        assert (work / f"{name}.safetensors").is_file()
    # One cached independent reference, reused by the second update.
    assert len(list((work / "cache").glob("*.safetensors"))) == 1


def _check_report(report: dict):
    assert report["classes"] == FASHION_MNIST_CLASSES and report["k_old"] == 5
    scopes = report["scopes"]
    assert set(scopes) == {"all", "old_classes"}
    assert scopes["all"]["samples"] == 400  # 40 per class, 10 classes
    assert scopes["old_classes"]["samples"] == 200
    for scope in scopes.values():
        assert scope["nfr"] == scope["negative_flips"] / scope["samples"]
        assert scope["pfr"] == scope["positive_flips"] / scope["samples"]
        assert 0 <= scope["negative_flips"] <= scope["old_correct"] <= scope["samples"]
    # New-class samples cannot be negative flips: both scopes count the same flips.
    assert scopes["all"]["negative_flips"] == scopes["old_classes"]["negative_flips"]
    assert report["new_class_samples"] == 200


@pytest.mark.parametrize("name", ["mpt", "ind"])
def test_update_json(runs, name):
    work, _ = runs
    result = json.loads((work / f"{name}.json").read_text())
    assert result["method"] == {"mpt": "mpt-kl", "ind": "independent"}[name]
    for key in ("report", "reference_report"):
        _check_report(result[key])
    every = result["report"]["scopes"]["all"]
    assert len(result["ledger"]) == every["negative_flips"] + every["positive_flips"]
    kinds = [row["kind"] for row in result["ledger"]]
    assert kinds.count("negative") == every["negative_flips"]
    # Old confidence of a new-class label is 0.
    assert all(row["old_confidence"] == 0 for row in result["ledger"] if row["label"] >= 5)
    if name == "ind":
        # The independent update *is* the cached reference.
        assert result["report"] == result["reference_report"]
        mpt = json.loads((work / "mpt.json").read_text())
        assert mpt["reference_report"] == result["reference_report"]
    else:
        assert len(result["history"]) == 1


def test_printed_tables(runs):
    _, outputs = runs
    for name in ("mpt-kl", "independent"):
        out = outputs[name][1]
        header = out.splitlines()[0]
        assert name in header and "independent" in header
        for row in (
            "nfr_old_classes",
            "nfr_all",
            "relative_nfr_old_classes",
            "negative_flips",
            "accuracy",
            "accuracy_new_classes",
            "btc",
            "bec",
            "intrusion_flips",
        ):
            assert any(line.startswith(row) for line in out.splitlines()), row
    assert "v2-mpt" in outputs["evaluate"][1].splitlines()[0]


def test_evaluate_reproduces_the_update_report(runs):
    work, _ = runs
    evaluated = json.loads((work / "eval.json").read_text())
    updated = json.loads((work / "mpt.json").read_text())
    _check_report(evaluated["report"])
    for scope in ("all", "old_classes"):
        for key in ("samples", "negative_flips", "positive_flips", "old_correct", "new_correct"):
            assert evaluated["report"]["scopes"][scope][key] == updated["report"]["scopes"][scope][key]
    assert len(evaluated["ledger"]) == len(updated["ledger"])


def test_bad_class_spec_exits_2(small_fashion_mnist, tmp_path, capsys):
    rc = main(
        [
            "train",
            "--data",
            str(small_fashion_mnist),
            "--classes",
            "0-12",
            "--out",
            str(tmp_path / "x.safetensors"),
            *COMMON,
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "out of range" in err and "Traceback" not in err
    rc = main(
        [
            "train",
            "--data",
            str(small_fashion_mnist),
            "--classes",
            "Coat,Unicorn",
            "--out",
            str(tmp_path / "x.safetensors"),
            *COMMON,
        ]
    )
    assert rc == 2
    assert "Unicorn" in capsys.readouterr().err


@pytest.mark.parametrize("spec", ["4-2", "-1", "3-"])
def test_malformed_class_ranges_are_refused(spec):
    with pytest.raises(DataError, match="class range"):
        parse_classes(spec, FASHION_MNIST_CLASSES)


def test_class_spec_forms():
    assert parse_classes("0-2,7", FASHION_MNIST_CLASSES) == ["T-shirt/top", "Trouser", "Pullover", "Sneaker"]
    assert parse_classes("Coat, Bag", FASHION_MNIST_CLASSES) == ["Coat", "Bag"]
    assert parse_classes(None, FASHION_MNIST_CLASSES) is None


def test_update_data_lacking_an_old_class_exits_2(runs, small_fashion_mnist, tmp_path, capsys):
    work, _ = runs
    capsys.readouterr()
    rc = main(
        [
            "update",
            "--data",
            str(small_fashion_mnist),
            "--base",
            str(work / "v1.safetensors"),
            "--classes",
            "4-9",
            "--out",
            str(tmp_path / "y.safetensors"),
            "--cache",
            str(tmp_path / "c"),
            *COMMON,
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    # 4-9 keeps Coat (index 4) but drops the old classes 0-3, which the message names.
    assert "lacks old classes" in err
    assert all(name in err for name in FASHION_MNIST_CLASSES[:4]) and "Coat" not in err
    assert not (tmp_path / "y.safetensors").exists()


def test_corrupt_base_model_exits_2(small_fashion_mnist, tmp_path, capsys):
    base = tmp_path / "broken.safetensors"
    base.write_bytes(b"not a model")
    rc = main(
        [
            "update",
            "--data",
            str(small_fashion_mnist),
            "--base",
            str(base),
            "--out",
            str(tmp_path / "z.safetensors"),
            "--cache",
            str(tmp_path / "c"),
            *COMMON,
        ]
    )
    assert rc == 2
    assert "not a readable safetensors file" in capsys.readouterr().err
