"""The order of a study's runs, per seed: the old model, every method, the sweep of b, the chain."""

from __future__ import annotations

import time
from dataclasses import replace

from contracts.flips import FlipSummary, Headline
from contracts.methods import UpdateMethod
from mpt.artifacts import LoadedModel
from mpt.flips import headline
from mpt.losses import METHODS
from mpt.recipe import MethodParams
from mpt.reproduce.report import write_outputs
from mpt.reproduce.runs import first_version, flip_counts, log, run_record, timed_sweep, timed_update
from mpt.reproduce.study import Study
from mpt.update import evaluate


def _run_methods(study: Study, seed: int, base: LoadedModel, runs: list[dict]) -> None:
    # The reference first (it is also the `independent` row), so that later wall times are
    # each method's own training, except ELODI's which include its ensemble.
    ordered = sorted(study.methods, key=lambda m: m != UpdateMethod.INDEPENDENT)
    if UpdateMethod.INDEPENDENT not in ordered and any(METHODS[m].needs_reference for m in ordered):
        ordered.insert(0, UpdateMethod.INDEPENDENT)  # trained anyway; reported for the comparison
    for method in ordered:
        log(f"seed {seed}: {method}")
        outcome, timing = timed_update(
            study,
            label=f"{method}-s{seed}",
            base=base,
            classes=study.classes,
            method=method,
            params=study.params,
            seed=seed,
        )
        runs.append(run_record("method", method, seed, study.params, outcome, timing))
        report = outcome.checked_report()
        log(
            f"seed {seed}: {method} done in {timing['wall_s']:.0f} s, "
            f"NFR old {report.scopes.old_classes.nfr:.4f}, "
            f"accuracy {report.scopes.all.new_accuracy:.4f}"
        )


def _sweep_params(study: Study, bias: float) -> MethodParams:
    return replace(study.params, bias=bias)


def _run_sweep(study: Study, seed: int, base: LoadedModel, runs: list[dict]) -> None:
    done = {(r["method"], r["seed"]): r for r in runs if r["kind"] == "method"}
    for bias in study.sweep_biases:
        # b = params.bias is the mpt-kl row and b = 0 the mpt-kl-nobias row: the same loss,
        # seed and data, so the same weights; reuse them instead of training again.
        same = None
        if bias == study.params.bias and (UpdateMethod.MPT_KL, seed) in done:
            same = done[(UpdateMethod.MPT_KL, seed)]
        elif bias == 0 and (UpdateMethod.MPT_KL_NOBIAS, seed) in done:
            same = done[(UpdateMethod.MPT_KL_NOBIAS, seed)]
        if same is not None:
            runs.append(
                {**same, "kind": "sweep", "method": UpdateMethod.MPT_KL, "bias": bias, "reused_from": same["method"]}
            )
            continue
        log(f"seed {seed}: sweep mpt-kl b={bias:g}")
        params = _sweep_params(study, bias)
        outcome, timing = timed_update(
            study,
            label=f"sweep-b{bias:g}-s{seed}",
            base=base,
            classes=study.classes,
            method=UpdateMethod.MPT_KL,
            params=params,
            seed=seed,
        )
        runs.append(run_record("sweep", UpdateMethod.MPT_KL, seed, params, outcome, timing))


def _run_policy_sweep(study: Study, seed: int, base: LoadedModel, runs: list[dict]) -> None:
    """One sweep of b per seed: the reference, each b, and the policy's choice as rows (kind `policy`)."""
    log(f"seed {seed}: policy sweep mpt-kl b in {study.policy_biases}")
    outcome, timing = timed_sweep(study, label=f"policy-s{seed}", base=base, seed=seed)
    trials = outcome.trials

    def row(label: str, report: FlipSummary | None, validation: Headline, bias: float | None, **extra: object) -> dict:
        assert report is not None  # evaluate_all: every trial has its evaluation report
        return {
            "kind": "policy",
            "label": label,
            "method": UpdateMethod.INDEPENDENT if bias is None else UpdateMethod.MPT_KL,
            "seed": seed,
            "bias": bias,
            **extra,
            "classes": list(outcome.data.class_map.classes),
            "k_old": outcome.data.class_map.k_old,
            "headline": headline(report),
            "counts": flip_counts(report),
            "validation": validation,
            **timing,
        }

    runs.append(row(UpdateMethod.INDEPENDENT, outcome.reference_report, outcome.reference_validation, None))
    runs.extend(row(f"b={t.params.bias:g}", t.report, t.validation, t.params.bias) for t in trials)
    best = outcome.best
    assert best.report is not None and outcome.reference_report is not None  # evaluate_all
    runs.append(
        row(
            "policy",
            best.report,
            best.validation,
            best.params.bias,
            chosen=f"b={best.params.bias:g}",
            selection=outcome.selection.to_dict() if outcome.selection else None,
            explanation=outcome.choice.explanation if outcome.choice else None,
        )
    )
    log(
        f"seed {seed}: policy sweep done in {timing['wall_s']:.0f} s, chose {best.label}: "
        f"NFR old {best.report.scopes.old_classes.nfr:.4f} (independent "
        f"{outcome.reference_report.scopes.old_classes.nfr:.4f}), accuracy {best.report.scopes.all.new_accuracy:.4f} "
        f"(independent {outcome.reference_report.scopes.all.new_accuracy:.4f})"
    )


def _run_chain(study: Study, seed: int, runs: list[dict]) -> None:
    """Successive updates, each from the previous version of the same method."""
    first, _ = first_version(study, study.chain[0], seed)
    k_first = len(first.spec.classes)
    for method in study.chain_methods:
        previous = first
        for step, classes in enumerate(study.chain[1:], start=2):
            log(f"seed {seed}: chain {method} step {step} ({len(classes)} classes)")
            outcome, step_timing = timed_update(
                study,
                label=f"chain-{method}-v{step}-s{seed}",
                base=previous,
                classes=classes,
                method=method,
                params=study.params,
                seed=seed,
            )
            # Against the first version, on the first version's classes (they keep indices 0..k-1).
            evaluation = outcome.data.evaluation
            on_first = evaluation.take((evaluation.labels < k_first).nonzero().flatten())
            versus_first, _ = evaluate(model=outcome.model, baseline=first, evaluation=on_first, k_old=k_first)
            runs.append(
                run_record(
                    "chain",
                    method,
                    seed,
                    study.params,
                    outcome,
                    step_timing,
                    step=step,
                    first_classes=list(first.spec.classes),
                    versus_first={"headline": headline(versus_first), "counts": flip_counts(versus_first)},
                )
            )
            previous = outcome.model


def run_study(study: Study) -> dict:
    started = time.perf_counter()
    study.out_dir.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    old_models: list[dict] = []
    payload = {
        "data": study.data,
        "data_digest": study.bundle.digest,
        "preset": study.preset,
        "arch": study.arch,
        "old_classes": study.old_classes,
        "classes": study.classes,
        "methods": study.methods,
        "seeds": study.seeds,
        "recipe": study.recipe.to_dict(),
        "params": study.params.to_dict(),
        "sweep_biases": study.sweep_biases,
        "policy_biases": study.policy_biases,
        "selection": study.selection.to_dict() if study.selection else None,
        "chain": study.chain,
        "chain_methods": study.chain_methods,
        "device": study.device,
        "options": study.options,
        "old_models": old_models,
        "runs": runs,
    }
    for seed in study.seeds:
        if study.methods or study.sweep_biases or study.policy_biases:
            log(f"seed {seed}: old model on {len(study.old_classes)} classes")
            base, timing = first_version(study, study.old_classes, seed)
            old_models.append({"seed": seed, "classes": list(base.spec.classes), **timing})
            _run_methods(study, seed, base, runs)
            _run_sweep(study, seed, base, runs)
            if study.policy_biases:
                _run_policy_sweep(study, seed, base, runs)
            write_outputs(study, payload, started)  # partial results survive an interrupted study
        if study.chain:
            _run_chain(study, seed, runs)
            write_outputs(study, payload, started)
    write_outputs(study, payload, started)
    return payload
