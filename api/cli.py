"""Command-line client of the flipguard API: `python -m api.cli --help`.

The base URL comes from --url, else FLIPGUARD_URL, else http://127.0.0.1:8000; the API token
from --token, else FLIPGUARD_TOKEN (create one with `python -m api.tokens create`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import httpx

from contracts.data_formats import DatasetFormat
from contracts.methods import UpdateMethod

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_STATUSES = {"succeeded", "failed", "cancelled"}
BAR_WIDTH = 30


class ApiFailure(Exception):
    """An error response, with the API's field-naming detail."""


def request(client: httpx.Client, method: str, path: str, **kwargs) -> dict:
    """Call the API and return its JSON; raise ApiFailure with the error detail otherwise."""
    response = client.request(method, path, **kwargs)
    if response.is_error:
        try:
            details = response.json()["detail"]
            text = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details)
        except (ValueError, KeyError, TypeError):
            text = response.text
        raise ApiFailure(f"HTTP {response.status_code}: {text}")
    return response.json()


def print_table(headers: list[str], rows: list[list]) -> None:
    """Print rows as aligned text columns."""
    cells = [[str(value) for value in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def parse_assignments(pairs: list[str], *, flag: str) -> dict:
    """`key=value` pairs with JSON values (`bias=2`, `mean=[0.5]`); bare strings stay strings."""
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"{flag} expects key=value, got {pair!r}")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def parse_sweep(pairs: list[str]) -> dict[str, list]:
    """`bias=0,1,2,4` -> {"bias": [0, 1, 2, 4]} (repeatable for a grid)."""
    grid = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not raw:
            raise SystemExit(f"--sweep expects KEY=V1,V2,..., got {pair!r}")
        try:
            grid[key] = [json.loads(value) for value in raw.split(",")]
        except json.JSONDecodeError:
            raise SystemExit(f"--sweep values must be numbers, got {raw!r}") from None
    return grid


def datasets_add(client: httpx.Client, args) -> None:
    dataset = request(client, "POST", "/datasets", json={"name": args.name, "uri": args.uri, "format": args.format})
    print(f"data set {dataset['id']} {dataset['name']}: {dataset['status']} (a worker inspects it)")


def models_list(client: httpx.Client, args) -> None:
    params = {key: value for key, value in (("family", args.family), ("status", args.status)) if value}
    page = request(client, "GET", "/models", params={**params, "page_size": args.limit})
    print_table(
        ["id", "family", "version", "status", "architecture", "parent", "method", "created"],
        [
            [
                m["id"],
                m["family"],
                m["version"],
                m["status"],
                m["architecture"],
                m["parent_id"] or "-",
                m["method"] or "-",
                m["created_at"][:19],
            ]
            for m in page["items"]
        ],
    )


def models_upload(client: httpx.Client, args) -> None:
    with args.file as handle:
        model = request(
            client,
            "POST",
            "/models",
            data={"family": args.family},
            files={"file": (os.path.basename(handle.name), handle)},
        )
    print(
        f"model {model['id']}: {model['family']} v{model['version']} {model['status']} "
        f"({model['architecture']}, {len(model['classes'])} classes)"
    )


def update_submit(client: httpx.Client, args) -> None:
    body = {
        "base_model_id": args.base,
        "family": args.family,
        "architecture": args.architecture,
        "dataset_id": args.dataset,
        "classes": args.classes.split(",") if args.classes else None,
        "method": args.method,
        "method_params": parse_assignments(args.param, flag="--param"),
        "recipe": parse_assignments(args.recipe, flag="--recipe"),
        "gate": {
            "max_nfr": args.max_nfr,
            "min_accuracy": args.min_accuracy,
            "max_accuracy_drop": args.max_accuracy_drop,
            "max_nfr_ratio": args.max_nfr_ratio,
            "auto_promote": args.auto_promote,
        },
        "seed": args.seed,
        "sweep": parse_sweep(args.sweep) or None,
        "selection": parse_assignments(args.selection, flag="--selection") or None,
    }
    body = {key: value for key, value in body.items() if value is not None}
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    job = request(client, "POST", "/updates", json=body, headers=headers)
    print(f"update job {job['id']} {job['status']} ({job['method']}, family {job['family']})")
    if args.watch:
        watch(client, job["id"], interval=args.interval)


def progress_line(job: dict) -> str:
    """One line: a bar, the percentage, status, phase and epoch."""
    filled = round(BAR_WIDTH * (job["progress"] or 0))
    epoch = f" epoch {job['epoch']}/{job['epochs']}" if job.get("epoch") is not None else ""
    return (
        f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {100 * (job['progress'] or 0):5.1f}% "
        f"{job['status']} {job['phase'] or ''}{epoch}"
    )


def watch(client: httpx.Client, job_id: int, *, interval: float) -> None:
    """Redraw the job's progress until it finishes; exit non-zero unless it succeeded."""
    redraw = sys.stdout.isatty()  # a log gets one line per change instead of a redrawn bar
    shown = None
    while True:
        job = request(client, "GET", f"/updates/{job_id}")
        line = progress_line(job)
        if redraw:
            sys.stdout.write("\r" + line.ljust(BAR_WIDTH + 50))
        elif line != shown:
            sys.stdout.write(line + "\n")
        shown = line
        sys.stdout.flush()
        if job["status"] in TERMINAL_STATUSES:
            break
        time.sleep(interval)
    if redraw:
        print()
    if job["status"] == "succeeded":
        print(f"registered model {job['result_model_id']}")
        print_candidates(job)
        return
    raise ApiFailure(f"job {job_id} {job['status']}" + (f": {job['error']}" if job["error"] else ""))


def update_watch(client: httpx.Client, args) -> None:
    watch(client, args.job_id, interval=args.interval)


def print_candidates(job: dict) -> None:
    """A sweeping job's candidates on the validation split, the independent retrain and the choice."""
    candidates = job.get("candidates") or []
    if not candidates:
        if job.get("sweep"):
            print(f"sweep {json.dumps(job['sweep'])}: candidates are listed once the job has succeeded")
        return
    choice = job.get("choice") or {}
    qualified = set(choice.get("qualified") or [])
    rows = [
        [
            ("* " if c["chosen"] else "  ") + c["label"],
            percent(c["validation"].get("accuracy")),
            percent(c["validation"].get("nfr_old_classes")),
            "yes" if c["index"] in qualified else "no",
        ]
        for c in candidates
    ]
    reference = choice.get("reference_validation") or {}
    if reference:
        rows.append(
            [
                "  independent retrain",
                percent(reference.get("accuracy")),
                percent(reference.get("nfr_old_classes")),
                "-",
            ]
        )
    print(f"candidates of job {job['id']} (validation split; * = chosen and registered):")
    print_table(["candidate", "val accuracy", "val NFR (old classes)", "within bound"], rows)
    if choice:
        print(f"rule: {choice.get('rule')}")
        print(f"choice: {choice.get('explanation')}")


def update_show(client: httpx.Client, args) -> None:
    job = request(client, "GET", f"/updates/{args.job_id}")
    print(progress_line(job))
    if job["result_model_id"] is not None:
        print(f"registered model {job['result_model_id']}")
    if job["error"]:
        print(f"error: {job['error']}")
    print_candidates(job)


def flips(client: httpx.Client, args) -> None:
    params = {"page_size": 1, **({"against": args.against} if args.against else {})}
    report = request(client, "GET", f"/models/{args.model_id}/flips", params=params)
    sides = [("model", report["figures"]), ("reference", report["reference"])]

    def figure(read) -> list[str]:
        return [read(figures) if figures else "-" for _, figures in sides]

    def scope(name: str, key: str):
        return lambda f: f["scopes"][name][key]

    print(
        f"model {report['model_id']} against model {report['baseline_model_id']} "
        f"({report['split']} split, {report['k_old']} old of {len(report['classes'])} classes)"
    )
    print_table(
        ["figure", "model", "reference"],
        [
            [
                "NFR (old classes)",
                *figure(
                    lambda f: (
                        f"{percent(scope('old_classes', 'nfr')(f))} "
                        f"({f['scopes']['old_classes']['negative_flips']}/"
                        f"{f['scopes']['old_classes']['samples']})"
                    )
                ),
            ],
            [
                "NFR (all)",
                *figure(
                    lambda f: (
                        f"{percent(scope('all', 'nfr')(f))} "
                        f"({f['scopes']['all']['negative_flips']}/"
                        f"{f['scopes']['all']['samples']})"
                    )
                ),
            ],
            ["relative NFR (old classes)", *figure(lambda f: f"{scope('old_classes', 'relative_nfr')(f):.3f}")],
            ["accuracy", *figure(lambda f: percent(f["accuracy"]["overall"]))],
            ["accuracy (old classes)", *figure(lambda f: percent(f["accuracy"]["old_classes"]))],
            ["accuracy (new classes)", *figure(lambda f: percent(f["accuracy"]["new_classes"]))],
        ],
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m api.cli", description=__doc__)
    parser.add_argument("--url", default=os.environ.get("FLIPGUARD_URL", DEFAULT_URL))
    parser.add_argument(
        "--token", default=os.environ.get("FLIPGUARD_TOKEN"), help="API token (default: $FLIPGUARD_TOKEN)"
    )
    commands = parser.add_subparsers(required=True, dest="command")

    datasets = commands.add_parser("datasets").add_subparsers(required=True, dest="action")
    add = datasets.add_parser("add", help="register a data set folder or file on the server")
    add.add_argument("name")
    add.add_argument("uri")
    add.add_argument("--format", required=True, choices=[data_format.value for data_format in DatasetFormat])
    add.set_defaults(run=datasets_add)

    models = commands.add_parser("models").add_subparsers(required=True, dest="action")
    listing = models.add_parser("list", help="model versions, newest first")
    listing.add_argument("--family")
    listing.add_argument("--status", choices=["candidate", "production", "rejected", "archived"])
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=models_list)
    upload = models.add_parser("upload", help="register a deployed model file (`mpt import` writes one)")
    upload.add_argument("file", type=argparse.FileType("rb"), help="a flipguard model file (.safetensors)")
    upload.add_argument("--family", required=True, help="the model family; its first model becomes v1 in production")
    upload.set_defaults(run=models_upload)

    update = commands.add_parser("update").add_subparsers(required=True, dest="action")
    submit = update.add_parser("submit", help="schedule an update job")
    submit.add_argument("--base", type=int, help="base model id (omit for a first version)")
    submit.add_argument("--dataset", type=int, required=True)
    submit.add_argument("--family")
    submit.add_argument("--architecture")
    submit.add_argument("--classes", help="comma-separated class names (default: all)")
    submit.add_argument("--method", choices=[method.value for method in UpdateMethod], help="default: the server's")
    submit.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="method parameter, e.g. bias=2 (repeatable)"
    )
    submit.add_argument(
        "--recipe", action="append", default=[], metavar="KEY=VALUE", help="recipe field, e.g. epochs=30 (repeatable)"
    )
    submit.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="train candidates side by side, e.g. bias=0,1,2,4 (repeatable; default for MPT without bias: that one)",
    )
    submit.add_argument(
        "--selection",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="how the winner is chosen, e.g. policy=min_nfr max_accuracy_drop=0.005 (repeatable)",
    )
    submit.add_argument("--max-nfr", type=float)
    submit.add_argument("--min-accuracy", type=float)
    submit.add_argument("--max-accuracy-drop", type=float, help="gate: accuracy >= the independent retrain's - this")
    submit.add_argument("--max-nfr-ratio", type=float, help="gate: NFR <= this x the independent retrain's")
    submit.add_argument("--auto-promote", action="store_true")
    submit.add_argument("--seed", type=int)
    submit.add_argument("--idempotency-key")
    submit.add_argument("--watch", action="store_true", help="follow the job's progress")
    submit.add_argument("--interval", type=float, default=2.0)
    submit.set_defaults(run=update_submit)
    follow = update.add_parser("watch", help="follow a job's progress")
    follow.add_argument("job_id", type=int)
    follow.add_argument("--interval", type=float, default=2.0)
    follow.set_defaults(run=update_watch)
    show = update.add_parser("show", help="a job's state and, for a sweep, its candidate table")
    show.add_argument("job_id", type=int)
    show.set_defaults(run=update_show)

    report = commands.add_parser("flips", help="a model's flip figures beside its reference model's")
    report.add_argument("model_id", type=int)
    report.add_argument("--against", type=int, help="baseline model id (default: predecessor)")
    report.set_defaults(run=flips)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        with httpx.Client(base_url=args.url, timeout=30, headers=headers) as client:
            args.run(client, args)
    except ApiFailure as failure:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    except httpx.HTTPError as error:
        print(f"error: cannot reach {args.url}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
