"""The paper's protocol as one command: every method over several seeds, a sweep of b and a
chain of successive updates, written as results.json, a markdown report and a plot.

Per seed: the old model (independent on the old classes), the independent reference on
old + new classes, then each method through `mpt.update.run_update`, whose reference store
trains the reference and the ELODI ensemble once per seed and reuses them for every method.

Presets: a CIFAR-100 folder gets the paper's setting (resnet18, classes 0-49 -> 0-99, the
Recipe defaults: 100 epochs, batch 128, SGD 0.1, paper normalisation); any other data set
gets a budget that finishes the Fashion-MNIST study on a 2-core CPU in about an hour.
Every preset value is overridden by the matching command-line option.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from mpt.artifacts import LoadedModel
from mpt.cli import FileReferenceStore, _parse_assignments, _progress, format_table, parse_classes, recipe_from_args
from mpt.data import DataBundle, detect_format, load_dataset
from mpt.flips import headline
from mpt.losses import METHODS
from mpt.recipe import MethodParams, Recipe
from mpt.update import Progress, UpdateOutcome, evaluate, run_update

PAPER_METHODS = (
    "independent",
    "pct-naive",
    "pct-kl",
    "pct-lm",
    "elodi",
    "mpt-kl",
    "mpt-lm",
    "mpt-nodistill",
    "mpt-kl-nobias",
    "mpt-lm-nobias",
)
SWEEP_BIASES = (0.0, 1.0, 2.0, 4.0, 8.0)
CHAIN_METHODS = ("independent", "mpt-kl")

# Preset values fill the options left unset on the command line.
PRESETS = {
    # docs/METHOD.md, "The paper's recipe": CIFAR-100, resnet18, 0-49 -> 0-99, the Recipe defaults.
    "paper": {
        "arch": "resnet18",
        "old_classes": "0-49",
        "new_classes": "50-99",
        "chain": "0-32:0-65:0-99",
        "recipe": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]},
        "params": {},
    },
    # Sized for a shared 2-core CPU: the Fashion-MNIST study with sweep and chain took 54
    # minutes with OMP_NUM_THREADS=1, the methods alone about 35 (docs/REPRODUCTION.md). ELODI's distillation starts
    # after the first epoch, the nearest to the paper's 5 of 100 epochs.
    "quick": {
        "arch": "small_cnn",
        "old_classes": "0-4",
        "new_classes": "5-9",
        "chain": "0-3:0-6:0-9",
        "recipe": {"epochs": 5, "train_samples_per_class": 500, "eval_samples_per_class": 500},
        "params": {"elodi_start_epoch": 1},
    },
}

HEADLINE_COLUMNS = (
    # (headline key, column title, shown as a percentage)
    ("nfr_old_classes", "NFR old (%)", True),
    ("nfr_all", "NFR all (%)", True),
    ("relative_nfr_old_classes", "rel. NFR old", False),
    ("accuracy", "acc (%)", True),
    ("accuracy_old_classes", "acc old (%)", True),
    ("accuracy_new_classes", "acc new (%)", True),
    ("btc", "BTC (%)", True),
)


# ----------------------------------------------------------------------------- configuration


@dataclass
class Study:
    """Everything one `reproduce` invocation does, resolved from the options and the preset."""

    bundle: DataBundle
    data: str
    preset: str
    arch: str
    old_classes: list[str]
    classes: list[str]
    methods: list[str]
    seeds: list[int]
    recipe: Recipe
    params: MethodParams
    out_dir: Path
    device: str = "auto"
    sweep_biases: list[float] = field(default_factory=list)
    chain: list[list[str]] = field(default_factory=list)
    chain_methods: list[str] = field(default_factory=list)
    quiet: bool = False
    checkpoint_dir: Path | None = None
    options: dict = field(default_factory=dict)  # the command line's values, for the record

    @property
    def store(self) -> FileReferenceStore:
        return FileReferenceStore(self.out_dir / "models")


def add_arguments(sub) -> None:
    """The options of `mpt reproduce` beyond the common data/recipe ones of mpt.cli."""
    sub.add_argument("--old-classes", help="classes of the old model (default: preset, 0-4 / 0-49)")
    sub.add_argument("--new-classes", help="classes the update adds; the update trains on old + new (default: preset)")
    sub.add_argument(
        "--methods", default=",".join(PAPER_METHODS), help="comma-separated, or 'none' (default: all of the paper's)"
    )
    sub.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    sub.add_argument("--arch", help="network (default: preset, small_cnn / resnet18)")
    sub.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a MethodParams field, e.g. elodi_ensemble_size=3",
    )
    sub.add_argument(
        "--sweep-bias",
        nargs="?",
        const=",".join(f"{b:g}" for b in SWEEP_BIASES),
        metavar="B,B,...",
        help="also sweep b for mpt-kl (bare flag: 0,1,2,4,8) and plot accuracy against NFR",
    )
    sub.add_argument(
        "--chain",
        nargs="?",
        const="preset",
        metavar="CLASSES:CLASSES:...",
        help="also run a chain of successive updates, e.g. 0-3:0-6:0-9 (bare flag: the preset's)",
    )
    sub.add_argument(
        "--chain-methods", default=",".join(CHAIN_METHODS), help="methods of the chain (default independent,mpt-kl)"
    )
    sub.add_argument("--preset", choices=sorted(PRESETS), help="default: paper for a CIFAR-100 folder, quick otherwise")
    sub.add_argument(
        "--out-dir", default="var/reproduce", help="results.json, results.md, sweep.png and cached models go here"
    )


def _split_list(text: str | None) -> list[str]:
    if not text or text.strip().lower() == "none":
        return []
    return [t.strip() for t in text.split(",") if t.strip()]


def study_from_args(args) -> Study:
    data_format = args.format or detect_format(Path(args.data))
    preset_name = args.preset or ("paper" if data_format == "cifar" else "quick")
    preset = PRESETS[preset_name]
    # Preset recipe values go under the command line's: explicit options and --set win
    # (recipe_from_args applies --set in order, then the explicit options).
    args.set = [f"{name}={json.dumps(value)}" for name, value in preset["recipe"].items()] + list(args.set)
    recipe = recipe_from_args(args)
    params = MethodParams.from_dict({**preset["params"], **_parse_assignments(args.param)})

    bundle = load_dataset(args.data, data_format)
    old_classes = parse_classes(args.old_classes or preset["old_classes"], bundle.classes)
    new_classes = parse_classes(args.new_classes or preset["new_classes"], bundle.classes)
    classes = list(dict.fromkeys(old_classes + new_classes))

    methods = _split_list(args.methods)
    chain_methods = _split_list(args.chain_methods) if args.chain else []
    for name in methods + chain_methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    seeds = [int(s) for s in _split_list(args.seeds)]
    if not seeds:
        raise ValueError("--seeds needs at least one seed")
    chain = []
    if args.chain:
        spec = preset["chain"] if args.chain == "preset" else args.chain
        chain = [parse_classes(step, bundle.classes) for step in spec.split(":")]
        if len(chain) < 2:
            raise ValueError("--chain needs at least two steps, e.g. 0-3:0-6:0-9")
    return Study(
        bundle=bundle,
        data=str(args.data),
        preset=preset_name,
        arch=args.arch or preset["arch"],
        old_classes=old_classes,
        classes=classes,
        methods=methods,
        seeds=seeds,
        recipe=recipe,
        params=params,
        out_dir=Path(args.out_dir),
        device=args.device,
        sweep_biases=[float(b) for b in _split_list(args.sweep_bias)] if args.sweep_bias else [],
        chain=chain,
        chain_methods=chain_methods,
        quiet=args.quiet,
        checkpoint_dir=Path(args.checkpoint_dir) if args.checkpoint_dir else None,
        options={k: v for k, v in vars(args).items() if k != "handler"},
    )


# ----------------------------------------------------------------------------- running


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _counts(report: dict) -> dict:
    """The raw counts behind the headline ratios, so they can be re-derived and summed."""
    keys = ("samples", "negative_flips", "positive_flips", "old_correct", "new_correct")
    return {
        "scopes": {scope: {k: figures[k] for k in keys} for scope, figures in report["scopes"].items()},
        "new_class_samples": report["new_class_samples"],
        "both_correct": report["both_correct"],
        "both_wrong": report["both_wrong"],
        "intrusion_flips": report["intrusion_flips"],
    }


class _PhaseTimer:
    """Wall time per pipeline phase of one run_update call (reference, ensemble-N, training...)."""

    def __init__(self, study: Study, label: str):
        self.times: dict[str, float] = {}
        self._phase, self._since = None, time.perf_counter()
        self._inner = _progress(label, study.quiet)

    def _enter(self, phase: str) -> None:
        self._close()
        self._phase = phase
        if self._inner.on_phase:
            self._inner.on_phase(phase)

    def _close(self) -> None:
        now = time.perf_counter()
        if self._phase is not None:
            self.times[self._phase] = self.times.get(self._phase, 0.0) + now - self._since
        self._since = now

    def progress(self) -> Progress:
        return Progress(on_phase=self._enter, callbacks=self._inner.callbacks)

    def finish(self) -> dict[str, float]:
        self._close()
        return {k: round(v, 2) for k, v in self.times.items()}


def _update(
    study: Study,
    *,
    label: str,
    base: LoadedModel | None,
    classes: list[str],
    method: str,
    params: MethodParams,
    seed: int,
) -> tuple[UpdateOutcome, dict]:
    timer = _PhaseTimer(study, label)
    started = time.perf_counter()
    outcome = run_update(
        bundle=study.bundle,
        base=base,
        classes=classes,
        arch=study.arch,
        method=method,
        params=params,
        recipe=study.recipe,
        seed=seed,
        store=study.store,
        progress=timer.progress(),
        device=study.device,
        checkpoint_dir=study.checkpoint_dir / label if study.checkpoint_dir else None,
    )
    wall = time.perf_counter() - started
    return outcome, {"wall_s": round(wall, 2), "phase_s": timer.finish()}


def _old_model(study: Study, classes: list[str], seed: int) -> tuple[LoadedModel, dict]:
    """A first version (independent on `classes`), cached in the study's model folder."""
    identity = {
        "data": study.bundle.digest,
        "classes": classes,
        "arch": study.arch,
        "recipe": study.recipe.digest(),
        "seed": seed,
        "role": "first-version",
    }
    key = "first-" + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
    cached = study.store.load(key)
    if cached is not None:
        return cached, {"wall_s": 0.0, "phase_s": {}, "cached": True}
    outcome, timing = _update(
        study, label=f"old-s{seed}", base=None, classes=classes, method="independent", params=MethodParams(), seed=seed
    )
    study.store.save(key, outcome.model)
    return outcome.model, {
        **timing,
        "val_accuracy": outcome.history[-1].get("val_accuracy") if outcome.history else None,
    }


def _effective_bias(method: str, params: MethodParams) -> float | None:
    """The b a method trains with: None for the methods without L_Delta."""
    if method.endswith("-nobias"):
        return 0.0
    return params.bias if method.startswith("mpt-") else None


def _record(
    kind: str, method: str, seed: int, params: MethodParams, outcome: UpdateOutcome, timing: dict, **extra
) -> dict:
    return {
        "kind": kind,
        "method": method,
        "seed": seed,
        "bias": _effective_bias(method, params),
        **extra,
        "classes": list(outcome.data.class_map.classes),
        "k_old": outcome.data.class_map.k_old,
        "headline": headline(outcome.report),
        "counts": _counts(outcome.report),
        "final_val_accuracy": outcome.history[-1].get("val_accuracy") if outcome.history else None,
        **timing,
    }


def _run_methods(study: Study, seed: int, base: LoadedModel, runs: list[dict]) -> None:
    # The reference first (it is also the `independent` row), so that later wall times are
    # each method's own training, except ELODI's which include its ensemble.
    ordered = sorted(study.methods, key=lambda m: m != "independent")
    if "independent" not in ordered and any(METHODS[m].needs_reference for m in ordered):
        ordered.insert(0, "independent")  # trained anyway; reported for the comparison
    for method in ordered:
        _log(f"seed {seed}: {method}")
        outcome, timing = _update(
            study,
            label=f"{method}-s{seed}",
            base=base,
            classes=study.classes,
            method=method,
            params=study.params,
            seed=seed,
        )
        runs.append(_record("method", method, seed, study.params, outcome, timing))
        _log(
            f"seed {seed}: {method} done in {timing['wall_s']:.0f} s, "
            f"NFR old {outcome.report['scopes']['old_classes']['nfr']:.4f}, "
            f"accuracy {outcome.report['scopes']['all']['new_accuracy']:.4f}"
        )


def _sweep_params(study: Study, bias: float) -> MethodParams:
    return replace(study.params, bias=bias)


def _run_sweep(study: Study, seed: int, base: LoadedModel, runs: list[dict]) -> None:
    done = {(r["method"], r["seed"]): r for r in runs if r["kind"] == "method"}
    for bias in study.sweep_biases:
        # b = params.bias is the mpt-kl row and b = 0 the mpt-kl-nobias row: the same loss,
        # seed and data, so the same weights; reuse them instead of training again.
        same = None
        if bias == study.params.bias and ("mpt-kl", seed) in done:
            same = done[("mpt-kl", seed)]
        elif bias == 0 and ("mpt-kl-nobias", seed) in done:
            same = done[("mpt-kl-nobias", seed)]
        if same is not None:
            runs.append({**same, "kind": "sweep", "method": "mpt-kl", "bias": bias, "reused_from": same["method"]})
            continue
        _log(f"seed {seed}: sweep mpt-kl b={bias:g}")
        params = _sweep_params(study, bias)
        outcome, timing = _update(
            study,
            label=f"sweep-b{bias:g}-s{seed}",
            base=base,
            classes=study.classes,
            method="mpt-kl",
            params=params,
            seed=seed,
        )
        runs.append(_record("sweep", "mpt-kl", seed, params, outcome, timing))


def _run_chain(study: Study, seed: int, runs: list[dict]) -> None:
    """Successive updates, each from the previous version of the same method."""
    first, timing = _old_model(study, study.chain[0], seed)
    k_first = len(first.spec.classes)
    for method in study.chain_methods:
        previous = first
        for step, classes in enumerate(study.chain[1:], start=2):
            _log(f"seed {seed}: chain {method} step {step} ({len(classes)} classes)")
            outcome, step_timing = _update(
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
                _record(
                    "chain",
                    method,
                    seed,
                    study.params,
                    outcome,
                    step_timing,
                    step=step,
                    first_classes=list(first.spec.classes),
                    versus_first={"headline": headline(versus_first), "counts": _counts(versus_first)},
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
        "chain": study.chain,
        "chain_methods": study.chain_methods,
        "device": study.device,
        "options": study.options,
        "old_models": old_models,
        "runs": runs,
    }
    for seed in study.seeds:
        if study.methods or study.sweep_biases:
            _log(f"seed {seed}: old model on {len(study.old_classes)} classes")
            base, timing = _old_model(study, study.old_classes, seed)
            old_models.append({"seed": seed, "classes": list(base.spec.classes), **timing})
            _run_methods(study, seed, base, runs)
            _run_sweep(study, seed, base, runs)
            _write_outputs(study, payload, started)  # partial results survive an interrupted study
        if study.chain:
            _run_chain(study, seed, runs)
            _write_outputs(study, payload, started)
    _write_outputs(study, payload, started)
    return payload


# ----------------------------------------------------------------------------- reporting


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def _cell(values: list, percent: bool) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    scale = 100.0 if percent else 1.0
    mean, std = _mean_std([v * scale for v in values])
    digits = 2 if percent else 3
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def summarize(runs: list[dict], *, kind: str, group: str = "method") -> dict[str, dict[str, list]]:
    """Headline figures of one kind of run, grouped (by method, or by b for a sweep)."""
    groups: dict[str, dict[str, list]] = {}
    for run in runs:
        if run["kind"] != kind:
            continue
        name = run[group] if group != "bias" else f"b={run['bias']:g}"
        figures = groups.setdefault(name, {})
        for key, value in run["headline"].items():
            figures.setdefault(key, []).append(value)
        figures.setdefault("wall_s", []).append(run["wall_s"])
    return groups


def _markdown_table(groups: dict[str, dict[str, list]], first_column: str) -> list[str]:
    header = [first_column, *(title for _, title, _ in HEADLINE_COLUMNS), "seeds", "wall s (mean)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, figures in groups.items():
        cells = [_cell(figures[key], percent) for key, _, percent in HEADLINE_COLUMNS]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {len(figures['wall_s'])} | {statistics.fmean(figures['wall_s']):.0f} |"
        )
    return lines


def _chain_table(runs: list[dict]) -> list[str]:
    rows: dict[tuple[str, int], list[dict]] = {}
    for run in runs:
        if run["kind"] == "chain":
            rows.setdefault((run["method"], run["step"]), []).append(run)
    header = [
        "method",
        "step",
        "classes",
        "NFR vs previous, its classes (%)",
        "NFR vs v1, v1's classes (%)",
        "acc (%)",
        "acc on v1's classes (%)",
        "BTC vs previous (%)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (method, step), group in rows.items():
        lines.append(
            "| "
            + " | ".join(
                [
                    method,
                    f"v{step - 1} -> v{step}",
                    str(len(group[0]["classes"])),
                    _cell([r["headline"]["nfr_old_classes"] for r in group], True),
                    _cell([r["versus_first"]["headline"]["nfr_all"] for r in group], True),
                    _cell([r["headline"]["accuracy"] for r in group], True),
                    _cell([r["versus_first"]["headline"]["accuracy"] for r in group], True),
                    _cell([r["headline"]["btc"] for r in group], True),
                ]
            )
            + " |"
        )
    return lines


def render_markdown(payload: dict, elapsed: float) -> str:
    runs = payload["runs"]
    recipe = payload["recipe"]
    lines = [
        "# Reproduction results",
        "",
        f"Data `{payload['data']}`, preset `{payload['preset']}`, arch `{payload['arch']}`, "
        f"old classes {len(payload['old_classes'])} -> {len(payload['classes'])} classes, seeds {payload['seeds']}.",
        f"Recipe: {recipe['epochs']} epochs, batch {recipe['batch_size']}, lr {recipe['lr']}, "
        f"train samples per class {recipe['train_samples_per_class'] or 'all'}, "
        f"eval samples per class {recipe['eval_samples_per_class'] or 'all'}. "
        f"Method params: {json.dumps(payload['params'])}.",
        f"Wall time so far: {elapsed / 60:.1f} min. Figures are mean ± sample std over seeds; "
        "NFR old = over the old classes' evaluation samples (the paper's scope), NFR all = over every sample.",
    ]
    methods = summarize(runs, kind="method")
    if methods:
        lines += ["", "## Methods", "", *_markdown_table(methods, "method")]
    sweep = summarize(runs, kind="sweep", group="bias")
    if sweep:
        lines += [
            "",
            "## Sweep of b (mpt-kl)",
            "",
            *_markdown_table(sweep, "b"),
            "",
            "![accuracy against NFR](sweep.png)",
        ]
    if any(r["kind"] == "chain" for r in runs):
        lines += ["", "## Chain of updates", "", *_chain_table(runs)]
    return "\n".join(lines) + "\n"


def plot_sweep(payload: dict, path: Path) -> Path | None:
    """Accuracy against NFR (old classes) for each b, with the other methods as reference points."""
    sweep = summarize(payload["runs"], kind="sweep", group="bias")
    if not sweep:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    def point(figures):
        x, xerr = _mean_std([100 * v for v in figures["nfr_old_classes"]])
        y, yerr = _mean_std([100 * v for v in figures["accuracy"]])
        return x, y, xerr or 0.0, yerr or 0.0

    figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    points = [(name, *point(figures)) for name, figures in sweep.items()]
    axes.errorbar(
        [p[1] for p in points],
        [p[2] for p in points],
        xerr=[p[3] for p in points],
        yerr=[p[4] for p in points],
        fmt="o-",
        color="tab:blue",
        capsize=3,
        label="mpt-kl, sweep of b",
    )
    for name, x, y, _, _ in points:
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8, color="tab:blue")
    others = summarize(payload["runs"], kind="method")
    for index, (name, figures) in enumerate(others.items()):
        if name == "mpt-kl":
            continue
        x, y, xerr, yerr = point(figures)
        axes.errorbar(
            [x], [y], xerr=[xerr], yerr=[yerr], fmt="s", capsize=2, markersize=4, color=f"C{(index % 9) + 1}", alpha=0.8
        )
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(5, -10), fontsize=7)
    axes.set_xlabel("negative flip rate on old classes (%)")
    axes.set_ylabel("accuracy, all classes (%)")
    seeds = len(payload["seeds"])
    axes.set_title(f"{payload['arch']}: accuracy vs NFR (mean ± std over {seeds} seed{'s' * (seeds > 1)})", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _write_outputs(study: Study, payload: dict, started: float) -> None:
    elapsed = time.perf_counter() - started
    payload["wall_s"] = round(elapsed, 1)
    (study.out_dir / "results.json").write_text(json.dumps(payload, indent=2))
    (study.out_dir / "results.md").write_text(render_markdown(payload, elapsed))
    plot_sweep(payload, study.out_dir / "sweep.png")


def cmd_reproduce(args) -> dict:
    study = study_from_args(args)
    _log(
        f"reproduce: {len(study.methods)} methods x {len(study.seeds)} seeds on {study.data} "
        f"({study.arch}, {study.recipe.epochs} epochs), sweep {study.sweep_biases or 'off'}, "
        f"chain {[len(c) for c in study.chain] or 'off'} -> {study.out_dir}"
    )
    payload = run_study(study)
    methods = summarize(payload["runs"], kind="method")
    if methods:
        means = {
            name: {key: _cell(figures[key], percent) for key, _, percent in HEADLINE_COLUMNS}
            for name, figures in methods.items()
        }
        print(format_table(means))
    print(
        f"wrote {study.out_dir / 'results.json'} and {study.out_dir / 'results.md'} ({payload['wall_s'] / 60:.1f} min)"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return payload
