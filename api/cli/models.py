"""`models list | show | upload | download | promote | lineage`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from api.cli.client import run, session
from api.cli.downloads import download
from api.cli.options import ModelStatusChoice
from api.cli.output import emit_json, facts, optional, out, percent, ratio, table, when
from contracts.jobs import GateVerdict

models_app = typer.Typer(help="Model versions: list, show, upload, download, promote, lineage.", no_args_is_help=True)


# ---- models ----------------------------------------------------------------------------------

MODEL_ID = {("path", "model_id"): "MODEL_ID"}


def model_row_figures(model: dict) -> tuple[str, str, str]:
    figures = model.get("figures")
    if not figures:
        return "-", "-", "-"
    accuracy = percent(figures["accuracy"])
    if figures["measured_as"] == "baseline":
        accuracy += "*"
    return accuracy, percent(figures["nfr_old_classes"]), ratio(figures["relative_nfr_old_classes"])


@models_app.command("list")
def models_list(
    family: Annotated[str | None, typer.Option(help="only this family")] = None,
    status: Annotated[ModelStatusChoice | None, typer.Option(help="only versions in this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="at most this many, newest first")] = 50,
) -> None:
    """Model versions, newest first, with accuracy and NFR against their predecessor.

    An accuracy marked * is a first or uploaded version's, measured as the baseline of its
    successor's report (on the samples of its own classes); such a version has no NFR.
    """

    def act() -> None:
        api = session()
        params = {
            "page_size": limit,
            **({"family": family} if family else {}),
            **({"status": status} if status else {}),
        }
        page = api.json("GET", "/models", params=params)
        if api.as_json:
            return emit_json(page)
        grid = table(
            "id", "family", "version", "status", "architecture", "method", "classes", "accuracy", "NFR old", "rel. NFR",
            "parent", "created",
        )  # fmt: skip
        for m in page["items"]:
            grid.add_row(
                str(m["id"]),
                m["family"],
                f"v{m['version']}",
                m["status"],
                m["architecture"],
                m["method"] or "uploaded",
                str(len(m["classes"])),
                *model_row_figures(m),
                str(m["parent_id"] or "-"),
                when(m["created_at"]),
            )
        out.print(grid)
        out.print(f"{len(page['items'])} of {page['total']} versions; accuracy* = measured as its successor's baseline")

    run(act)


def print_model(model: dict) -> None:
    figures = model.get("figures") or {}
    verdict: GateVerdict | None = model.get("gate_verdict")
    gate = None
    if verdict:
        gate = ("passed" if verdict["passed"] else "failed") + (
            f" ({'; '.join(verdict['reasons'])})" if verdict.get("reasons") else ""
        )
    facts(
        [
            ("id", model["id"]),
            ("version", f"{model['family']} v{model['version']}"),
            ("status", model["status"]),
            ("architecture", model["architecture"]),
            ("method", model["method"] or "uploaded"),
            ("classes", f"{len(model['classes'])}: {', '.join(model['classes'])}"),
            ("parent", model["parent_id"]),
            ("trained by job", model["job_id"]),
            ("accuracy", percent(figures.get("accuracy")) if figures else None),
            ("NFR, old classes", optional(percent, figures.get("nfr_old_classes"))),
            ("relative NFR", optional(ratio, figures.get("relative_nfr_old_classes"))),
            ("measured on", figures.get("measured_on")),
            ("gate", gate),
            ("promoted", when(model.get("promoted_at")) if model.get("promoted_at") else None),
            ("promoted by", escape(model["promoted_by"]) if model.get("promoted_by") else None),
            ("promotion reason", model.get("promotion_reason")),
            ("forced", "yes" if model.get("forced") else None),
            ("sha256", model["sha256"]),
            ("created", when(model["created_at"])),
        ]
    )  # fmt: skip


@models_app.command("show")
def models_show(model_id: Annotated[int, typer.Argument(help="model id", min=0)]) -> None:
    """One model version: status, classes, figures and what they were measured on, gate, promotion."""

    def act() -> None:
        api = session()
        model = api.json("GET", f"/models/{model_id}")
        emit_json(model) if api.as_json else print_model(model)

    run(act, MODEL_ID)


@models_app.command("upload")
def models_upload(
    path: Annotated[
        Path, typer.Argument(help="a safetensors file with flipguard.* metadata", exists=True, dir_okay=False)
    ],
    family: Annotated[str, typer.Option(help="the family it belongs to (a new one starts in production)")],
) -> None:
    """Register a deployed model by uploading its safetensors weights."""

    def act() -> None:
        api = session()
        with open(path, "rb") as handle, out.status(f"uploading {path.name}"):
            model = api.json(
                "POST",
                "/models",
                data={"family": family},
                files={"file": (path.name, handle, "application/octet-stream")},
            )
        if api.as_json:
            return emit_json(model)
        out.print(
            f"registered model {model['id']}: {model['family']} v{model['version']} {model['status']} "
            f"({model['architecture']}, {len(model['classes'])} classes)"
        )

    run(act, {("body", "file"): "PATH", ("body", "family"): "--family"})


@models_app.command("download")
def models_download(
    model_id: Annotated[int, typer.Argument(help="model id", min=0)],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file to write", show_default="FAMILY-vVERSION.safetensors")
    ] = None,
) -> None:
    """Download a version's safetensors weights (sha256 checked)."""

    def act() -> None:
        api = session()
        model = api.json("GET", f"/models/{model_id}")
        target = output or Path(f"{model['family']}-v{model['version']}.safetensors")
        sha256 = download(api, f"/models/{model_id}/weights", target, what=f"model {model_id}")
        out.print(f"wrote {target} (sha256 {sha256})")

    run(act, MODEL_ID)


@models_app.command("promote")
def models_promote(
    model_id: Annotated[int, typer.Argument(help="model id", min=0)],
    force: Annotated[bool, typer.Option(help="promote although the gate did not pass (needs --reason)")] = False,
    reason: Annotated[str | None, typer.Option(help="why; recorded with the promotion")] = None,
) -> None:
    """Make a version its family's production version (the previous one is archived)."""

    def act() -> None:
        api = session()
        model = api.json("POST", f"/models/{model_id}/promote", json={"force": force, "reason": reason})
        if api.as_json:
            return emit_json(model)
        # Escaped: a token's name is printed as written, never read as rich markup.
        out.print(
            f"model {model['id']} ({model['family']} v{model['version']}) is in production: "
            f"{model['promotion_reason']} (promoted by {escape(model['promoted_by'] or '-')})"
        )

    run(act, {**MODEL_ID, ("body", "reason"): "--reason", ("body", "force"): "--force"})


@models_app.command("lineage")
def models_lineage(model_id: Annotated[int, typer.Argument(help="model id", min=0)]) -> None:
    """A version and its predecessors, newest first, with accuracy, NFR and class counts."""

    def act() -> None:
        api = session()
        chain = api.json("GET", f"/models/{model_id}/lineage")
        if api.as_json:
            return emit_json(chain)
        grid = table(
            "id", "version", "status", "method", "classes", "accuracy", "NFR old", "NFR all", "rel. NFR", "measured on"
        )
        for entry in chain:
            grid.add_row(
                str(entry["id"]),
                f"v{entry['version']}",
                entry["status"],
                entry["method"] or "uploaded",
                str(entry["classes"]),
                percent(entry["accuracy"]),
                percent(entry["nfr_old_classes"]),
                percent(entry["nfr_all"]),
                ratio(entry["relative_nfr_old_classes"]),
                entry["accuracy_measured_on"] or "-",
            )
        out.print(grid)

    run(act, MODEL_ID)
