"""`datasets add | list | show`."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from api.cli.client import Session, fail, run, session
from api.cli.options import DatasetStatusChoice, Format
from api.cli.output import emit_json, facts, out, table, when

datasets_app = typer.Typer(help="Register data sets and read what the worker found in them.", no_args_is_help=True)


# ---- datasets --------------------------------------------------------------------------------

DATASET_NAMES = {("body", "name"): "NAME", ("body", "uri"): "URI", ("body", "format"): "--format"}


def print_dataset(dataset: dict) -> None:
    classes = dataset.get("classes") or []
    facts(
        [
            ("id", dataset["id"]),
            ("name", dataset["name"]),
            ("status", dataset["status"]),
            ("error", dataset.get("error")),
            ("format", dataset["format"]),
            ("uri", dataset["uri"]),
            ("classes", f"{len(classes)}: {', '.join(classes)}" if classes else None),
            ("train / test", f"{dataset.get('train_size')} / {dataset.get('test_size')}" if classes else None),
            ("image shape", dataset.get("image_shape")),
            ("digest", dataset.get("digest")),
            ("registered", when(dataset.get("created_at"))),
        ]
    )


def wait_for_dataset(api: Session, dataset_id: int, *, interval: float) -> dict:
    with out.status(f"data set {dataset_id}: waiting for a worker to inspect it"):
        while True:
            dataset = api.json("GET", f"/datasets/{dataset_id}")
            if dataset["status"] != "pending":
                return dataset
            time.sleep(interval)


@datasets_app.command("add")
def datasets_add(
    name: Annotated[str, typer.Argument(help="a new, unique name (letters, digits, . _ -)")],
    uri: Annotated[str, typer.Argument(help="absolute path of the folder (or .npz file) on the server")],
    data_format: Annotated[Format, typer.Option("--format", "-f", help="how the files are laid out")],
    wait: Annotated[bool, typer.Option(help="wait for the inspection; exit 1 if it fails")] = False,
    interval: Annotated[float, typer.Option(help="seconds between polls")] = 1.0,
) -> None:
    """Register a data set; a worker then reads its classes and sizes (status pending -> ready)."""

    def act() -> None:
        api = session()
        dataset = api.json("POST", "/datasets", json={"name": name, "uri": uri, "format": data_format.value})
        if wait:
            dataset = wait_for_dataset(api, dataset["id"], interval=interval)
        if api.as_json:
            emit_json(dataset)
        elif dataset["status"] == "pending":
            out.print(f"data set {dataset['id']} {dataset['name']}: pending (a worker inspects it)")
        else:
            print_dataset(dataset)
        if dataset["status"] == "failed":
            fail(f"data set {dataset['id']} could not be read: {dataset['error']}")

    run(act, DATASET_NAMES)


@datasets_app.command("list")
def datasets_list(
    status: Annotated[DatasetStatusChoice | None, typer.Option(help="only data sets in this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="at most this many, newest first")] = 50,
) -> None:
    """Registered data sets, newest first."""

    def act() -> None:
        api = session()
        params = {"page_size": limit, **({"status": status.value} if status else {})}
        page = api.json("GET", "/datasets", params=params)
        if api.as_json:
            return emit_json(page)
        grid = table("id", "name", "status", "format", "classes", "train", "test", "error")
        for d in page["items"]:
            grid.add_row(
                str(d["id"]),
                d["name"],
                d["status"],
                d["format"],
                str(len(d["classes"])) if d["classes"] else "-",
                str(d["train_size"] or "-"),
                str(d["test_size"] or "-"),
                (d["error"] or "")[:60],
            )
        out.print(grid)
        out.print(f"{len(page['items'])} of {page['total']} data sets")

    run(act)


@datasets_app.command("show")
def datasets_show(dataset_id: Annotated[int, typer.Argument(help="data set id", min=0)]) -> None:
    """One data set: status, error, classes, sizes, digest."""

    def act() -> None:
        api = session()
        dataset = api.json("GET", f"/datasets/{dataset_id}")
        emit_json(dataset) if api.as_json else print_dataset(dataset)

    run(act, {("path", "dataset_id"): "DATASET_ID"})
