"""`flips MODEL` and `compare A B`: flip reports."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Annotated, Literal, Self

import typer
from rich.table import Table

from api.cli.client import Session, fail, run, session
from api.cli.options import FlipKindChoice
from api.cli.output import emit_json, out, percent, ratio, table

# ---- flips and comparisons -------------------------------------------------------------------

FLIP_NAMES = {
    ("path", "model_id"): "MODEL",
    ("query", "against"): "--against",
    ("query", "label"): "--class",
    ("query", "kind"): "--kind",
    ("body", "model_id"): "A",
    ("body", "baseline_model_id"): "B",
}


def wait_for_comparison(api: Session, comparison: dict, *, interval: float) -> None:
    """Poll a comparison until its report is stored; exit 1 with the reason if it failed."""
    label = f"computing model {comparison['model_id']} against model {comparison['baseline_model_id']}"
    if comparison["status"] in ("queued", "running"):
        with out.status(label) if out.is_terminal else _null():
            if not out.is_terminal:
                out.print(f"{label} (comparison {comparison['id']}) ...")
            while comparison["status"] in ("queued", "running"):
                time.sleep(interval)
                comparison = api.json("GET", f"/comparisons/{comparison['id']}")
    if comparison["status"] == "failed":
        fail(f"comparison {comparison['id']} failed: {comparison['error']}")


class _null:
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> Literal[False]:
        return False


def fetch_report(api: Session, model: int, against: int | None, *, params: dict, interval: float) -> dict:
    """The report (JSON) of `model` against `against` (or its predecessor), waiting while a
    worker computes a pair no update job evaluated."""
    query = {**params, **({"against": against} if against is not None else {})}
    while True:
        response = api.call("GET", f"/models/{model}/flips", params=query, expect=(409,))
        if response.status_code == 202:
            wait_for_comparison(api, response.json(), interval=interval)
            continue
        if response.status_code == 409:
            # An earlier computation failed: ask again (POST retries it) and wait.
            baseline = against if against is not None else api.json("GET", f"/models/{model}")["parent_id"]
            comparison = api.json("POST", "/comparisons", json={"model_id": model, "baseline_model_id": baseline})
            wait_for_comparison(api, comparison, interval=interval)
            continue
        return response.json()


def figures_table(report: dict) -> Table:
    sides = [("this model", report["figures"])]
    if report.get("reference"):
        sides.append(("independent retrain", report["reference"]))
    grid = table("figure", *(name for name, _ in sides))

    def scope(f: dict, name: str) -> dict:
        return f["scopes"][name]

    rows: list[tuple[str, Callable[[dict], str]]] = [
        ("NFR, old classes", lambda f: f"{percent(scope(f, 'old_classes')['nfr'])} "
         f"({scope(f, 'old_classes')['negative_flips']}/{scope(f, 'old_classes')['samples']})"),
        ("NFR, all samples", lambda f: f"{percent(scope(f, 'all')['nfr'])} "
         f"({scope(f, 'all')['negative_flips']}/{scope(f, 'all')['samples']})"),
        ("relative NFR, old classes", lambda f: ratio(scope(f, "old_classes")["relative_nfr"])),
        ("PFR, all samples", lambda f: percent(scope(f, "all")["pfr"])),
        ("accuracy", lambda f: percent(f["accuracy"]["overall"])),
        ("accuracy, old classes", lambda f: percent(f["accuracy"]["old_classes"])),
        ("accuracy, new classes", lambda f: percent(f["accuracy"]["new_classes"])),
        ("baseline accuracy, old classes", lambda f: percent(scope(f, "old_classes")["old_accuracy"])),
        ("intrusion flips", lambda f: str(f["intrusion_flips"])),
    ]  # fmt: skip
    for label, read in rows:
        grid.add_row(label, *(read(figures) for _, figures in sides))
    return grid


def print_report(report: dict, *, per_class: bool) -> None:
    k_old, classes = report["k_old"], report["classes"]
    out.print(
        f"model {report['model_id']} against model {report['baseline_model_id']}: "
        f"{report['figures']['scopes']['all']['samples']} {report['split']} samples, "
        f"{k_old} classes the baseline knows of {len(classes)}"
    )
    out.print(figures_table(report))
    if per_class:
        grid = table(
            "class", "samples", "NFR", "negative", "positive", "baseline acc.", "model acc.", title="per class"
        )
        for row in report["figures"]["per_class"]:
            grid.add_row(
                row["name"] + (" (new)" if row["is_new"] else ""),
                str(row["samples"]),
                percent(row["nfr"]),
                str(row["negative_flips"]),
                str(row["positive_flips"]),
                percent(row["old_accuracy"]),
                percent(row["new_accuracy"]),
            )
        out.print(grid)


def print_samples(report: dict) -> None:
    page = report["samples"]
    grid = table("#sample", "kind", "label", "baseline said", "model says", "baseline conf.", "model conf.")
    for s in page["items"]:
        grid.add_row(
            str(s["sample_index"]),
            s["kind"] + (" (intrusion)" if s["is_intrusion"] else ""),
            s["label_name"],
            s["old_prediction_name"],
            s["new_prediction_name"],
            percent(s["old_confidence"], 0),
            percent(s["new_confidence"], 0),
        )
    out.print(grid)
    out.print(f"{len(page['items'])} of {page['total']} matching flips")


def flips(
    model: Annotated[int, typer.Argument(help="the model whose flips are counted", min=0)],
    against: Annotated[
        int | None, typer.Option(help="the baseline model id", min=0, show_default="the model's predecessor")
    ] = None,
    kind: Annotated[FlipKindChoice | None, typer.Option(help="list flipped samples of this kind")] = None,
    class_name: Annotated[
        str | None, typer.Option("--class", help="list flipped samples of this true class (name or index)")
    ] = None,
    csv: Annotated[bool, typer.Option("--csv", help="print the (filtered) ledger as CSV instead")] = False,
    limit: Annotated[int, typer.Option(min=1, max=500, help="flipped samples listed")] = 20,
    interval: Annotated[float, typer.Option(help="seconds between polls while a report is computed")] = 1.0,
) -> None:
    """A model's flip report against its predecessor (or --against any other version).

    A pair no update job evaluated is computed by a worker first; the command waits for it.
    """
    filters = {**({"kind": kind.value} if kind else {}), **({"label": class_name} if class_name else {})}

    def act() -> None:
        api = session()
        report = fetch_report(api, model, against, params={"page_size": limit, **filters}, interval=interval)
        if csv:
            query = {**filters, "format": "csv", **({"against": against} if against is not None else {})}
            sys.stdout.write(api.call("GET", f"/models/{model}/flips", params=query).text)
            return None
        if api.as_json:
            return emit_json(report)
        print_report(report, per_class=False)
        if filters:
            print_samples(report)
        return None

    run(act, FLIP_NAMES)


def compare(
    model_a: Annotated[int, typer.Argument(metavar="A", help="the model whose flips are counted", min=0)],
    model_b: Annotated[int, typer.Argument(metavar="B", help="the baseline it is compared against", min=0)],
    interval: Annotated[float, typer.Option(help="seconds between polls")] = 1.0,
) -> None:
    """The flip report of any version A against any version B, computed on demand (waits for it).

    Both are evaluated on the evaluation split of the newer one's update job; the report is
    stored, so asking again answers at once.
    """

    def act() -> None:
        api = session()
        comparison = api.json("POST", "/comparisons", json={"model_id": model_a, "baseline_model_id": model_b})
        wait_for_comparison(api, comparison, interval=interval)
        report = fetch_report(api, model_a, model_b, params={"page_size": 1}, interval=interval)
        if api.as_json:
            return emit_json(report)
        print_report(report, per_class=True)
        return None

    run(act, FLIP_NAMES)
