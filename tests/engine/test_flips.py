"""mpt.flips.flip_report on hand-built cases whose answers are worked out here."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.flips import FlipSummary
from mpt.flips import flip_report, headline


def logits_from(preds: list[int], width: int, top: float) -> torch.Tensor:
    """Log-probabilities (so softmax gives them back): `top` on the prediction, the rest
    shared equally by the other classes."""
    rest = (1 - top) / (width - 1)
    rows = [[math.log(top if c == p else rest) for c in range(width)] for p in preds]
    return torch.tensor(rows)


# Classes a, b, c are old (k_old = 3); d is new and has samples; e is new and has none.
CLASSES = ["a", "b", "c", "d", "e"]
#            i:  0  1  2  3  4  5  6  7  8  9
LABELS = [0, 0, 1, 1, 2, 2, 3, 3, 2, 0]
OLD_PRED = [0, 0, 1, 2, 2, 0, 0, 1, 2, 0]
NEW_PRED = [0, 1, 3, 1, 2, 1, 3, 0, 3, 1]
# Per sample (o = old right, n = new right):
#   0: o n  both right            5: - -  both wrong
#   1: o -  negative  (0 -> 1)    6: - n  positive  (0 -> 3)   new-class sample
#   2: o -  negative  (1 -> 3)    7: - -  both wrong           new-class sample
#           intrusion: 3 is new   8: o -  negative  (2 -> 3)   intrusion
#   3: - n  positive  (2 -> 1)    9: o -  negative  (0 -> 1)
#   4: o n  both right
# old right: 0 1 2 4 8 9 -> 6      new right: 0 3 4 6 -> 4
# negative: 1 2 8 9 -> 4           positive: 3 6 -> 2
# both right: 0 4 -> 2             both wrong: 5 7 -> 2


@pytest.fixture()
def report():
    # Old model (3 outputs) puts 0.7 on its prediction, 0.15 on each other class;
    # new model (5 outputs) puts 0.6 on its prediction, 0.1 on each other class.
    return flip_report(
        labels=torch.tensor(LABELS),
        old_logits=logits_from(OLD_PRED, 3, 0.7),
        new_logits=logits_from(NEW_PRED, 5, 0.6),
        classes=CLASSES,
        k_old=3,
    )


def test_nfr_in_both_scopes_with_raw_counts(report):
    summary, _ = report
    every = summary.scopes.all
    # All N = 10 samples: NFR = 4/10, PFR = 2/10, ER_old = 4/10, ER_new = 6/10,
    # relative NFR = 0.4 / ((1 - 0.4) * 0.6) = 0.4 / 0.36
    assert every.samples == 10
    assert every.negative_flips == 4
    assert every.positive_flips == 2
    assert every.old_correct == 6
    assert every.new_correct == 4
    assert every.nfr == pytest.approx(0.4)
    assert every.pfr == pytest.approx(0.2)
    assert every.relative_nfr == pytest.approx(0.4 / 0.36)
    assert every.old_accuracy == pytest.approx(0.6)
    assert every.new_accuracy == pytest.approx(0.4)

    old = summary.scopes.old_classes
    # Old-class samples (label < 3): 0 1 2 3 4 5 8 9 -> 8.
    # old right: 0 1 2 4 8 9 -> 6; new right: 0 3 4 -> 3; negative 1 2 8 9 -> 4; positive 3 -> 1.
    # NFR = 4/8 = 0.5; ER_old = 2/8; ER_new = 5/8; relative = 0.5 / (0.75 * 0.625) = 0.5 / 0.46875
    assert old.samples == 8
    assert old.negative_flips == 4
    assert old.positive_flips == 1
    assert old.old_correct == 6
    assert old.new_correct == 3
    assert old.nfr == pytest.approx(0.5)
    assert old.pfr == pytest.approx(1 / 8)
    assert old.relative_nfr == pytest.approx(0.5 / 0.46875)
    # The raw counts re-derive every ratio.
    for scope in (every, old):
        assert scope.nfr == scope.negative_flips / scope.samples
        assert scope.pfr == scope.positive_flips / scope.samples


def test_btc_bec_accuracies_intrusions(report):
    summary, _ = report
    # BTC = both right / old right = 2/6; BEC = both wrong / old wrong = 2/4
    assert summary.both_correct == 2
    assert summary.both_wrong == 2
    assert summary.btc == pytest.approx(2 / 6)
    assert summary.bec == pytest.approx(0.5)
    # Intrusion flips: negative flips predicted as a new class: samples 2 and 8.
    assert summary.intrusion_flips == 2
    # New-class samples 6 and 7: new model right on 6 only.
    assert summary.new_class_samples == 2
    assert summary.new_class_accuracy == pytest.approx(0.5)
    assert summary.k_old == 3 and summary.classes == tuple(CLASSES)

    top = headline(summary)
    assert top["nfr_old_classes"] == pytest.approx(0.5)
    assert top["nfr_all"] == pytest.approx(0.4)
    assert top["accuracy"] == pytest.approx(0.4)  # overall
    assert top["accuracy_old_classes"] == pytest.approx(3 / 8)
    assert top["accuracy_new_classes"] == pytest.approx(0.5)
    assert top["old_model_accuracy_old_classes"] == pytest.approx(6 / 8)
    assert top["negative_flips"] == 4
    assert top["intrusion_flips"] == 2
    # Every headline key, each read from its own place in the summary.
    assert top == {
        "nfr_old_classes": summary.scopes.old_classes.nfr,
        "nfr_all": summary.scopes.all.nfr,
        "relative_nfr_old_classes": pytest.approx(0.5 / 0.46875),
        "relative_nfr_all": pytest.approx(0.4 / 0.36),
        "pfr_all": pytest.approx(0.2),
        "negative_flips": 4,
        "accuracy": pytest.approx(0.4),
        "accuracy_old_classes": pytest.approx(3 / 8),
        "accuracy_new_classes": pytest.approx(0.5),
        "old_model_accuracy_old_classes": pytest.approx(6 / 8),
        "btc": pytest.approx(2 / 6),
        "bec": pytest.approx(0.5),
        "intrusion_flips": 2,
    }


def test_per_class_rows(report):
    summary, _ = report
    rows = {row.name: row for row in summary.per_class}
    assert [row.index for row in summary.per_class] == [0, 1, 2, 3, 4]
    expected = {
        #     samples, old ok, new ok, neg, pos, intrusion, is_new
        "a": (3, 3, 1, 2, 0, 0, False),  # samples 0 1 9
        "b": (2, 1, 1, 1, 1, 1, False),  # samples 2 3
        "c": (3, 2, 1, 1, 0, 1, False),  # samples 4 5 8
        "d": (2, 0, 1, 0, 1, 0, True),  # samples 6 7
        "e": (0, 0, 0, 0, 0, 0, True),  # no samples
    }
    for name, (n, old_ok, new_ok, neg, pos, intr, is_new) in expected.items():
        row = rows[name]
        assert (
            row.samples,
            row.old_correct,
            row.new_correct,
            row.negative_flips,
            row.positive_flips,
            row.intrusion_flips,
            row.is_new,
        ) == (n, old_ok, new_ok, neg, pos, intr, is_new), name
    assert rows["a"].nfr == pytest.approx(2 / 3)
    assert rows["b"].nfr == pytest.approx(1 / 2)
    assert rows["c"].nfr == pytest.approx(1 / 3)
    assert rows["d"].nfr == 0
    assert rows["a"].old_accuracy == pytest.approx(1.0)
    assert rows["c"].new_accuracy == pytest.approx(1 / 3)
    # The empty class: every rate is undefined.
    assert rows["e"].nfr is None
    assert rows["e"].old_accuracy is None
    assert rows["e"].new_accuracy is None


def test_transitions(report):
    summary, _ = report
    got = {(t.kind, t.old_prediction, t.new_prediction): (t.count, t.intrusion) for t in summary.transitions}
    assert got == {
        ("negative", 0, 1): (2, False),  # samples 1 and 9
        ("negative", 1, 3): (1, True),  # sample 2
        ("negative", 2, 3): (1, True),  # sample 8
        ("positive", 2, 1): (1, False),  # sample 3
        ("positive", 0, 3): (1, False),  # sample 6: positive flips are never intrusions
    }


def test_summary_json_round_trip(report):
    summary, _ = report
    stored = summary.to_dict()
    # The shape the CLI writes, the database stores and the API reads: plain JSON already.
    assert json.loads(json.dumps(stored)) == stored
    assert list(stored) == [
        "classes",
        "k_old",
        "scopes",
        "new_class_accuracy",
        "new_class_samples",
        "both_correct",
        "both_wrong",
        "btc",
        "bec",
        "intrusion_flips",
        "per_class",
        "transitions",
    ]
    assert list(stored["scopes"]) == ["all", "old_classes"]
    assert stored["transitions"][0]["kind"] == "negative" and type(stored["transitions"][0]["kind"]) is str
    assert FlipSummary.from_dict(stored) == summary
    with pytest.raises(TypeError):
        FlipSummary.from_dict({**stored, "scopes": {**stored["scopes"], "all": {"nfr": 0.1}}})


def test_ledger_rows(report):
    _, ledger = report
    assert len(ledger) == 6  # 4 negative + 2 positive
    rows = ledger.rows()
    assert [r["sample_index"] for r in rows] == [1, 2, 3, 6, 8, 9]
    assert [r["kind"] for r in rows] == ["negative", "negative", "positive", "positive", "negative", "negative"]
    assert [r["label"] for r in rows] == [0, 1, 1, 3, 2, 0]
    assert [r["old_prediction"] for r in rows] == [0, 1, 2, 0, 2, 0]
    assert [r["new_prediction"] for r in rows] == [1, 3, 1, 3, 3, 1]
    # Confidence = each model's probability of the *label*:
    #   old: 0.7 when it predicted the label, else 0.15; 0 for a new-class label (sample 6),
    #   whatever it put on its own classes.
    #   new: 0.6 when it predicted the label, else 0.1.
    assert [r["old_confidence"] for r in rows] == pytest.approx([0.7, 0.7, 0.15, 0.0, 0.7, 0.7], abs=1e-6)
    assert rows[3]["old_confidence"] == 0.0
    assert [r["new_confidence"] for r in rows] == pytest.approx([0.1, 0.1, 0.6, 0.6, 0.1, 0.1], abs=1e-6)


def test_no_new_classes():
    # k_old == K == 3; samples (y, o, n): (0,0,0) (1,1,2) (2,0,2) (2,2,2)
    # negative: sample 1; positive: sample 2; old right 3; new right 3.
    labels = torch.tensor([0, 1, 2, 2])
    summary, ledger = flip_report(
        labels=labels,
        old_logits=logits_from([0, 1, 0, 2], 3, 0.8),
        new_logits=logits_from([0, 2, 2, 2], 3, 0.8),
        classes=["x", "y", "z"],
        k_old=3,
    )
    assert summary.scopes.all == summary.scopes.old_classes
    scope = summary.scopes.all
    assert (scope.samples, scope.negative_flips, scope.positive_flips) == (4, 1, 1)
    # NFR = 1/4; ER_old = ER_new = 1/4; relative = 0.25 / (0.75 * 0.25) = 4/3
    assert scope.nfr == pytest.approx(0.25)
    assert scope.relative_nfr == pytest.approx(4 / 3)
    assert summary.new_class_samples == 0
    assert summary.new_class_accuracy is None
    assert summary.intrusion_flips == 0
    assert all(not row.is_new for row in summary.per_class)
    assert len(ledger) == 2


def test_relative_nfr_is_zero_when_its_denominator_is():
    labels = torch.tensor([0, 1, 2, 0])
    # New model perfect: ER_new = 0 -> denominator 0 -> relative NFR 0 (and NFR 0).
    summary, _ = flip_report(
        labels=labels,
        old_logits=logits_from([0, 0, 2, 1], 3, 0.5),
        new_logits=logits_from([0, 1, 2, 0], 3, 0.5),
        classes=["p", "q", "r"],
        k_old=3,
    )
    assert summary.scopes.all.relative_nfr == 0.0
    assert summary.scopes.all.nfr == 0.0
    # Old model always wrong: 1 - ER_old = 0 -> relative NFR 0; BTC undefined, BEC = 2/4.
    summary, _ = flip_report(
        labels=labels,
        old_logits=logits_from([1, 0, 0, 2], 3, 0.5),
        new_logits=logits_from([0, 2, 2, 1], 3, 0.5),
        classes=["p", "q", "r"],
        k_old=3,
    )
    scope = summary.scopes.all
    assert scope.relative_nfr == 0.0 and scope.nfr == 0.0 and scope.positive_flips == 2
    assert summary.btc is None
    assert summary.bec == pytest.approx(0.5)


def test_bec_is_none_when_the_old_model_is_always_right():
    labels = torch.tensor([0, 1, 1])
    summary, _ = flip_report(
        labels=labels,
        old_logits=logits_from([0, 1, 1], 2, 0.9),
        new_logits=logits_from([0, 0, 1], 2, 0.9),
        classes=["u", "v"],
        k_old=2,
    )
    assert summary.bec is None
    assert summary.btc == pytest.approx(2 / 3)  # both right on samples 0 and 2 of 3


def test_only_new_class_samples():
    # Every sample is of a new class: the old-classes scope is empty, nothing can flip negatively.
    summary, ledger = flip_report(
        labels=torch.tensor([2, 2]),
        old_logits=logits_from([0, 1], 2, 0.9),
        new_logits=logits_from([2, 0], 3, 0.9),
        classes=["u", "v", "w"],
        k_old=2,
    )
    old = summary.scopes.old_classes
    assert old.samples == 0 and old.nfr == 0.0 and old.pfr == 0.0 and old.relative_nfr == 0.0
    assert old.old_accuracy is None
    assert summary.new_class_accuracy == pytest.approx(0.5)
    assert [r["kind"] for r in ledger.rows()] == ["positive"]
    assert ledger.rows()[0]["old_confidence"] == 0.0


def test_mismatched_widths_are_refused():
    with pytest.raises(ValueError, match="k_old"):
        flip_report(
            labels=torch.tensor([0]),
            old_logits=torch.zeros(1, 2),
            new_logits=torch.zeros(1, 3),
            classes=["a", "b", "c"],
            k_old=3,
        )


# ---------------------------------------------------------------------------------------------
# Second, independent checks of the relative NFR's denominator and of intrusions
# ---------------------------------------------------------------------------------------------


def one_hot_logits(predictions: list[int], width: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predictions, dtype=torch.long), width).float() * 5


def test_relative_nfr_and_intrusions_on_a_second_hand_worked_case():
    # Old classes a, b (k_old = 2); new classes c, d. Per sample (label y, old o, new n):
    #   0: a a a  both right         5: a b d  both wrong (into a new class, but the old model was wrong too)
    #   1: a a c  negative, intrusion into c (index k_old itself)
    #   2: b b d  negative, intrusion into d (the last index)
    #   3: b b a  negative, into an old class: no intrusion
    #   4: b a b  positive           6: c a c  positive, a new-class sample
    #   7: d b d  positive, a new-class sample (the same pair b -> d as sample 2, but positive)
    #   8: b b b  both right         9: a a b  negative, into an old class
    labels = [0, 0, 1, 1, 1, 0, 2, 3, 1, 0]
    old_pred = [0, 0, 1, 1, 0, 1, 0, 1, 1, 0]
    new_pred = [0, 2, 3, 0, 1, 3, 2, 3, 1, 1]
    summary, ledger = flip_report(
        labels=torch.tensor(labels),
        old_logits=one_hot_logits(old_pred, 2),
        new_logits=one_hot_logits(new_pred, 4),
        classes=["a", "b", "c", "d"],
        k_old=2,
    )
    every, old = summary.scopes.all, summary.scopes.old_classes
    # Both right: 0 and 8; both wrong: 5 only (positive flips are not "both wrong").
    assert (summary.both_correct, summary.both_wrong) == (2, 1)
    assert (summary.btc, summary.bec) == (pytest.approx(2 / 6), pytest.approx(1 / 4))
    # All 10: old right 0 1 2 3 8 9 (ER_old = 0.4), new right 0 4 6 7 8 (ER_new = 0.5),
    # negative 1 2 3 9: NFR 0.4, relative 0.4 / (0.6 * 0.5) = 4/3. ER_old and ER_new differ,
    # so swapping them (0.4 / (0.5 * 0.4) = 2) or dropping a "1 -" (0.4 / 0.2 = 2) shows.
    assert (every.samples, every.old_correct, every.new_correct, every.negative_flips) == (10, 6, 5, 4)
    assert every.relative_nfr == pytest.approx(4 / 3)
    # Old classes (0-5, 8, 9): old right 6 of 8 (ER_old = 1/4), new right 0 4 8 (ER_new = 5/8),
    # NFR 4/8: relative 0.5 / (0.75 * 0.625).
    assert (old.samples, old.old_correct, old.new_correct, old.negative_flips) == (8, 6, 3, 4)
    assert old.relative_nfr == pytest.approx(0.5 / (0.75 * 0.625))
    # Intrusions: samples 1 and 2 only.
    assert summary.intrusion_flips == 2
    rows = {row.name: row.intrusion_flips for row in summary.per_class}
    assert rows == {"a": 1, "b": 1, "c": 0, "d": 0}
    got = {(t.kind, t.old_prediction, t.new_prediction): (t.count, t.intrusion) for t in summary.transitions}
    assert got == {
        ("negative", 0, 2): (1, True),
        ("negative", 1, 3): (1, True),
        ("negative", 1, 0): (1, False),
        ("negative", 0, 1): (1, False),
        ("positive", 0, 1): (1, False),
        ("positive", 0, 2): (1, False),
        ("positive", 1, 3): (1, False),
    }
    negatives = [r["sample_index"] for r in ledger.rows() if r["kind"] == "negative"]
    assert negatives == [1, 2, 3, 9]


def brute_force(labels: list[int], old_pred: list[int], new_pred: list[int], k_old: int) -> dict:
    """docs/METHOD.md's figures by a loop over samples, with the formulas written out once more."""

    def scope(rows):
        n = len(rows)
        negative = sum(o == y and nw != y for y, o, nw in rows)
        positive = sum(o != y and nw == y for y, o, nw in rows)
        old_correct = sum(o == y for y, o, _ in rows)
        new_correct = sum(nw == y for y, _, nw in rows)
        old_accuracy = old_correct / n if n else 0.0
        new_error = (n - new_correct) / n if n else 0.0
        nfr = negative / n if n else 0.0
        denominator = old_accuracy * new_error
        return {
            "samples": n,
            "negative_flips": negative,
            "positive_flips": positive,
            "old_correct": old_correct,
            "new_correct": new_correct,
            "nfr": nfr,
            "relative_nfr": nfr / denominator if denominator else 0.0,
        }

    rows = list(zip(labels, old_pred, new_pred, strict=True))
    both_correct = sum(o == y == nw for y, o, nw in rows)
    both_wrong = sum(o != y and nw != y for y, o, nw in rows)
    old_right = sum(o == y for y, o, _ in rows)
    return {
        "all": scope(rows),
        "old_classes": scope([row for row in rows if row[0] < k_old]),
        "intrusion_flips": sum(o == y and nw != y and nw >= k_old for y, o, nw in rows),
        "both_correct": both_correct,
        "both_wrong": both_wrong,
        "btc": both_correct / old_right if old_right else None,
        "bec": both_wrong / (len(rows) - old_right) if len(rows) > old_right else None,
    }


@st.composite
def flip_cases(draw):
    k_old = draw(st.integers(1, 4))
    k = draw(st.integers(k_old, k_old + 3))
    n = draw(st.integers(1, 40))
    labels = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    old_pred = draw(st.lists(st.integers(0, k_old - 1), min_size=n, max_size=n))
    new_pred = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    return k_old, k, labels, old_pred, new_pred


@settings(max_examples=300, derandomize=True, deadline=None)
@given(flip_cases())
def test_every_scope_figure_equals_a_per_sample_loop(case):
    k_old, k, labels, old_pred, new_pred = case
    summary, _ = flip_report(
        labels=torch.tensor(labels),
        old_logits=one_hot_logits(old_pred, k_old),
        new_logits=one_hot_logits(new_pred, k),
        classes=[f"c{i}" for i in range(k)],
        k_old=k_old,
    )
    expected = brute_force(labels, old_pred, new_pred, k_old)
    for name in ("all", "old_classes"):
        figures = getattr(summary.scopes, name)
        for key in ("samples", "negative_flips", "positive_flips", "old_correct", "new_correct"):
            assert getattr(figures, key) == expected[name][key], (name, key)
        assert figures.nfr == pytest.approx(expected[name]["nfr"])
        assert figures.relative_nfr == pytest.approx(expected[name]["relative_nfr"]), name
    assert summary.intrusion_flips == expected["intrusion_flips"]
    assert sum(row.intrusion_flips for row in summary.per_class) == expected["intrusion_flips"]
    assert (summary.both_correct, summary.both_wrong) == (expected["both_correct"], expected["both_wrong"])
    for key in ("btc", "bec"):
        value = getattr(summary, key)
        assert value == (None if expected[key] is None else pytest.approx(expected[key])), key
