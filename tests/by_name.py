"""A flip evaluation done by class name, for checking reports whose index space is not the data
set's: each model's argmax is turned into a class name through the model's own class list,
each label into a name through the data set's, and every count compares names only.

Also the images for such tests: the class named N always has its bright bar at ROWS[N],
whatever its index in a data set, so an old model trained on one data set recognises its
classes in another that lists them in another order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

# The row of each class's bar, by name: 20x20 images hold six bars.
ROWS = {"owl": 1, "cat": 4, "dog": 7, "emu": 10, "yak": 13, "ant": 16}


def striped_by_name(classes: list[str], per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(N, 20, 20) uint8 images and labels indexing `classes`, shuffled; noisy on purpose (a
    jittered, dimmer bar over bright noise) so that models make a few mistakes."""
    labels = np.repeat(np.arange(len(classes)), per_class)
    rng.shuffle(labels)
    images = rng.integers(0, 110, size=(labels.size, 20, 20), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = ROWS[classes[label]] + int(rng.integers(-1, 2))
        row = min(max(row, 0), 18)
        images[i, row : row + 2, 2:18] = rng.integers(120, 230)
    return images, labels.astype(np.int64)


def predicted_names(net: torch.nn.Module, classes, mean, std, images: torch.Tensor) -> list[str]:
    """The class name each image is predicted as: a plain float32 forward in evaluation mode."""
    net = net.cpu().eval()
    mean_t = torch.tensor(mean).view(1, -1, 1, 1)
    std_t = torch.tensor(std).view(1, -1, 1, 1)
    with torch.no_grad():
        logits = torch.cat([net((batch.float() / 255 - mean_t) / std_t) for batch in images.split(256)])
    return [classes[index] for index in logits.argmax(1).tolist()]


@dataclass
class NameReport:
    scopes: dict[str, dict[str, int]] = field(default_factory=dict)
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)
    intrusion_flips: int = 0
    # sample index -> (kind, true name, old prediction's name, new prediction's name)
    flips: dict[int, tuple[str, str, str, str]] = field(default_factory=dict)


def evaluate_by_name(
    *, true: list[str], old: list[str], new: list[str], old_classes: list[str], classes: list[str]
) -> NameReport:
    """Counts of docs/METHOD.md's metrics from per-sample names (true label, old and new prediction)."""
    report = NameReport()
    in_scope = {"all": lambda name: True, "old_classes": lambda name: name in old_classes}
    for scope, member in in_scope.items():
        rows = [(t, o, n) for t, o, n in zip(true, old, new, strict=True) if member(t)]
        report.scopes[scope] = {
            "samples": len(rows),
            "negative_flips": sum(o == t != n for t, o, n in rows),
            "positive_flips": sum(o != t == n for t, o, n in rows),
            "old_correct": sum(o == t for t, o, n in rows),
            "new_correct": sum(n == t for t, o, n in rows),
        }
    per_class: dict[str, Counter] = {name: Counter() for name in classes}
    for index, (t, o, n) in enumerate(zip(true, old, new, strict=True)):
        counts = per_class[t]
        counts["samples"] += 1
        counts["old_correct"] += o == t
        counts["new_correct"] += n == t
        if o == t != n:
            counts["negative_flips"] += 1
            intrusion = n not in old_classes
            counts["intrusion_flips"] += intrusion
            report.intrusion_flips += intrusion
            report.flips[index] = ("negative", t, o, n)
        elif o != t == n:
            counts["positive_flips"] += 1
            report.flips[index] = ("positive", t, o, n)
    keys = ("samples", "old_correct", "new_correct", "negative_flips", "positive_flips", "intrusion_flips")
    report.per_class = {name: {key: counts[key] for key in keys} for name, counts in per_class.items()}
    return report


def assert_summary_matches(summary: dict, expected: NameReport) -> None:
    """A report in its JSON form (the engine's `to_dict()` or the API's figures) has the counts
    of the evaluation by name, in both scopes and for every class, found by its name."""
    for scope, counts in expected.scopes.items():
        assert {key: summary["scopes"][scope][key] for key in counts} == counts, scope
    rows = {row["name"]: row for row in summary["per_class"]}
    assert set(rows) == set(expected.per_class)
    for name, counts in expected.per_class.items():
        assert {key: rows[name][key] for key in counts} == counts, name
    assert summary["intrusion_flips"] == expected.intrusion_flips
