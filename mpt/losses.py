"""Every training loss of docs/METHOD.md as a pure function of logits.

Notation follows docs/METHOD.md: `z` the student's K logits, `z_old` the old model's K_old logits,
`z_ref` the independent reference's K logits, `y` labels in the new index space where the
old classes occupy 0..K_old-1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from contracts.methods import UpdateMethod
from mpt.recipe import MethodParams


def focal_weights(teacher_logits: torch.Tensor, labels: torch.Tensor, *, alpha: float, beta: float) -> torch.Tensor:
    """w_i = alpha + beta * [argmax teacher_i == y_i].

    For the old teacher, a new-class label lies outside its K_old outputs, so its argmax can
    never match it: those samples get alpha, as docs/METHOD.md ("Building blocks") says.
    """
    correct = teacher_logits.argmax(1) == labels
    return alpha + beta * correct.to(teacher_logits.dtype)


def focal_kl(student: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor, *, tau: float) -> torch.Tensor:
    """FD-KL: mean over the batch of w_i * KL(softmax(t/tau) || softmax(u/tau)); no tau^2."""
    log_p_teacher = F.log_softmax(teacher / tau, dim=1)
    log_p_student = F.log_softmax(student / tau, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1)
    return (weights * kl).mean()


def focal_lm(student: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """FD-LM: mean over the batch of w_i * (1 / 2C) * sum_c (u_ic - t_ic)^2."""
    per_sample = (student - teacher).pow(2).sum(1) / (2 * student.shape[1])
    return (weights * per_sample).mean()


def topk_lm(student: torch.Tensor, teacher: torch.Tensor, *, k: int) -> torch.Tensor:
    """Logit matching restricted to each sample's teacher top-k logits (original ELODI)."""
    k = min(k, teacher.shape[1])
    index = teacher.topk(k, dim=1).indices
    difference = student.gather(1, index) - teacher.gather(1, index)
    return (difference.pow(2).sum(1) / (2 * k)).mean()


def margin_ce(logits: torch.Tensor, labels: torch.Tensor, new_mask: torch.Tensor, *, bias: float) -> torch.Tensor:
    """L_Delta: cross-entropy of the logits with `bias` added to the new classes' logits only."""
    return F.cross_entropy(logits + bias * new_mask.to(logits.dtype), labels)


@dataclass
class LossInputs:
    logits: torch.Tensor  # z, (B, K)
    labels: torch.Tensor  # y, (B,)
    new_mask: torch.Tensor  # (K,) bool, True for classes in C_new
    old_logits: torch.Tensor | None = None  # z_old, (B, K_old)
    ref_logits: torch.Tensor | None = None  # z_ref, (B, K)
    ensemble_logits: torch.Tensor | None = None  # mean of the ELODI ensemble's logits, (B, K)
    epoch: int = 0


def _needs(logits: torch.Tensor | None, name: str) -> torch.Tensor:
    """A teacher's logits the method reads: the training loop sets them for every method that needs them."""
    if logits is None:
        raise ValueError(f"this method needs {name}, and the loss inputs have none")
    return logits


def _old_part(inputs: LossInputs) -> tuple[torch.Tensor, torch.Tensor]:
    old_logits = _needs(inputs.old_logits, "the old model's logits")
    k_old = old_logits.shape[1]
    return inputs.logits[:, :k_old], old_logits


def _independent(inputs: LossInputs, params: MethodParams) -> torch.Tensor:
    return F.cross_entropy(inputs.logits, inputs.labels)


def _pct_naive(inputs: LossInputs, params: MethodParams) -> torch.Tensor:
    per_sample = F.cross_entropy(inputs.logits, inputs.labels, reduction="none")
    old_correct = (_needs(inputs.old_logits, "the old model's logits").argmax(1) == inputs.labels).to(per_sample.dtype)
    return per_sample.mean() + (old_correct * per_sample).mean()


def _pct_kl(inputs: LossInputs, params: MethodParams) -> torch.Tensor:
    student, teacher = _old_part(inputs)
    weights = focal_weights(teacher, inputs.labels, alpha=params.alpha, beta=params.beta)
    return _independent(inputs, params) + focal_kl(student, teacher, weights, tau=params.tau)


def _pct_lm(inputs: LossInputs, params: MethodParams) -> torch.Tensor:
    student, teacher = _old_part(inputs)
    weights = focal_weights(teacher, inputs.labels, alpha=params.alpha, beta=params.beta)
    return _independent(inputs, params) + params.lm_weight * focal_lm(student, teacher, weights)


def _elodi(inputs: LossInputs, params: MethodParams, *, topk: bool) -> torch.Tensor:
    loss = _independent(inputs, params)
    if inputs.epoch < params.elodi_start_epoch:
        return loss
    student, teacher = _old_part(inputs)
    ensemble_logits = _needs(inputs.ensemble_logits, "the ensemble's logits")
    if topk:
        old_term = topk_lm(student, teacher, k=params.elodi_topk)
        ensemble_term = topk_lm(inputs.logits, ensemble_logits, k=params.elodi_topk)
    else:
        ones = torch.ones_like(inputs.labels, dtype=inputs.logits.dtype)
        old_term = focal_lm(student, teacher, ones)
        ensemble_term = focal_lm(inputs.logits, ensemble_logits, ones)
    return loss + params.elodi_old_weight * old_term + params.elodi_ensemble_weight * ensemble_term


def _elodi_phase(params: MethodParams, epoch: int) -> int:
    return int(epoch >= params.elodi_start_epoch)


def _mpt(inputs: LossInputs, params: MethodParams, *, distill: str | None, bias: bool) -> torch.Tensor:
    loss = margin_ce(inputs.logits, inputs.labels, inputs.new_mask, bias=params.bias if bias else 0.0)
    if distill is None:
        return loss
    student_old, teacher_old = _old_part(inputs)
    ref_logits = _needs(inputs.ref_logits, "the reference's logits")
    old_weights = focal_weights(teacher_old, inputs.labels, alpha=params.alpha, beta=params.beta)
    ref_weights = focal_weights(ref_logits, inputs.labels, alpha=params.alpha, beta=params.beta)
    # Both distillation terms see the unbiased logits z.
    if distill == "kl":
        return (
            loss
            + focal_kl(student_old, teacher_old, old_weights, tau=params.tau)
            + focal_kl(inputs.logits, ref_logits, ref_weights, tau=params.tau)
        )
    return loss + params.lm_weight * (
        focal_lm(student_old, teacher_old, old_weights) + focal_lm(inputs.logits, ref_logits, ref_weights)
    )


@dataclass(frozen=True)
class Method:
    name: UpdateMethod
    needs_old: bool
    needs_reference: bool
    needs_ensemble: bool
    loss: Callable[[LossInputs, MethodParams], torch.Tensor]  # a scalar tensor
    # Which Python branch of `loss` an epoch takes (ELODI distils from elodi_start_epoch on):
    # a captured CUDA graph (mpt.graphs) holds one branch and is captured again when it changes.
    phase: Callable[[MethodParams, int], int] = lambda params, epoch: 0


# One entry per contract name (tests/engine/test_losses.py checks that none is missing), keyed
# by the plain string so that argparse and JSON show the name alone.
METHODS: dict[str, Method] = {
    m.name.value: m
    for m in [
        Method(UpdateMethod.INDEPENDENT, False, False, False, _independent),
        Method(UpdateMethod.PCT_NAIVE, True, False, False, _pct_naive),
        Method(UpdateMethod.PCT_KL, True, False, False, _pct_kl),
        Method(UpdateMethod.PCT_LM, True, False, False, _pct_lm),
        Method(UpdateMethod.ELODI, True, False, True, lambda i, p: _elodi(i, p, topk=False), _elodi_phase),
        Method(UpdateMethod.ELODI_TOPK, True, False, True, lambda i, p: _elodi(i, p, topk=True), _elodi_phase),
        Method(UpdateMethod.MPT_KL, True, True, False, lambda i, p: _mpt(i, p, distill="kl", bias=True)),
        Method(UpdateMethod.MPT_LM, True, True, False, lambda i, p: _mpt(i, p, distill="lm", bias=True)),
        Method(UpdateMethod.MPT_NODISTILL, False, False, False, lambda i, p: _mpt(i, p, distill=None, bias=True)),
        Method(UpdateMethod.MPT_KL_NOBIAS, True, True, False, lambda i, p: _mpt(i, p, distill="kl", bias=False)),
        Method(UpdateMethod.MPT_LM_NOBIAS, True, True, False, lambda i, p: _mpt(i, p, distill="lm", bias=False)),
    ]
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def method_loss(name: str, inputs: LossInputs, params: MethodParams) -> torch.Tensor:
    """The training loss of method `name` on one batch."""
    return get_method(name).loss(inputs, params)
