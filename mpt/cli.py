"""The engine's command line: train, import, reference, update, sweep, evaluate, demo (and reproduce)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from contracts.data_formats import DatasetFormat
from contracts.flips import Headline
from contracts.methods import UpdateMethod
from mpt import importer
from mpt.artifacts import LoadedModel, load_model, save_model
from mpt.cli_args import parse_assignments, parse_classes, recipe_from_args
from mpt.console import epoch_progress, format_table
from mpt.data import DataBundle, DataError
from mpt.flips import headline
from mpt.formats import open_dataset
from mpt.losses import METHODS
from mpt.nets import ARCHITECTURES
from mpt.recipe import MethodParams
from mpt.reference import FileReferenceStore, Progress, UpdateData
from mpt.reproduce.command import add_arguments as add_reproduce_arguments
from mpt.reproduce.command import cmd_reproduce
from mpt.sweep import DEFAULT_BIASES, run_sweep
from mpt.update import UpdateOutcome, evaluate, prepare_data, run_update

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2))


def cmd_train(args: argparse.Namespace) -> dict:
    bundle = open_dataset(args.data, args.format)
    outcome = run_update(
        bundle=bundle,
        base=None,
        classes=parse_classes(args.classes, bundle.classes),
        arch=args.arch,
        method=UpdateMethod.INDEPENDENT,
        params=MethodParams(),
        recipe=recipe_from_args(args),
        seed=args.seed,
        progress=epoch_progress("training", args.quiet),
        device=args.device,
        checkpoint_dir=args.checkpoint_dir,
    )
    sha = save_model(args.out, outcome.model.net, outcome.model.spec)
    result = {"model": args.out, "sha256": sha, "classes": list(outcome.model.spec.classes), "history": outcome.history}
    print(
        f"wrote {args.out} ({len(outcome.model.spec.classes)} classes, val accuracy "
        f"{outcome.history[-1].get('val_accuracy', float('nan')):.4f})"
    )
    return result


def cmd_import(args: argparse.Namespace) -> dict:
    spec, sha = importer.import_model(
        args.weights,
        arch=args.arch,
        classes=importer.parse_class_names(args.classes),
        image_size=importer.parse_image_size(args.image_size),
        mean=importer.parse_floats(args.mean, what="--mean"),
        std=importer.parse_floats(args.std, what="--std"),
        in_channels=args.in_channels,
        out=args.out,
    )
    height, width = spec.image_size
    print(
        f"wrote {args.out} ({spec.arch}, {len(spec.classes)} classes, {spec.in_channels}x{height}x{width} "
        f"inputs, sha256 {sha})"
    )
    return {"model": args.out, "sha256": sha, "classes": list(spec.classes)}


def _update(args: argparse.Namespace, method: str, base: LoadedModel, bundle: DataBundle) -> UpdateOutcome:
    """Run one update from the command line's options (shared by update, reference, demo)."""
    return run_update(
        bundle=bundle,
        base=base,
        classes=parse_classes(args.classes, bundle.classes),
        arch=args.arch,
        method=method,
        params=MethodParams.from_dict(parse_assignments(args.param)),
        recipe=recipe_from_args(args),
        seed=args.seed,
        store=FileReferenceStore(args.cache),
        progress=epoch_progress(method, args.quiet),
        device=args.device,
        checkpoint_dir=args.checkpoint_dir,
    )


def cmd_update(args: argparse.Namespace) -> dict:
    bundle = open_dataset(args.data, args.format)
    base = load_model(args.base)
    outcome = _update(args, args.method, base, bundle)
    sha = save_model(args.out, outcome.model.net, outcome.model.spec)
    report, reference_report = outcome.checked_report(), outcome.checked_reference_report()
    rows = {args.method: headline(report), UpdateMethod.INDEPENDENT: headline(reference_report)}
    print(format_table(rows))
    result = {
        "model": args.out,
        "sha256": sha,
        "method": args.method,
        "report": report.to_dict(),
        "reference_report": reference_report.to_dict(),
        "ledger": outcome.checked_ledger().rows(),
        "history": outcome.history,
    }
    _write_json(args.json, result)
    return result


def parse_sweep(pairs: list[str]) -> dict[str, list]:
    """['bias=0,1,2,4', 'tau=2,5'] -> {'bias': [0, 1, 2, 4], 'tau': [2, 5]}; default: b in {0, 1, 2, 4}."""
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not raw:
            raise ValueError(f"expected KEY=V1,V2,..., got {pair!r}")
        values[key.replace("-", "_")] = [json.loads(v) for v in raw.split(",")]
    return values or {"bias": list(DEFAULT_BIASES)}


def cmd_sweep(args: argparse.Namespace) -> dict:
    bundle = open_dataset(args.data, args.format)
    base = load_model(args.base)
    values = parse_sweep(args.sweep)
    progress = (
        Progress()
        if args.quiet
        else Progress(on_phase=lambda phase: print(f"  [{phase}]", file=sys.stderr, flush=True))
    )
    outcome = run_sweep(
        bundle=bundle,
        base=base,
        classes=parse_classes(args.classes, bundle.classes),
        arch=args.arch,
        method=args.method,
        params=MethodParams.from_dict(parse_assignments(args.param)),
        values=values,
        recipe=recipe_from_args(args),
        seed=args.seed,
        max_val_nfr=args.max_val_nfr,
        store=FileReferenceStore(args.cache),
        progress=progress,
        device=args.device,
        checkpoint_dir=args.checkpoint_dir,
    )
    sha = save_model(args.out, outcome.best.model.net, outcome.best.model.spec)
    names = [", ".join(f"{k}={getattr(t.params, k)}" for k in values) for t in outcome.trials]
    rows = {
        ("* " if i == outcome.winner else "") + name: {"val_accuracy": t.val_accuracy, "val_nfr_old_classes": t.val_nfr}
        for i, (name, t) in enumerate(zip(names, outcome.trials, strict=True))
    }
    rows[UpdateMethod.INDEPENDENT] = {
        "val_accuracy": outcome.reference_validation["accuracy"],
        "val_nfr_old_classes": outcome.reference_validation["nfr_old_classes"],
    }
    print(
        f"validation split ({len(outcome.data.validation)} samples); winner marked *, "
        f"{outcome.policy['chosen_because']} (bound {outcome.policy['bound']:.4f}, {outcome.policy['bound_from']}):"
    )
    print(format_table(rows))
    print(f"\nwinner {names[outcome.winner]} on the evaluation split:")
    print(
        format_table(
            {args.method: headline(outcome.report), UpdateMethod.INDEPENDENT: headline(outcome.reference_report)}
        )
    )
    result = {
        "model": args.out,
        "sha256": sha,
        "method": args.method,
        "winner": outcome.winner,
        "policy": outcome.policy,
        "trials": [t.summary() for t in outcome.trials],
        "reference_validation": outcome.reference_validation,
        "report": outcome.report.to_dict(),
        "reference_report": outcome.reference_report.to_dict(),
    }
    _write_json(args.json, result)
    return result


def cmd_reference(args: argparse.Namespace) -> dict:
    bundle = open_dataset(args.data, args.format)
    base = load_model(args.base)
    outcome = _update(args, UpdateMethod.INDEPENDENT, base, bundle)
    sha = save_model(args.out, outcome.model.net, outcome.model.spec)
    print(format_table({UpdateMethod.INDEPENDENT: headline(outcome.checked_report())}))
    return {"model": args.out, "sha256": sha}


def cmd_evaluate(args: argparse.Namespace) -> dict:
    bundle = open_dataset(args.data, args.format)
    old, new = load_model(args.old), load_model(args.new)
    k_old = len(old.spec.classes)
    if tuple(new.spec.classes[:k_old]) != tuple(old.spec.classes):
        raise DataError("the new model's first classes must be the old model's, in the same order")
    data: UpdateData = prepare_data(
        bundle,
        old_classes=list(old.spec.classes),
        classes=list(new.spec.classes),
        recipe=recipe_from_args(args),
        seed=args.seed,
    )
    report, ledger = evaluate(
        model=new, baseline=old, evaluation=data.evaluation, k_old=k_old, recipe=recipe_from_args(args)
    )
    print(format_table({Path(args.new).stem: headline(report)}))
    result = {"report": report.to_dict(), "ledger": ledger.rows()}
    _write_json(args.json, result)
    return result


def cmd_demo(args: argparse.Namespace) -> dict:
    """Class-incremental Fashion-MNIST: v1 on classes 0-4, then independent vs MPT-KL on 0-9."""
    started = time.perf_counter()
    work = Path(args.workdir)
    bundle = open_dataset(args.data, args.format)
    recipe = recipe_from_args(args)
    print(f"data: {args.data} ({len(bundle.train)} train / {len(bundle.test)} test images)")
    first = run_update(
        bundle=bundle,
        base=None,
        classes=bundle.classes[:5],
        arch=args.arch,
        method=UpdateMethod.INDEPENDENT,
        params=MethodParams(),
        recipe=recipe,
        seed=args.seed,
        progress=epoch_progress("v1", args.quiet),
        device=args.device,
    )
    save_model(work / "v1.safetensors", first.model.net, first.model.spec)
    print(f"v1 on {', '.join(first.model.spec.classes)}: val accuracy {first.history[-1]['val_accuracy']:.4f}")
    args.classes = None
    outcome = _update(args, UpdateMethod.MPT_KL, first.model, bundle)
    save_model(work / "v2-mpt-kl.safetensors", outcome.model.net, outcome.model.spec)
    report, reference_report = outcome.checked_report(), outcome.checked_reference_report()
    rows: dict[str, Headline] = {
        UpdateMethod.INDEPENDENT: headline(reference_report),
        UpdateMethod.MPT_KL: headline(report),
    }
    print("\nupdate v1 (classes 0-4) -> v2 (classes 0-9), evaluated on the test split:")
    print(format_table(rows))
    avoided = reference_report.scopes.all.negative_flips - report.scopes.all.negative_flips
    print(
        f"\nMPT-KL avoided {avoided} negative flips compared with the independent retrain "
        f"({time.perf_counter() - started:.0f} s)."
    )
    result = {UpdateMethod.INDEPENDENT: reference_report.to_dict(), UpdateMethod.MPT_KL: report.to_dict()}
    _write_json(args.json or str(work / "demo.json"), result)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpt", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def add_common(sub: argparse.ArgumentParser, *, data_default: str | None = None, seed: bool = True) -> None:
        sub.add_argument(
            "--data", default=data_default, required=data_default is None, help="data set folder or .npz file"
        )
        sub.add_argument(
            "--format", choices=[data_format.value for data_format in DatasetFormat], help="default: detected"
        )
        if seed:
            sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
        sub.add_argument("--epochs", type=int)
        sub.add_argument("--batch-size", type=int)
        sub.add_argument("--lr", type=float)
        sub.add_argument("--train-samples-per-class", type=int)
        sub.add_argument("--eval-samples-per-class", type=int)
        sub.add_argument("--image-size", type=int, help="fit images of any size to this side (default: their own)")
        sub.add_argument("--data-path", choices=["auto", "resident", "streaming"], help="default: auto")
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any Recipe field")
        sub.add_argument("--json", help="write the full result as JSON here")
        sub.add_argument("--quiet", action="store_true", help="no per-epoch lines")
        sub.add_argument("--checkpoint-dir", help="checkpoint each epoch here; a rerun resumes")

    def add_update_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--base", required=True, help="the old model (.safetensors)")
        sub.add_argument("--classes", help="classes of the update data to use (default all)")
        sub.add_argument("--arch", help="default: the base model's")
        sub.add_argument(
            "--param", action="append", default=[], metavar="KEY=VALUE", help="a MethodParams field, e.g. bias=2"
        )
        sub.add_argument("--cache", default="var/references", help="folder of cached independent references")
        sub.add_argument("--out", required=True)

    train_cmd = commands.add_parser("train", help="train a first model on a class subset")
    add_common(train_cmd)
    train_cmd.add_argument("--classes", help="e.g. 0-4 or 'Coat,Bag' (default all)")
    train_cmd.add_argument("--arch", default="small_cnn")
    train_cmd.add_argument("--out", required=True)
    train_cmd.set_defaults(handler=cmd_train)

    import_cmd = commands.add_parser(
        "import",
        help="turn a deployed model's state_dict (.pt/.pth) or safetensors file into a flipguard model file",
        description=importer.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    import_cmd.add_argument("weights", help="the state_dict (.pt/.pth) or safetensors file")
    import_cmd.add_argument("--arch", required=True, choices=list(ARCHITECTURES))
    import_cmd.add_argument(
        "--classes", required=True, help="a file with one class name per line, or 'name,name,...' (output order)"
    )
    import_cmd.add_argument("--image-size", required=True, help="input height and width: 224, 224x224 or 32,48")
    import_cmd.add_argument(
        "--mean", required=True, help="per-channel mean for pixels in [0, 1], e.g. 0.485,0.456,0.406 (ImageNet's)"
    )
    import_cmd.add_argument("--std", required=True, help="per-channel std, e.g. 0.229,0.224,0.225 (ImageNet's)")
    import_cmd.add_argument(
        "--in-channels", type=int, choices=[1, 3], help="default: read from the first convolution's weights"
    )
    import_cmd.add_argument("--out", required=True, help="the flipguard model file to write (.safetensors)")
    import_cmd.set_defaults(handler=cmd_import)

    reference_cmd = commands.add_parser("reference", help="train the independent reference for an update")
    add_common(reference_cmd)
    add_update_options(reference_cmd)
    reference_cmd.set_defaults(handler=cmd_reference)

    update_cmd = commands.add_parser("update", help="update a model with any method and report its flips")
    add_common(update_cmd)
    add_update_options(update_cmd)
    update_cmd.add_argument("--method", default=UpdateMethod.MPT_KL, choices=list(METHODS))
    update_cmd.set_defaults(handler=cmd_update)

    sweep_cmd = commands.add_parser("sweep", help="train several values of b (or other params) together, keep the best")
    add_common(sweep_cmd)
    add_update_options(sweep_cmd)
    sweep_cmd.add_argument("--method", default=UpdateMethod.MPT_KL, choices=list(METHODS))
    sweep_cmd.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a MethodParams field and its values (default bias=0,1,2,4); repeat for a grid",
    )
    sweep_cmd.add_argument(
        "--max-val-nfr", type=float, help="bound on the winner's validation NFR (default: the independent reference's)"
    )
    sweep_cmd.set_defaults(handler=cmd_sweep)

    evaluate_cmd = commands.add_parser("evaluate", help="compare two models on the evaluation split")
    add_common(evaluate_cmd)
    evaluate_cmd.add_argument("--old", required=True)
    evaluate_cmd.add_argument("--new", required=True)
    evaluate_cmd.set_defaults(handler=cmd_evaluate)

    demo_cmd = commands.add_parser("demo", help="class-incremental Fashion-MNIST: independent vs MPT-KL")
    add_common(demo_cmd, data_default=FASHION_MNIST_DIR)
    demo_cmd.add_argument("--arch", default="small_cnn")
    demo_cmd.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    demo_cmd.add_argument("--cache", default="var/references")
    demo_cmd.add_argument("--workdir", default="var/demo")
    demo_cmd.set_defaults(handler=cmd_demo, epochs=None)

    reproduce_cmd = commands.add_parser(
        "reproduce", help="the paper's protocol: every method over seeds, sweep of b, chain"
    )
    add_common(reproduce_cmd, data_default=FASHION_MNIST_DIR, seed=False)
    add_reproduce_arguments(reproduce_cmd)
    reproduce_cmd.set_defaults(handler=cmd_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
