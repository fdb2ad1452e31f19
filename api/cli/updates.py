"""`updates submit | list | show | cancel | watch | reference`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from api.cli.client import EXIT_CODES_HELP, run, session
from api.cli.downloads import download
from api.cli.jobs import finish_job, job_line, parse_sweep, print_candidates, watch_job
from api.cli.options import Architecture, JobStatusChoice, Method, parse_assignments, split_classes
from api.cli.output import emit_json, facts, out, percent, table, when
from contracts.methods import UpdateMethod

updates_app = typer.Typer(
    help="Update jobs: submit, list, show, cancel, watch, download a reference.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
)


# ---- updates ---------------------------------------------------------------------------------

SUBMIT_NAMES = {
    ("body", "base_model_id"): "--base",
    ("body", "dataset_id"): "--dataset",
    ("body", "family"): "--family",
    ("body", "architecture"): "--architecture",
    ("body", "classes"): "--classes",
    ("body", "method"): "--method",
    ("body", "method_params"): "--param",
    ("body", "recipe"): "--recipe",
    ("body", "gate", "max_nfr"): "--max-nfr",
    ("body", "gate", "min_accuracy"): "--min-accuracy",
    ("body", "gate", "max_accuracy_drop"): "--max-accuracy-drop",
    ("body", "gate", "max_nfr_ratio"): "--max-nfr-ratio",
    ("body", "sweep"): "--sweep",
    ("body", "selection"): "--selection",
    ("body", "seed"): "--seed",
    ("header", "Idempotency-Key"): "--idempotency-key",
}
JOB_ID = {("path", "job_id"): "JOB_ID"}


@updates_app.command("submit")
def updates_submit(
    dataset: Annotated[int, typer.Option(help="id of a ready data set", min=0, show_default=False)],
    base: Annotated[
        int | None, typer.Option(help="the version to update; omit to train a first version", min=0, show_default=False)
    ] = None,
    family: Annotated[str | None, typer.Option(help="required without --base", show_default=False)] = None,
    architecture: Annotated[
        Architecture | None,
        typer.Option(help="network to train", show_default="the base model's; required without --base"),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(help='comma-separated class names, e.g. "Shirt, Bag"', show_default="all of the data set"),
    ] = None,
    method: Annotated[
        Method | None,
        typer.Option(help="training method (docs/METHOD.md)", show_default="mpt-kl; independent without --base"),
    ] = None,
    param: Annotated[
        list[str], typer.Option(metavar="KEY=VALUE", help="method parameter, e.g. bias=2 (repeatable)")
    ] = [],  # noqa: B006
    recipe: Annotated[
        list[str], typer.Option(metavar="KEY=VALUE", help="recipe field, e.g. epochs=30 (repeatable)")
    ] = [],  # noqa: B006
    max_nfr: Annotated[
        float | None, typer.Option(help="gate: highest NFR on old classes that passes", show_default=False)
    ] = None,
    min_accuracy: Annotated[
        float | None, typer.Option(help="gate: lowest overall accuracy that passes", show_default=False)
    ] = None,
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(help="gate: accuracy at least the independent retrain's minus this", show_default=False),
    ] = None,
    max_nfr_ratio: Annotated[
        float | None,
        typer.Option(help="gate: NFR on old classes at most this times the independent retrain's", show_default=False),
    ] = None,
    sweep: Annotated[
        list[str],
        typer.Option(
            metavar="KEY=V1,V2,...",
            help="train candidates side by side and register the one --selection picks, e.g. bias=0,1,2,4 "
            "(repeatable for a grid, at most 8 candidates); an MPT method without --param bias sweeps that by default",
        ),
    ] = [],  # noqa: B006
    selection: Annotated[
        list[str],
        typer.Option(
            metavar="KEY=VALUE",
            help="how the sweep's winner is chosen: policy=min_nfr (with max_accuracy_drop, default 0.005) or "
            "policy=max_accuracy (with max_nfr or max_nfr_ratio); repeatable",
        ),
    ] = [],  # noqa: B006
    auto_promote: Annotated[bool, typer.Option(help="promote at once when the gate passes")] = False,
    seed: Annotated[int | None, typer.Option(help="random seed", show_default="0")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="repeat the submission safely", show_default=False)
    ] = None,
    watch: Annotated[bool, typer.Option(help="follow the job to its end; the exit code tells the outcome")] = False,
    interval: Annotated[float, typer.Option(help="seconds between polls")] = 2.0,
) -> None:
    """Schedule an update job (or a first version without --base).

    With --watch the command follows the job and exits 0 when a version was registered and not
    rejected, 1 when the job failed, 3 when the gate rejected the version, 4 when the job was cancelled.
    """  # fmt: skip
    names = split_classes(classes)
    params = parse_assignments(param, flag="--param")
    recipe_values = parse_assignments(recipe, flag="--recipe")
    grid = parse_sweep(sweep)
    policy = parse_assignments(selection, flag="--selection")

    def act() -> None:
        api = session()
        chosen = method.value if method else (UpdateMethod.MPT_KL if base is not None else UpdateMethod.INDEPENDENT)
        body = {
            "base_model_id": base,
            "family": family,
            "architecture": architecture.value if architecture else None,
            "dataset_id": dataset,
            "classes": names,
            "method": chosen,
            "method_params": params,
            "recipe": recipe_values,
            "gate": {
                "max_nfr": max_nfr,
                "min_accuracy": min_accuracy,
                "max_accuracy_drop": max_accuracy_drop,
                "max_nfr_ratio": max_nfr_ratio,
                "auto_promote": auto_promote,
            },
            "seed": seed,
            "sweep": grid or None,
            "selection": policy or None,
        }
        body = {key: value for key, value in body.items() if value is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        job = api.json("POST", "/updates", json=body, headers=headers)
        if api.as_json and not watch:
            return emit_json(job)
        out.print(f"update job {job['id']} {job['status']} ({job['method']}, family {job['family']})")
        if watch:
            finish_job(api, watch_job(api, job["id"], interval=interval))

    run(act, SUBMIT_NAMES)


@updates_app.command("list")
def updates_list(
    status: Annotated[JobStatusChoice | None, typer.Option(help="only jobs in this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="at most this many, newest first")] = 50,
) -> None:
    """Update jobs, newest first."""

    def act() -> None:
        api = session()
        page = api.json("GET", "/updates", params={"page_size": limit, **({"status": status.value} if status else {})})
        if api.as_json:
            return emit_json(page)
        grid = table(
            "id", "family", "method", "base", "data set", "status", "phase", "epoch", "result", "created", "error"
        )
        for j in page["items"]:
            grid.add_row(
                str(j["id"]),
                j["family"],
                j["method"],
                str(j["base_model_id"] or "-"),
                str(j["dataset_id"]),
                j["status"],
                j["phase"] or "-",
                f"{j['epoch']}/{j['epochs']}" if j["epoch"] is not None else "-",
                str(j["result_model_id"] or "-"),
                when(j["created_at"]),
                (j["error"] or "")[:60],
            )
        out.print(grid)
        out.print(f"{len(page['items'])} of {page['total']} jobs")

    run(act)


@updates_app.command("show")
def updates_show(job_id: Annotated[int, typer.Argument(help="update job id", min=0)]) -> None:
    """One job: its request, state, reference, outcome and per-epoch events."""

    def act() -> None:
        api = session()
        job = api.json("GET", f"/updates/{job_id}")
        if api.as_json:
            return emit_json(job)
        gate = job["gate"] or {}
        facts(
            [
                ("id", job["id"]),
                ("family", job["family"]),
                ("base model", job["base_model_id"] or "none (a first version)"),
                ("data set", job["dataset_id"]),
                ("classes", ", ".join(job["classes"]) if job["classes"] else "all of the data set"),
                ("method", f"{job['method']} {json.dumps(job['method_params'])}"),
                ("architecture", job["architecture"]),
                ("recipe", json.dumps(job["recipe"])),
                ("gate", f"max NFR {gate.get('max_nfr')}, min accuracy {gate.get('min_accuracy')}, "
                 f"max accuracy drop vs retrain {gate.get('max_accuracy_drop')}, "
                 f"max NFR ratio vs retrain {gate.get('max_nfr_ratio')}, auto-promote {gate.get('auto_promote')}"),
                ("sweep", f"{json.dumps(job['sweep'])}, selection {json.dumps(job.get('selection'))}"
                 if job.get("sweep") else None),
                ("status", job_line(job)),
                ("attempts", job["attempts"]),
                ("worker", job["worker_id"]),
                ("error", job["error"]),
                ("result model", job["result_model_id"]),
                ("reference", f"{job['reference_id']} (weights: {job['reference_weights_url']})"
                 if job.get("reference_id") is not None else None),
                ("created", when(job["created_at"])),
                ("finished", when(job["finished_at"])),
            ]
        )  # fmt: skip
        events = [e for e in job.get("events", []) if e.get("epoch") is not None]
        if events:
            grid = table("phase", "epoch", "train loss", "val accuracy", "val NFR", "lr", title="per-epoch events")
            for event in events:
                metrics = event["metrics"] or {}
                row = (metrics.get("students") or [metrics])[0]
                grid.add_row(
                    event["phase"],
                    str(event["epoch"]),
                    f"{row['train_loss']:.4f}" if row.get("train_loss") is not None else "-",
                    percent(row.get("val_accuracy")),
                    percent(row.get("val_nfr")),
                    f"{row['lr']:.4g}" if row.get("lr") is not None else "-",
                )
            out.print(grid)
        print_candidates(job)

    run(act, JOB_ID)


@updates_app.command("cancel")
def updates_cancel(job_id: Annotated[int, typer.Argument(help="update job id", min=0)]) -> None:
    """Cancel a job: a queued one at once, a running one at its worker's next check."""

    def act() -> None:
        api = session()
        job = api.json("POST", f"/updates/{job_id}/cancel")
        if api.as_json:
            return emit_json(job)
        state = "cancelled" if job["status"] == "cancelled" else f"{job['status']}, cancellation requested"
        out.print(f"update job {job_id}: {state}")

    run(act, JOB_ID)


@updates_app.command("watch")
def updates_watch(
    job_id: Annotated[int, typer.Argument(help="update job id", min=0)],
    interval: Annotated[float, typer.Option(help="seconds between polls")] = 2.0,
) -> None:
    """Follow a job to its end; the exit code tells the outcome (0, 1 failed, 3 gate-rejected, 4 cancelled)."""

    def act() -> None:
        api = session()
        finish_job(api, watch_job(api, job_id, interval=interval))

    run(act, JOB_ID)


@updates_app.command("reference")
def updates_reference(
    job_id: Annotated[int, typer.Argument(help="update job id", min=0)],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="file to write", show_default="job-JOB_ID-reference.safetensors"),
    ] = None,
) -> None:
    """Download the independent reference a job trained or reused (safetensors, sha256 checked)."""

    def act() -> None:
        api = session()
        target = output or Path(f"job-{job_id}-reference.safetensors")
        sha256 = download(api, f"/updates/{job_id}/reference/weights", target, what=f"reference of job {job_id}")
        out.print(f"wrote {target} (sha256 {sha256})")

    run(act, JOB_ID)
