"""`mpt reproduce` on the command line: its options, the Study they resolve to, the handler."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from contracts.data_formats import DatasetFormat
from contracts.selection import Selection
from mpt.cli_args import parse_assignments, parse_classes, recipe_from_args
from mpt.console import format_table
from mpt.formats import detect_format, load_dataset
from mpt.losses import METHODS
from mpt.recipe import MethodParams
from mpt.reproduce.protocol import run_study
from mpt.reproduce.report import method_means
from mpt.reproduce.runs import log
from mpt.reproduce.study import CHAIN_METHODS, PAPER_METHODS, POLICY_BIASES, PRESETS, SWEEP_BIASES, Study


def add_arguments(sub: argparse.ArgumentParser) -> None:
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
        "--policy-sweep",
        nargs="?",
        const=",".join(f"{b:g}" for b in POLICY_BIASES),
        metavar="B,B,...",
        help="train mpt-kl at these b together (bare flag: 0,1,2,4, the service's default sweep), report each "
        "on the evaluation split beside the one --selection picks on the validation split",
    )
    sub.add_argument(
        "--selection",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the policy of --policy-sweep, as in POST /updates (default policy=min_nfr max_accuracy_drop=0.005)",
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


def _classes(text: str, available: list[str], option: str) -> list[str]:
    """`parse_classes` of an option that must name classes."""
    classes = parse_classes(text, available)
    if classes is None:
        raise ValueError(f"{option} names no classes")
    return classes


def study_from_args(args: argparse.Namespace) -> Study:
    """The Study of the command line's options, the preset filling those left unset."""
    data_format = args.format or detect_format(Path(args.data))
    preset_name = args.preset or ("paper" if data_format == DatasetFormat.CIFAR else "quick")
    preset = PRESETS[preset_name]
    # Preset recipe values go under the command line's: explicit options and --set win
    # (recipe_from_args applies --set in order, then the explicit options).
    args.set = [f"{name}={json.dumps(value)}" for name, value in preset["recipe"].items()] + list(args.set)
    recipe = recipe_from_args(args)
    params = MethodParams.from_dict({**preset["params"], **parse_assignments(args.param)})

    bundle = load_dataset(args.data, data_format)
    old_classes = _classes(args.old_classes or preset["old_classes"], bundle.classes, "--old-classes")
    new_classes = _classes(args.new_classes or preset["new_classes"], bundle.classes, "--new-classes")
    classes = list(dict.fromkeys(old_classes + new_classes))

    methods = _split_list(args.methods)
    chain_methods = _split_list(args.chain_methods) if args.chain else []
    for name in methods + chain_methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    seeds = [int(s) for s in _split_list(args.seeds)]
    if not seeds:
        raise ValueError("--seeds needs at least one seed")
    chain: list[list[str]] = []
    if args.chain:
        spec = preset["chain"] if args.chain == "preset" else args.chain
        chain = [_classes(step, bundle.classes, "a --chain step") for step in spec.split(":")]
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
        policy_biases=[float(b) for b in _split_list(args.policy_sweep)] if args.policy_sweep else [],
        selection=Selection.from_dict(parse_assignments(args.selection)).resolved() if args.policy_sweep else None,
        chain=chain,
        chain_methods=chain_methods,
        quiet=args.quiet,
        checkpoint_dir=Path(args.checkpoint_dir) if args.checkpoint_dir else None,
        options={k: v for k, v in vars(args).items() if k != "handler"},
    )


def cmd_reproduce(args: argparse.Namespace) -> dict:
    """Run the study the options describe, print its methods' table and where its files went."""
    study = study_from_args(args)
    log(
        f"reproduce: {len(study.methods)} methods x {len(study.seeds)} seeds on {study.data} "
        f"({study.arch}, {study.recipe.epochs} epochs), sweep {study.sweep_biases or 'off'}, "
        f"policy sweep {study.policy_biases or 'off'}, "
        f"chain {[len(c) for c in study.chain] or 'off'} -> {study.out_dir}"
    )
    payload = run_study(study)
    means = method_means(payload["runs"])
    if means:
        print(format_table(means))
    print(
        f"wrote {study.out_dir / 'results.json'} and {study.out_dir / 'results.md'} ({payload['wall_s'] / 60:.1f} min)"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return payload
