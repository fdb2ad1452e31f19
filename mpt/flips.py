"""Flip metrics of docs/METHOD.md, computed from argmax predictions with every raw count kept.

All work is vectorised over the evaluation split (bincounts, no per-sample Python), so a
report on 50,000 samples costs milliseconds next to the model inference that feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from contracts.flips import (
    ClassFigures,
    FlipKind,
    FlipScopes,
    FlipSummary,
    Headline,
    LedgerRow,
    ScopeFigures,
    Transition,
    is_intrusion,
)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _scope_figures(labels: torch.Tensor, old_pred: torch.Tensor, new_pred: torch.Tensor) -> ScopeFigures:
    """NFR, PFR, relative NFR and their raw counts over one set of samples."""
    n = int(labels.numel())
    old_ok = old_pred == labels
    new_ok = new_pred == labels
    negative = int((old_ok & ~new_ok).sum())
    positive = int((~old_ok & new_ok).sum())
    old_correct = int(old_ok.sum())
    new_correct = int(new_ok.sum())
    nfr = negative / n if n else 0.0
    error_old = 1 - old_correct / n if n else 0.0
    error_new = 1 - new_correct / n if n else 0.0
    denominator = (1 - error_old) * error_new
    return ScopeFigures(
        samples=n,
        negative_flips=negative,
        positive_flips=positive,
        old_correct=old_correct,
        new_correct=new_correct,
        nfr=nfr,
        pfr=positive / n if n else 0.0,
        # docs/METHOD.md, "Relative NFR": relative NFR is 0 when its denominator is 0.
        relative_nfr=nfr / denominator if denominator else 0.0,
        old_accuracy=old_correct / n if n else None,
        new_accuracy=new_correct / n if n else None,
    )


@dataclass
class FlipLedger:
    """Per-sample record of every flip: parallel tensors, one row per flipped sample."""

    sample_index: torch.Tensor
    label: torch.Tensor
    old_prediction: torch.Tensor
    new_prediction: torch.Tensor
    old_confidence: torch.Tensor
    new_confidence: torch.Tensor
    negative: torch.Tensor  # bool: negative flip (else positive)

    def __len__(self) -> int:
        return int(self.sample_index.numel())

    def rows(self) -> list[LedgerRow]:
        """The ledger as JSON-ready rows."""
        columns = zip(
            self.sample_index.tolist(),
            self.label.tolist(),
            self.old_prediction.tolist(),
            self.new_prediction.tolist(),
            self.old_confidence.tolist(),
            self.new_confidence.tolist(),
            self.negative.tolist(),
            strict=True,
        )
        return [
            LedgerRow(
                sample_index=index,
                label=label,
                old_prediction=old,
                new_prediction=new,
                old_confidence=old_conf,
                new_confidence=new_conf,
                kind=FlipKind.NEGATIVE.value if negative else FlipKind.POSITIVE.value,
            )
            for index, label, old, new, old_conf, new_conf, negative in columns
        ]


def flip_report(
    *,
    labels: torch.Tensor,
    old_logits: torch.Tensor,
    new_logits: torch.Tensor,
    classes: list[str],
    k_old: int,
) -> tuple[FlipSummary, FlipLedger]:
    """Compare an updated model with its predecessor on one labelled evaluation split.

    `old_logits` has the old model's K_old columns, `new_logits` the K columns of the new
    index space (old classes first: docs/METHOD.md, "The class-index layout"). Returns the summary and the
    per-sample ledger of flips.
    """
    labels = labels.long().cpu()
    old_logits = old_logits.float().cpu()
    new_logits = new_logits.float().cpu()
    k = len(classes)
    if new_logits.shape[1] != k or old_logits.shape[1] != k_old or k_old > k:
        raise ValueError(
            f"logit widths ({old_logits.shape[1]}, {new_logits.shape[1]}) do not match k_old={k_old} and {k} classes"
        )
    old_pred = old_logits.argmax(1)  # old classes keep their indices: no remapping needed
    new_pred = new_logits.argmax(1)
    rows = torch.arange(labels.numel())
    old_probs = old_logits.softmax(1)
    in_old_space = labels < k_old
    # The old model gives no probability to a class it never knew.
    old_confidence = torch.where(in_old_space, old_probs[rows, labels.clamp(max=k_old - 1)], torch.zeros(()))
    new_confidence = new_logits.softmax(1)[rows, labels]

    old_ok = old_pred == labels
    new_ok = new_pred == labels
    negative = old_ok & ~new_ok
    positive = ~old_ok & new_ok
    is_new_class = labels >= k_old
    intrusion = is_intrusion(negative=negative, new_prediction=new_pred, k_old=k_old)

    def per_class(mask: torch.Tensor) -> list[int]:
        return torch.bincount(labels[mask], minlength=k).tolist()

    totals = per_class(torch.ones_like(labels, dtype=torch.bool))
    old_correct = per_class(old_ok)
    new_correct = per_class(new_ok)
    negatives = per_class(negative)
    positives = per_class(positive)
    intrusions = per_class(intrusion)
    per_class_figures = tuple(
        ClassFigures(
            index=c,
            name=classes[c],
            is_new=c >= k_old,
            samples=totals[c],
            old_correct=old_correct[c],
            new_correct=new_correct[c],
            negative_flips=negatives[c],
            positive_flips=positives[c],
            intrusion_flips=intrusions[c],
            nfr=negatives[c] / totals[c] if totals[c] else None,
            old_accuracy=old_correct[c] / totals[c] if totals[c] else None,
            new_accuracy=new_correct[c] / totals[c] if totals[c] else None,
        )
        for c in range(k)
    )

    flipped = negative | positive
    transitions: list[Transition] = []
    for kind, mask in ((FlipKind.NEGATIVE, negative), (FlipKind.POSITIVE, positive)):
        pair_counts = torch.bincount(old_pred[mask] * k + new_pred[mask], minlength=k * k)
        transitions.extend(
            Transition(
                kind=kind,
                old_prediction=pair // k,
                new_prediction=pair % k,
                count=int(pair_counts[pair]),
                intrusion=is_intrusion(negative=kind == FlipKind.NEGATIVE, new_prediction=pair % k, k_old=k_old),
            )
            for pair in pair_counts.nonzero().flatten().tolist()
        )

    both_ok = int((old_ok & new_ok).sum())
    both_wrong = int((~old_ok & ~new_ok).sum())
    old_right = int(old_ok.sum())
    summary = FlipSummary(
        classes=tuple(classes),
        k_old=k_old,
        scopes=FlipScopes(
            all=_scope_figures(labels, old_pred, new_pred),
            old_classes=_scope_figures(labels[~is_new_class], old_pred[~is_new_class], new_pred[~is_new_class]),
        ),
        new_class_accuracy=_ratio(int(new_ok[is_new_class].sum()), int(is_new_class.sum())),
        new_class_samples=int(is_new_class.sum()),
        both_correct=both_ok,
        both_wrong=both_wrong,
        btc=_ratio(both_ok, old_right),
        bec=_ratio(both_wrong, labels.numel() - old_right),
        intrusion_flips=int(intrusion.sum()),
        per_class=per_class_figures,
        transitions=tuple(transitions),
    )
    ledger = FlipLedger(
        sample_index=rows[flipped],
        label=labels[flipped],
        old_prediction=old_pred[flipped],
        new_prediction=new_pred[flipped],
        old_confidence=old_confidence[flipped],
        new_confidence=new_confidence[flipped],
        negative=negative[flipped],
    )
    return summary, ledger


def headline(summary: FlipSummary) -> Headline:
    """The figures a person reads first, flattened from a summary (contracts.flips.FlipSummary.headline)."""
    return summary.headline()
