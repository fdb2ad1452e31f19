"""The flip report of any model against any other on one labelled evaluation split.

An update's report compares a version with its own base, whose classes are the first K_old of
the version's (docs/METHOD.md, "The class-index layout"). Two arbitrary versions of a family
need not stand in that order: the newer may be the baseline, or the model may know fewer
classes than the split holds. `compare` puts both models' outputs into one index space, the
baseline's classes first, and then computes the same report with `mpt.flips.flip_report`, so
that comparing a version with its own base gives exactly the update's report.
"""

from __future__ import annotations

import torch

from contracts.flips import FlipSummary
from mpt.artifacts import LoadedModel
from mpt.data import FittedImages, ImageFiles, ImageSet
from mpt.flips import FlipLedger, flip_report
from mpt.recipe import Recipe
from mpt.train import resolve_device
from mpt.update import model_logits


def report_classes(*, baseline_classes: list[str], split_classes: list[str]) -> list[str]:
    """The report's class order: the baseline's classes, then the split's other classes."""
    return list(baseline_classes) + [name for name in split_classes if name not in baseline_classes]


def compare(
    *,
    model: LoadedModel,
    baseline: LoadedModel,
    evaluation: ImageSet | ImageFiles | FittedImages,
    device: torch.device | None = None,
    recipe: Recipe | None = None,
) -> tuple[FlipSummary, FlipLedger]:
    """The report of `model` against `baseline` on `evaluation` (labels index its classes).

    Every class of both models must be a class of the split; a class the model does not know
    gets no probability from it (as a new class gets none from an old model). Each model sees
    the split fitted to its own input, on the recipe's data path (mpt.update.model_logits).
    """
    device = resolve_device() if device is None else device
    split_classes = list(evaluation.classes)
    for side, loaded in (("model", model), ("baseline", baseline)):
        outside = [name for name in loaded.spec.classes if name not in split_classes]
        if outside:
            raise ValueError(f"the {side}'s classes {outside} are not classes of the evaluation split")
    classes = report_classes(baseline_classes=list(baseline.spec.classes), split_classes=split_classes)
    position = {name: index for index, name in enumerate(classes)}
    labels = torch.tensor([position[name] for name in split_classes], dtype=torch.long)[evaluation.labels]
    own_logits, old_logits = model_logits([model, baseline], evaluation, device=device, recipe=recipe or Recipe())
    new_logits = torch.full((len(evaluation), len(classes)), float("-inf"))
    columns = torch.tensor([position[name] for name in model.spec.classes], dtype=torch.long)
    new_logits[:, columns] = own_logits
    return flip_report(
        labels=labels, old_logits=old_logits, new_logits=new_logits, classes=classes, k_old=len(baseline.spec.classes)
    )
