"""Every loss of docs/METHOD.md against a deliberately plain float64 reference.

The reference below uses per-sample Python loops, math.exp / math.log and explicit sums; it
shares no code with mpt.losses (no torch.nn.functional, no tensors).
"""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
import torch
from torch.testing import assert_close

from contracts.methods import METHOD_PARAM_FIELDS, PARAMS_USED, UpdateMethod
from mpt.losses import (
    METHODS,
    LossInputs,
    focal_kl,
    focal_lm,
    focal_weights,
    margin_ce,
    method_loss,
)
from mpt.recipe import MethodParams

# ---------------------------------------------------------------------------------------------
# The plain reference
# ---------------------------------------------------------------------------------------------


def r_log_softmax(row: list[float]) -> list[float]:
    top = max(row)
    total = 0.0
    for v in row:
        total += math.exp(v - top)
    log_total = math.log(total)
    return [v - top - log_total for v in row]


def r_ce(row: list[float], y: int) -> float:
    return -r_log_softmax(row)[y]


def r_argmax(row: list[float]) -> int:
    best = 0
    for c in range(1, len(row)):
        if row[c] > row[best]:
            best = c
    return best


def r_weight(teacher_row: list[float], y: int, alpha: float, beta: float) -> float:
    # A new-class label (y >= len(teacher_row)) can never equal the teacher's argmax.
    return alpha + beta * (1.0 if r_argmax(teacher_row) == y else 0.0)


def r_kl(student_row: list[float], teacher_row: list[float], tau: float) -> float:
    """KL(softmax(t / tau) || softmax(u / tau))."""
    log_t = r_log_softmax([v / tau for v in teacher_row])
    log_u = r_log_softmax([v / tau for v in student_row])
    total = 0.0
    for a, b in zip(log_t, log_u, strict=True):
        total += math.exp(a) * (a - b)
    return total


def r_lm(student_row: list[float], teacher_row: list[float]) -> float:
    """(1 / 2C) * sum_c (u_c - t_c)^2."""
    total = 0.0
    for a, b in zip(student_row, teacher_row, strict=True):
        total += (a - b) ** 2
    return total / (2 * len(student_row))


def r_topk_lm(student_row: list[float], teacher_row: list[float], k: int) -> float:
    k = min(k, len(teacher_row))
    chosen = sorted(range(len(teacher_row)), key=lambda c: teacher_row[c], reverse=True)[:k]
    total = 0.0
    for c in chosen:
        total += (student_row[c] - teacher_row[c]) ** 2
    return total / (2 * k)


def r_mean(values: list[float]) -> float:
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


def reference_loss(method: str, case: dict, p: MethodParams) -> float:
    z, y, k_old = case["z"], case["y"], case["k_old"]
    z_old, z_ref, members = case["z_old"], case["z_ref"], case["members"]
    B = len(z)
    K = len(z[0])

    def ce(bias: float) -> float:
        per_sample = []
        for i in range(B):
            shifted = [z[i][c] + (bias if c >= k_old else 0.0) for c in range(K)]
            per_sample.append(r_ce(shifted, y[i]))
        return r_mean(per_sample)

    def fd_kl(students, teachers) -> float:
        return r_mean(
            [r_weight(teachers[i], y[i], p.alpha, p.beta) * r_kl(students[i], teachers[i], p.tau) for i in range(B)]
        )

    def fd_lm(students, teachers, weighted=True) -> float:
        return r_mean(
            [
                (r_weight(teachers[i], y[i], p.alpha, p.beta) if weighted else 1.0) * r_lm(students[i], teachers[i])
                for i in range(B)
            ]
        )

    z_head = [row[:k_old] for row in z]  # z[:, :K_old]
    ensemble = [[r_mean([m[i][c] for m in members]) for c in range(K)] for i in range(B)]

    if method == "independent":
        return ce(0.0)
    if method == "pct-naive":
        extra = r_mean([(1.0 if r_argmax(z_old[i]) == y[i] else 0.0) * r_ce(z[i], y[i]) for i in range(B)])
        return ce(0.0) + extra
    if method == "pct-kl":
        return ce(0.0) + fd_kl(z_head, z_old)
    if method == "pct-lm":
        return ce(0.0) + p.lm_weight * fd_lm(z_head, z_old)
    if method in ("elodi", "elodi-topk"):
        if case["epoch"] < p.elodi_start_epoch:
            return ce(0.0)
        if method == "elodi":
            old_term = fd_lm(z_head, z_old, weighted=False)
            ens_term = fd_lm(z, ensemble, weighted=False)
        else:
            old_term = r_mean([r_topk_lm(z_head[i], z_old[i], p.elodi_topk) for i in range(B)])
            ens_term = r_mean([r_topk_lm(z[i], ensemble[i], p.elodi_topk) for i in range(B)])
        return ce(0.0) + p.elodi_old_weight * old_term + p.elodi_ensemble_weight * ens_term
    bias = 0.0 if method.endswith("-nobias") else p.bias
    if method == "mpt-nodistill":
        return ce(bias)
    if method.startswith("mpt-kl"):
        return ce(bias) + fd_kl(z_head, z_old) + fd_kl(z, z_ref)
    if method.startswith("mpt-lm"):
        return ce(bias) + p.lm_weight * fd_lm(z_head, z_old) + p.lm_weight * fd_lm(z, z_ref)
    raise AssertionError(f"no reference for {method}")


# ---------------------------------------------------------------------------------------------
# Random cases
# ---------------------------------------------------------------------------------------------


def random_case(seed: int) -> tuple[dict, MethodParams]:
    rng = random.Random(seed)
    k_old = rng.randint(1, 7)
    n_new = rng.choice([0, 0, 1, 2, 3, 5, 8])  # zero new classes is common on purpose
    K = k_old + n_new
    B = rng.randint(1, 9)
    scale = rng.choice([0.5, 2.0, 6.0])
    y = [rng.randrange(K) for _ in range(B)]

    def row(width):
        return [rng.gauss(0.0, scale) for _ in range(width)]

    z = [row(K) for _ in range(B)]
    z_old = [row(k_old) for _ in range(B)]
    z_ref = [row(K) for _ in range(B)]
    members = [[row(K) for _ in range(B)] for _ in range(rng.randint(1, 3))]
    # Make each teacher right on about half of the samples, independently of the other.
    for i in range(B):
        if y[i] < k_old and rng.random() < 0.5:
            z_old[i][y[i]] = max(z_old[i]) + rng.uniform(0.1, 3.0)
        if rng.random() < 0.5:
            z_ref[i][y[i]] = max(z_ref[i]) + rng.uniform(0.1, 3.0)
    params = MethodParams(
        bias=rng.choice([0.0, rng.uniform(0.0, 8.0)]),
        alpha=rng.uniform(0.0, 3.0),
        beta=rng.uniform(0.0, 8.0),
        tau=rng.uniform(0.5, 10.0),
        lm_weight=rng.uniform(0.1, 1.0),
        elodi_start_epoch=rng.randint(0, 6),
        elodi_old_weight=rng.uniform(0.1, 1.0),
        elodi_ensemble_weight=rng.uniform(0.1, 1.0),
        elodi_topk=rng.choice([1, 3, 10, 10, 20]),
    )
    case = {
        "z": z,
        "y": y,
        "k_old": k_old,
        "z_old": z_old,
        "z_ref": z_ref,
        "members": members,
        "epoch": rng.randint(0, 9),
    }
    return case, params


def inputs_of(case: dict) -> LossInputs:
    K = len(case["z"][0])
    mask = torch.zeros(K, dtype=torch.bool)
    mask[case["k_old"] :] = True
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return LossInputs(
        logits=t(case["z"]),
        labels=torch.tensor(case["y"], dtype=torch.long),
        new_mask=mask,
        old_logits=t(case["z_old"]),
        ref_logits=t(case["z_ref"]),
        ensemble_logits=t(case["members"]).mean(0),
        epoch=case["epoch"],
    )


def scalar(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


ALL_METHODS = [method.value for method in UpdateMethod]


def test_the_registry_has_exactly_the_contract_methods():
    assert list(METHODS) == ALL_METHODS


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("seed", range(25))
def test_method_matches_plain_reference(method, seed):
    case, params = random_case(seed)
    got = method_loss(method, inputs_of(case), params)
    assert got.dtype == torch.float64 and got.dim() == 0
    assert_close(got, scalar(reference_loss(method, case, params)))


@pytest.mark.parametrize("method", ALL_METHODS)
def test_method_matches_reference_with_default_params(method):
    # Defaults of docs/METHOD.md: b=4, alpha=1, beta=5, tau=5, LM weight 0.4, ELODI from epoch 5
    # (the 6th), weights 0.6 / 0.4, top-k 10; K=14 > 10 so top-k really selects.
    case, _ = random_case(1234)
    rng = random.Random(7)
    k_old, K, B = 11, 14, 6
    case.update(
        k_old=k_old,
        y=[0, 3, 11, 13, 5, 10],
        z=[[rng.gauss(0, 3) for _ in range(K)] for _ in range(B)],
        z_old=[[rng.gauss(0, 3) for _ in range(k_old)] for _ in range(B)],
        z_ref=[[rng.gauss(0, 3) for _ in range(K)] for _ in range(B)],
        members=[[[rng.gauss(0, 3) for _ in range(K)] for _ in range(B)] for _ in range(2)],
        epoch=5,
    )
    case["z_old"][0][0] = 50.0  # old teacher right on sample 0
    case["z_ref"][1][3] = 50.0  # reference right on sample 1
    params = MethodParams()
    assert (params.bias, params.alpha, params.beta, params.tau) == (4.0, 1.0, 5.0, 5.0)
    assert (params.lm_weight, params.elodi_start_epoch, params.elodi_topk) == (0.4, 5, 10)
    assert (params.elodi_old_weight, params.elodi_ensemble_weight) == (0.6, 0.4)
    assert_close(method_loss(method, inputs_of(case), params), scalar(reference_loss(method, case, params)))


# ---------------------------------------------------------------------------------------------
# The margin bias
# ---------------------------------------------------------------------------------------------


def _fixed_case(k_old=3, n_new=2, B=5, seed=3):
    rng = random.Random(seed)
    K = k_old + n_new
    case = {
        "k_old": k_old,
        "y": [rng.randrange(K) for _ in range(B)],
        "z": [[rng.gauss(0, 2) for _ in range(K)] for _ in range(B)],
        "z_old": [[rng.gauss(0, 2) for _ in range(k_old)] for _ in range(B)],
        "z_ref": [[rng.gauss(0, 2) for _ in range(K)] for _ in range(B)],
        "members": [[[rng.gauss(0, 2) for _ in range(K)] for _ in range(B)]],
        "epoch": 0,
    }
    return case


def test_margin_ce_biases_only_new_class_logits():
    case = _fixed_case()
    inputs = inputs_of(case)
    for bias in (0.0, 1.0, 4.0, 9.5):
        expected = r_mean(
            [
                r_ce([v + (bias if c >= 3 else 0.0) for c, v in enumerate(row)], y)
                for row, y in zip(case["z"], case["y"], strict=True)
            ]
        )
        assert_close(margin_ce(inputs.logits, inputs.labels, inputs.new_mask, bias=bias), scalar(expected))
    # Raising b lowers the loss of a new-class sample's target relative to old ones: the bias
    # makes new classes look likelier, so CE on old-class targets rises and new-class falls.
    z = torch.zeros(2, 5, dtype=torch.float64)
    old_target = margin_ce(z[:1], torch.tensor([0]), inputs.new_mask, bias=4.0)
    new_target = margin_ce(z[:1], torch.tensor([4]), inputs.new_mask, bias=4.0)
    assert old_target > math.log(5) > new_target


@pytest.mark.parametrize("method", ["mpt-kl", "mpt-lm"])
def test_bias_changes_mpt_loss_only_through_the_cross_entropy(method):
    case = _fixed_case()
    params = MethodParams()
    base = inputs_of(case)
    student_old = base.logits[:, : case["k_old"]]
    w_old = focal_weights(base.old_logits, base.labels, alpha=params.alpha, beta=params.beta)
    w_ref = focal_weights(base.ref_logits, base.labels, alpha=params.alpha, beta=params.beta)
    if method == "mpt-kl":
        distill = focal_kl(student_old, base.old_logits, w_old, tau=params.tau) + focal_kl(
            base.logits, base.ref_logits, w_ref, tau=params.tau
        )
    else:
        distill = params.lm_weight * (
            focal_lm(student_old, base.old_logits, w_old) + focal_lm(base.logits, base.ref_logits, w_ref)
        )
    leaf, distill_again = _distill_on(case, params, method)
    assert_close(distill_again, distill)
    (distill_grads,) = torch.autograd.grad(distill_again, leaf)
    for bias in (0.0, 0.5, 4.0, 20.0):
        p = MethodParams(bias=bias)
        inputs = inputs_of(case)
        inputs.logits.requires_grad_(True)
        loss = method_loss(method, inputs, p)
        ce = margin_ce(inputs.logits, inputs.labels, inputs.new_mask, bias=bias)
        # The loss minus its (biased) CE is the distillation on the *unbiased* logits.
        assert_close(loss - ce, distill)
        # And so is its gradient: the bias reaches the gradient only through the CE.
        (grad_loss,) = torch.autograd.grad(loss, inputs.logits, retain_graph=True)
        (grad_ce,) = torch.autograd.grad(ce, inputs.logits)
        assert_close(grad_loss - grad_ce, distill_grads)
    # Sanity: b really changes the loss when there are new classes.
    losses = {b: float(method_loss(method, inputs_of(case), MethodParams(bias=b))) for b in (0.0, 4.0)}
    assert losses[0.0] != losses[4.0]


def _distill_on(case, params, method):
    """(z, the distillation terms alone as a function of the unbiased leaf z)."""
    inputs = inputs_of(case)
    z = inputs.logits.clone().requires_grad_(True)
    k_old = case["k_old"]
    w_old = focal_weights(inputs.old_logits, inputs.labels, alpha=params.alpha, beta=params.beta)
    w_ref = focal_weights(inputs.ref_logits, inputs.labels, alpha=params.alpha, beta=params.beta)
    if method == "mpt-kl":
        return z, focal_kl(z[:, :k_old], inputs.old_logits, w_old, tau=params.tau) + focal_kl(
            z, inputs.ref_logits, w_ref, tau=params.tau
        )
    return z, params.lm_weight * (
        focal_lm(z[:, :k_old], inputs.old_logits, w_old) + focal_lm(z, inputs.ref_logits, w_ref)
    )


@pytest.mark.parametrize("bias", [0.0, 1.0, 4.0, 100.0])
def test_no_new_classes_makes_l_delta_plain_cross_entropy(bias):
    case = _fixed_case(k_old=4, n_new=0)
    inputs = inputs_of(case)
    assert not inputs.new_mask.any()
    plain = r_mean([r_ce(row, y) for row, y in zip(case["z"], case["y"], strict=True)])
    got = method_loss("mpt-nodistill", inputs, MethodParams(bias=bias))
    assert_close(got, scalar(plain))
    assert_close(got, method_loss("independent", inputs, MethodParams()))
    # MPT-KL with no new classes: b has no effect at all.
    assert_close(
        method_loss("mpt-kl", inputs, MethodParams(bias=bias)), method_loss("mpt-kl-nobias", inputs, MethodParams())
    )


def test_nobias_ablations_ignore_b():
    case = _fixed_case()
    for method in ("mpt-kl-nobias", "mpt-lm-nobias"):
        values = [method_loss(method, inputs_of(case), MethodParams(bias=b)) for b in (0.0, 4.0, 10.0)]
        assert_close(values[0], values[1])
        assert_close(values[0], values[2])
    # and equal the biased methods at b = 0
    assert_close(
        method_loss("mpt-kl-nobias", inputs_of(case), MethodParams(bias=7.0)),
        method_loss("mpt-kl", inputs_of(case), MethodParams(bias=0.0)),
    )


# ---------------------------------------------------------------------------------------------
# Focal weights: each teacher's own correctness
# ---------------------------------------------------------------------------------------------


def _two_teacher_case():
    # K_old = 3, one new class (index 3), B = 2.
    #   sample 0: label 1; old teacher argmax 1 (right); reference argmax 2 (wrong)
    #   sample 1: label 2; old teacher argmax 0 (wrong); reference argmax 2 (right)
    return {
        "k_old": 3,
        "y": [1, 2],
        "z": [[0.3, -0.2, 0.9, 0.1], [1.1, 0.4, -0.5, 0.7]],
        "z_old": [[0.1, 2.0, -1.0], [1.5, 0.2, 0.3]],
        "z_ref": [[0.0, 0.5, 1.7, -0.3], [-0.4, 0.1, 2.2, 0.6]],
        "members": [[[0.0] * 4, [0.0] * 4]],
        "epoch": 0,
    }


@pytest.mark.parametrize("method", ["mpt-kl", "mpt-lm"])
def test_each_distillation_source_uses_its_own_teachers_correctness(method):
    case = _two_teacher_case()
    a, b = 1.5, 4.0
    params = MethodParams(alpha=a, beta=b, tau=2.0, bias=3.0)
    w_old = [a + b, a]  # old teacher right on sample 0 only
    w_ref = [a, a + b]  # reference right on sample 1 only
    inputs = inputs_of(case)
    assert focal_weights(inputs.old_logits, inputs.labels, alpha=a, beta=b).tolist() == w_old
    assert focal_weights(inputs.ref_logits, inputs.labels, alpha=a, beta=b).tolist() == w_ref

    z, y = case["z"], case["y"]
    ce = r_mean([r_ce([v + (3.0 if c >= 3 else 0.0) for c, v in enumerate(z[i])], y[i]) for i in range(2)])

    def term(weights, students, teachers):
        if method == "mpt-kl":
            return r_mean([weights[i] * r_kl(students[i], teachers[i], 2.0) for i in range(2)])
        return params.lm_weight * r_mean([weights[i] * r_lm(students[i], teachers[i]) for i in range(2)])

    heads = [row[:3] for row in z]
    expected = ce + term(w_old, heads, case["z_old"]) + term(w_ref, z, case["z_ref"])
    swapped = ce + term(w_ref, heads, case["z_old"]) + term(w_old, z, case["z_ref"])
    got = method_loss(method, inputs, params)
    assert_close(got, scalar(expected))
    assert abs(expected - swapped) > 1e-3  # the case does tell the two weightings apart
    assert abs(float(got) - swapped) > 1e-3


def test_new_class_samples_get_alpha_for_the_old_teacher():
    # K_old = 3, K = 5. Labels 3 and 4 are new classes. The old teacher's argmax is 2
    # (= K_old - 1, what a clamped label would hit) on every sample.
    old = torch.tensor([[0.0, 0.0, 9.0]] * 4, dtype=torch.float64)
    labels = torch.tensor([3, 4, 2, 0])
    w = focal_weights(old, labels, alpha=1.0, beta=5.0)
    assert w.tolist() == [1.0, 1.0, 6.0, 1.0]
    assert w.dtype == torch.float64  # the teacher's precision, as the float64 references use
    # In the loss: pct-kl on the two new-class samples is CE + mean(alpha * KL).
    case = {
        "k_old": 3,
        "y": [3, 4],
        "z": [[0.2, 0.1, -0.3, 0.5, 0.0], [-0.2, 0.4, 0.3, 0.1, 0.9]],
        "z_old": [[0.0, 0.0, 9.0], [0.0, 0.0, 9.0]],
        "z_ref": [[0.0] * 5, [0.0] * 5],
        "members": [[[0.0] * 5, [0.0] * 5]],
        "epoch": 0,
    }
    alpha, beta, tau = 0.7, 5.0, 3.0
    expected = r_mean([r_ce(case["z"][i], case["y"][i]) for i in range(2)]) + r_mean(
        [alpha * r_kl(case["z"][i][:3], case["z_old"][i], tau) for i in range(2)]
    )
    got = method_loss("pct-kl", inputs_of(case), MethodParams(alpha=alpha, beta=beta, tau=tau))
    assert_close(got, scalar(expected))


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------


def test_pct_naive_adds_ce_of_samples_the_old_model_got_right():
    # K_old = 2, K = 3, B = 3. Old argmax: 0, 0, 1 against labels 0, 1, 2:
    # right on sample 0 only (sample 2 is a new-class sample: never right).
    case = {
        "k_old": 2,
        "y": [0, 1, 2],
        "z": [[1.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 2.0, 1.0]],
        "z_old": [[3.0, 0.0], [1.0, 0.0], [0.0, 1.0]],
        "z_ref": [[0.0] * 3] * 3,
        "members": [[[0.0] * 3] * 3],
        "epoch": 0,
    }
    ce = [r_ce(case["z"][i], case["y"][i]) for i in range(3)]
    # loss = (ce0 + ce1 + ce2) / 3 + (1 * ce0 + 0 * ce1 + 0 * ce2) / 3
    expected = (ce[0] + ce[1] + ce[2]) / 3 + ce[0] / 3
    assert_close(method_loss("pct-naive", inputs_of(case), MethodParams()), scalar(expected))


def _elodi_case(k_old, n_new, B=4, seed=11):
    case = _fixed_case(k_old=k_old, n_new=n_new, B=B, seed=seed)
    rng = random.Random(seed + 1)
    K = k_old + n_new
    case["members"] = [[[rng.gauss(0, 2) for _ in range(K)] for _ in range(B)] for _ in range(3)]
    return case


@pytest.mark.parametrize("method", ["elodi", "elodi-topk"])
def test_elodi_is_plain_ce_before_its_start_epoch(method):
    params = MethodParams()  # start epoch 5 = the 6th epoch
    case = _elodi_case(4, 3)
    ce = scalar(r_mean([r_ce(row, y) for row, y in zip(case["z"], case["y"], strict=True)]))
    for epoch in range(5):
        case["epoch"] = epoch
        assert_close(method_loss(method, inputs_of(case), params), ce)
    for epoch in (5, 6, 40):
        case["epoch"] = epoch
        got = method_loss(method, inputs_of(case), params)
        assert float(got) > float(ce) + 1e-3
        assert_close(got, scalar(reference_loss(method, case, params)))


def test_elodi_terms_after_start():
    # Written out for elodi (unweighted LM, C = logits compared):
    # CE + 0.6 * mean_i LM(z_i[:K_old], z_old_i) + 0.4 * mean_i LM(z_i, mean_m member_m,i)
    case = _elodi_case(3, 2)
    case["epoch"] = 5
    z, B = case["z"], len(case["z"])
    ens = [[sum(m[i][c] for m in case["members"]) / 3 for c in range(5)] for i in range(B)]
    expected = (
        r_mean([r_ce(z[i], case["y"][i]) for i in range(B)])
        + 0.6 * r_mean([sum((z[i][c] - case["z_old"][i][c]) ** 2 for c in range(3)) / 6 for i in range(B)])
        + 0.4 * r_mean([sum((z[i][c] - ens[i][c]) ** 2 for c in range(5)) / 10 for i in range(B)])
    )
    assert_close(method_loss("elodi", inputs_of(case), MethodParams()), scalar(expected))


def test_elodi_topk_uses_only_the_teachers_top_k_logits():
    params = MethodParams()  # k = 10
    k_old, n_new = 12, 3  # both teachers are wider than 10: top-k really selects
    case = _elodi_case(k_old, n_new, B=3, seed=5)
    case["epoch"] = 5
    inputs = inputs_of(case)
    ce = method_loss("independent", inputs, params)
    distill = method_loss("elodi-topk", inputs, params) - ce

    old_top = inputs.old_logits.topk(10, dim=1).indices
    ens_top = inputs.ensemble_logits.topk(10, dim=1).indices
    outside = torch.ones_like(inputs.logits, dtype=torch.bool)
    outside[:, :k_old].scatter_(1, old_top, False)
    outside.scatter_(1, ens_top, False)
    assert outside.any()
    # Moving the student's logits outside both teachers' top-10 changes the CE, not the LM part.
    moved = inputs_of(case)
    moved.logits = inputs.logits + 7.0 * outside.to(torch.float64)
    moved_distill = method_loss("elodi-topk", moved, params) - method_loss("independent", moved, params)
    assert_close(moved_distill, distill)
    # Moving one inside does change it.
    inside = inputs_of(case)
    inside.logits = inputs.logits.clone()
    inside.logits[0, int(old_top[0, 0])] += 7.0
    inside_distill = method_loss("elodi-topk", inside, params) - method_loss("independent", inside, params)
    assert abs(float(inside_distill - distill)) > 1e-3
    # It is not the full LM.
    full = method_loss("elodi", inputs, params) - ce
    assert abs(float(full - distill)) > 1e-6


def test_elodi_topk_with_fewer_than_k_classes_is_full_lm():
    # k = min(10, C): with C <= 10, every logit is compared, i.e. ELODI's unweighted LM.
    case = _elodi_case(4, 3)
    case["epoch"] = 9
    params = MethodParams()
    assert_close(method_loss("elodi-topk", inputs_of(case), params), method_loss("elodi", inputs_of(case), params))


@pytest.mark.parametrize("method", ALL_METHODS)
def test_a_methods_phase_changes_exactly_where_its_loss_changes_branch(method):
    # The phase tells a captured CUDA graph (mpt.graphs) when to capture again: ELODI's moves
    # from 0 to 1 at elodi_start_epoch, where its loss starts distilling; the others have one.
    params = MethodParams(elodi_start_epoch=3)
    phases = [METHODS[method].phase(params, epoch) for epoch in range(6)]
    case = _elodi_case(3, 2)
    ce = method_loss("independent", inputs_of(case), params)
    if method.startswith("elodi"):
        assert phases == [0, 0, 0, 1, 1, 1]
        for epoch, phase in enumerate(phases):
            loss = method_loss(method, inputs_of({**case, "epoch": epoch}), params)
            assert bool(torch.equal(loss, ce)) is (phase == 0), epoch
    else:
        assert phases == [0] * 6


@pytest.mark.parametrize(
    "method, missing, named",
    [
        ("pct-naive", "old_logits", "the old model's logits"),
        ("pct-kl", "old_logits", "the old model's logits"),
        ("mpt-lm", "old_logits", "the old model's logits"),
        ("mpt-kl", "ref_logits", "the reference's logits"),
        ("elodi", "ensemble_logits", "the ensemble's logits"),
        ("elodi-topk", "old_logits", "the old model's logits"),
    ],
)
def test_a_loss_missing_a_teachers_logits_names_them(method, missing, named):
    case = _elodi_case(3, 2)
    case["epoch"] = 9  # ELODI distils: it reads the ensemble
    inputs = dataclasses.replace(inputs_of(case), **{missing: None})
    with pytest.raises(ValueError) as refused:
        method_loss(method, inputs, MethodParams())
    assert str(refused.value) == f"this method needs {named}, and the loss inputs have none"


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown method") as refused:
        method_loss("mpt-xx", inputs_of(_fixed_case()), MethodParams())
    # The message lists every method by the name the CLI and the API take.
    assert str(refused.value) == "unknown method 'mpt-xx'; choose one of " + ", ".join(
        method.value for method in UpdateMethod
    )


# ---------------------------------------------------------------------------------------------
# Which MethodParams fields a method reads (contracts.methods.PARAMS_USED: what a sweep may vary)
# ---------------------------------------------------------------------------------------------


def test_method_param_fields_are_method_params_fields():
    assert tuple(f.name for f in dataclasses.fields(MethodParams)) == METHOD_PARAM_FIELDS


# A value of each field different from the default and from what the case needs to see its effect.
CHANGED = {
    "bias": 1.5,
    "alpha": 0.3,
    "beta": 2.0,
    "tau": 2.0,
    "lm_weight": 0.9,
    "elodi_start_epoch": 50,
    "elodi_old_weight": 0.1,
    "elodi_ensemble_weight": 0.9,
    "elodi_topk": 3,
}


@pytest.mark.parametrize("method", ALL_METHODS)
def test_params_used_are_exactly_what_the_loss_reads(method):
    # Old teacher right on some samples, the reference on others; K = 14 > top-k; ELODI active.
    case, _ = random_case(99)
    rng = random.Random(5)
    k_old, K, B = 11, 14, 6
    case.update(
        k_old=k_old,
        y=[0, 3, 11, 13, 5, 10],
        z=[[rng.gauss(0, 3) for _ in range(K)] for _ in range(B)],
        z_old=[[rng.gauss(0, 3) for _ in range(k_old)] for _ in range(B)],
        z_ref=[[rng.gauss(0, 3) for _ in range(K)] for _ in range(B)],
        members=[[[rng.gauss(0, 3) for _ in range(K)] for _ in range(B)] for _ in range(2)],
        epoch=10,
    )
    case["z_old"][0][0] = 50.0
    case["z_ref"][1][3] = 50.0
    base = method_loss(method, inputs_of(case), MethodParams())
    read = {
        name
        for name, value in CHANGED.items()
        if not torch.equal(
            method_loss(method, inputs_of(case), dataclasses.replace(MethodParams(), **{name: value})), base
        )
    }
    used = PARAMS_USED[UpdateMethod(method)]
    # elodi_ensemble_size is read by the pipeline (how many members to train), not by the loss.
    assert read == used - {"elodi_ensemble_size"}
    assert ("elodi_ensemble_size" in used) == METHODS[method].needs_ensemble
