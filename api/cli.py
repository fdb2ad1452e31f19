"""Command-line client of the flipguard API: `python -m api.cli --help`.

Every REST resource has a command: data sets, model versions, update jobs, flip reports and
comparisons of any two versions. The base URL comes from --url, else FLIPGUARD_URL, else
http://127.0.0.1:8000; the API token from --token, else FLIPGUARD_TOKEN (create one with
`python -m api.tokens create`). The client imports neither torch nor the database layer.
"""

from __future__ import annotations

import enum
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from contracts.data_formats import DatasetFormat
from contracts.methods import UpdateMethod
from contracts.model_file import HEAD_WEIGHT_KEYS

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_JOB_STATUSES = {"succeeded", "failed", "cancelled"}


class ExitCode(enum.IntEnum):
    """The exit status of every command (documented in --help)."""

    OK = 0
    FAILED = 1  # the API refused the request, or the job / comparison / inspection failed
    USAGE = 2  # a bad option or argument (click's own usage errors exit 2 too)
    GATE_REJECTED = 3  # the job succeeded but its gate rejected the version
    CANCELLED = 4  # the job was cancelled
    UNREACHABLE = 5  # the API could not be reached


EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 failed (the API refused the request, or the job, comparison or "
    "inspection failed); 2 usage error; 3 the gate rejected the trained version; 4 the job was "
    "cancelled; 5 the API could not be reached."
)

# Choices shown by --help, from the names every layer shares (contracts/).
Method = enum.Enum("Method", {member.name: member.value for member in UpdateMethod}, type=str)  # type: ignore[misc]
Architecture = enum.Enum("Architecture", {name.upper(): name for name in HEAD_WEIGHT_KEYS}, type=str)  # type: ignore[misc]
Format = enum.Enum("Format", {member.name: member.value for member in DatasetFormat}, type=str)  # type: ignore[misc]


class ModelStatusChoice(enum.StrEnum):
    candidate = "candidate"
    production = "production"
    rejected = "rejected"
    archived = "archived"


class JobStatusChoice(enum.StrEnum):
    queued = "queued"
    running = "running"
    evaluating = "evaluating"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class DatasetStatusChoice(enum.StrEnum):
    pending = "pending"
    ready = "ready"
    failed = "failed"


class FlipKindChoice(enum.StrEnum):
    negative = "negative"
    positive = "positive"


OVERVIEW = """Command-line client of the flipguard API.

Commands:

* `datasets add NAME URI --format F [--wait]`, `datasets list`, `datasets show ID`
* `models list` (accuracy and NFR columns), `models show ID`, `models upload FILE --family F`,
`models download ID [-o FILE]`, `models promote ID [--force --reason R]`, `models lineage ID`
* `updates submit --dataset D [--base M] [--watch] ...`, `updates list`, `updates show ID`,
`updates cancel ID`, `updates watch ID`
* `flips MODEL [--against OTHER] [--kind K] [--class C] [--csv]`: a flip report
* `compare A B`: the flip report of any version against any other (computed on demand; waits)

The API's URL comes from --url or FLIPGUARD_URL, the token from --token or FLIPGUARD_TOKEN
(`python -m api.tokens create`). Every command takes --help.
"""

app = typer.Typer(
    name="python -m api.cli",
    help=OVERVIEW,
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
datasets_app = typer.Typer(help="Register data sets and read what the worker found in them.", no_args_is_help=True)
models_app = typer.Typer(help="Model versions: list, show, upload, download, promote, lineage.", no_args_is_help=True)
updates_app = typer.Typer(
    help="Update jobs: submit, list, show, cancel, watch.", epilog=EXIT_CODES_HELP, no_args_is_help=True
)
app.add_typer(datasets_app, name="datasets")
app.add_typer(models_app, name="models")
app.add_typer(updates_app, name="updates")
app.add_typer(updates_app, name="update", hidden=True)  # the earlier name, kept for scripts


def _console(stream=None) -> Console:
    """A console that does not squeeze tables when writing to a file or a pipe."""
    console = Console(file=stream, soft_wrap=False, highlight=False)
    if not console.is_terminal:
        console = Console(file=stream, soft_wrap=False, highlight=False, width=200)
    return console


out = _console()
err = _console(sys.stderr)


# ---- the client and its errors ---------------------------------------------------------------


class ApiFailure(Exception):
    """An error response of the API: its status and its detail rows ({loc, msg, type})."""

    def __init__(self, status: int, details: list[dict], text: str):
        super().__init__(text)
        self.status = status
        self.details = details
        self.text = text


@dataclass
class Session:
    """The HTTP client of one command, with the settings of the top-level options."""

    client: httpx.Client
    url: str
    as_json: bool

    def call(self, method: str, path: str, *, expect: tuple[int, ...] = (), **kwargs) -> httpx.Response:
        """Send a request; raise ApiFailure for an error status (unless it is in `expect`)."""
        response = self.client.request(method, path, **kwargs)
        if response.is_error and response.status_code not in expect:
            details: list[dict] = []
            try:
                body = response.json()
                details = [d for d in body.get("detail", []) if isinstance(d, dict)]
            except (ValueError, AttributeError):
                pass
            raise ApiFailure(response.status_code, details, response.text)
        return response

    def json(self, method: str, path: str, **kwargs) -> Any:
        return self.call(method, path, **kwargs).json()


# Client factory: tests replace it to run commands against an in-process app.
def make_client(url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, timeout=60, headers=headers)


STATE: dict[str, Any] = {}


def session() -> Session:
    """The client of the running command (created by the top-level callback)."""
    if "session" not in STATE:
        STATE["session"] = Session(make_client(STATE["url"], STATE["token"]), STATE["url"], STATE["as_json"])
    return STATE["session"]


def fail(message: str, code: ExitCode = ExitCode.FAILED) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(int(code))


def describe_failure(failure: ApiFailure, names: dict[tuple, str]) -> str:
    """The API's error in the CLI's words: each `loc` becomes the option or argument it came from."""
    if not failure.details:
        return f"HTTP {failure.status}: {failure.text.strip()[:500]}"
    parts = []
    for detail in failure.details:
        loc = tuple(detail.get("loc") or ())
        name = names.get(loc)
        if name is None and len(loc) > 2 and loc[:2] in names:  # a key inside an option's dict
            name = f"{names[loc[:2]]} {'.'.join(map(str, loc[2:]))}"
        if name is None and loc[:1] == ("header",) and loc[1:] == ("Authorization",):
            name = "--token"
        where = name or (".".join(map(str, loc)) if loc else "")
        parts.append(f"{where}: {detail.get('msg')}" if where else str(detail.get("msg")))
    return "; ".join(parts)


def run(action: Callable[[], Any], names: dict[tuple, str] | None = None) -> Any:
    """Run a command's body, turning API failures and network errors into messages and codes."""
    try:
        return action()
    except ApiFailure as failure:
        fail(describe_failure(failure, names or {}))
    except httpx.HTTPError as error:
        fail(f"cannot reach the API at {STATE.get('url')}: {error}", ExitCode.UNREACHABLE)


def emit_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


# ---- formatting ------------------------------------------------------------------------------


def percent(value: float | None, digits: int = 2) -> str:
    """0.0123 -> '1.23%'; None -> '-'."""
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def ratio(value: float | None) -> str:
    """Relative NFR: a ratio (docs/METHOD.md), shown with three decimals everywhere."""
    return "-" if value is None else f"{value:.3f}"


def optional(show: Callable[[float], str], value: float | None) -> str | None:
    """A figure shown with `show`, or None (the row shows '-') when there is none."""
    return None if value is None else show(value)


def when(value: str | None) -> str:
    return "-" if not value else value[:19].replace("T", " ")


def table(*headers: str, title: str | None = None) -> Table:
    grid = Table(title=title, title_justify="left", header_style="bold")
    for header in headers:
        numeric = header.lower().startswith(("acc", "nfr", "rel", "samples", "#", "id", "version", "classes"))
        grid.add_column(header, justify="right" if numeric else "left", overflow="fold")
    return grid


def facts(rows: list[tuple[str, Any]], title: str | None = None) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row(key, "-" if value is None or value == "" else str(value))
    if title:
        out.print(f"[bold]{title}[/]")
    out.print(grid)


def split_classes(text: str | None) -> list[str] | None:
    """`"shirt, bag"` -> ["shirt", "bag"]: names are comma-separated, spaces around them dropped."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise typer.BadParameter("an empty class name (two commas, or a comma at an end)", param_hint="--classes")
    return names


def parse_assignments(pairs: list[str], *, flag: str) -> dict:
    """`key=value` pairs with JSON values (`bias=2`, `mean=[0.5]`); bare strings stay strings."""
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expects KEY=VALUE, got {pair!r}", param_hint=flag)
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values


# ---- top level -------------------------------------------------------------------------------


@app.callback()
def main_options(
    url: Annotated[str, typer.Option(envvar="FLIPGUARD_URL", help="the API's base URL")] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(envvar="FLIPGUARD_TOKEN", help="API token (`python -m api.tokens create`)", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON instead of tables")] = False,
) -> None:
    STATE.clear()
    STATE.update(url=url.rstrip("/"), token=token, as_json=as_json)


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

    def act():
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

    def act():
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

    def act():
        api = session()
        dataset = api.json("GET", f"/datasets/{dataset_id}")
        emit_json(dataset) if api.as_json else print_dataset(dataset)

    run(act, {("path", "dataset_id"): "DATASET_ID"})


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

    def act():
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
    verdict = model.get("gate_verdict")
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
            ("promotion reason", model.get("promotion_reason")),
            ("forced", "yes" if model.get("forced") else None),
            ("sha256", model["sha256"]),
            ("created", when(model["created_at"])),
        ]
    )  # fmt: skip


@models_app.command("show")
def models_show(model_id: Annotated[int, typer.Argument(help="model id", min=0)]) -> None:
    """One model version: status, classes, figures and what they were measured on, gate, promotion."""

    def act():
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

    def act():
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


def download(api: Session, path: str, target: Path, *, what: str) -> str:
    """Stream a file to `target` with a progress bar; returns its sha256 (checked against the
    server's X-Checksum-Sha256)."""
    digest = hashlib.sha256()
    partial = target.with_name(target.name + ".partial")
    with api.client.stream("GET", path) as response:
        if response.is_error:
            response.read()
            try:
                details = [d for d in response.json().get("detail", []) if isinstance(d, dict)]
            except (ValueError, AttributeError):
                details = []
            raise ApiFailure(response.status_code, details, response.text)
        total = int(response.headers.get("content-length", 0)) or None
        columns = [TextColumn(what), BarColumn(), DownloadColumn(), TransferSpeedColumn()]
        with Progress(*columns, console=err, transient=not err.is_terminal) as progress, open(partial, "wb") as handle:
            task = progress.add_task(what, total=total)
            for chunk in response.iter_bytes(1 << 16):
                handle.write(chunk)
                digest.update(chunk)
                progress.advance(task, len(chunk))
        expected = response.headers.get("x-checksum-sha256")
    if expected and expected != digest.hexdigest():
        partial.unlink(missing_ok=True)
        fail(f"the download's sha256 {digest.hexdigest()} differs from the server's {expected}")
    partial.replace(target)
    return digest.hexdigest()


@models_app.command("download")
def models_download(
    model_id: Annotated[int, typer.Argument(help="model id", min=0)],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file to write", show_default="FAMILY-vVERSION.safetensors")
    ] = None,
) -> None:
    """Download a version's safetensors weights (sha256 checked)."""

    def act():
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

    def act():
        api = session()
        model = api.json("POST", f"/models/{model_id}/promote", json={"force": force, "reason": reason})
        if api.as_json:
            return emit_json(model)
        out.print(
            f"model {model['id']} ({model['family']} v{model['version']}) is in production: {model['promotion_reason']}"
        )

    run(act, {**MODEL_ID, ("body", "reason"): "--reason", ("body", "force"): "--force"})


@models_app.command("lineage")
def models_lineage(model_id: Annotated[int, typer.Argument(help="model id", min=0)]) -> None:
    """A version and its predecessors, newest first, with accuracy, NFR and class counts."""

    def act():
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


# Phases without epochs: their rows may still hold the last epoch of the phase before.
NO_EPOCH_PHASES = {"starting", "evaluating", "done", "cancelled"}


def epoch_of(job: dict) -> str:
    """'epoch 2/4' while a training phase runs, '' otherwise."""
    if job.get("epoch") is None or (job.get("phase") or job["status"]) in NO_EPOCH_PHASES:
        return ""
    return f"epoch {job['epoch']}/{job['epochs']}"


def job_line(job: dict) -> str:
    """One line of a job's state: phase (status only when it says more), epoch, progress
    (only once the phase has reported some)."""
    parts = [job["status"]]
    if job.get("phase") and job["phase"] != job["status"]:
        parts.append(job["phase"])
    if epoch_of(job):
        parts.append(epoch_of(job))
    if job["status"] in ("running", "evaluating") and (job["progress"] or 0) > 0:
        parts.append(f"{100 * job['progress']:.0f}% of the phase")
    return " · ".join(parts)


class JobProgress:
    """Rich progress of a job: one bar per phase (reference, training, evaluating, ...), each with
    its epoch; a phase with no progress reported yet pulses instead of sitting at 0%."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.current: str | None = None

    def update(self, job: dict) -> None:
        phase = job.get("phase") or job["status"]
        if job["status"] == "queued":
            phase = "queued"
        if phase != self.current and self.current is not None:
            previous = self.tasks[self.current]
            if job["status"] not in ("failed", "cancelled") or phase != self.current:
                self.progress.update(previous, completed=1, total=1, detail="done")
        self.current = phase
        if phase in ("done", "cancelled") or job["status"] in TERMINAL_JOB_STATUSES:
            return
        if phase not in self.tasks:
            label = "waiting for a worker" if phase == "queued" else phase
            self.tasks[phase] = self.progress.add_task(label, total=None, detail="")
        task = self.tasks[phase]
        fraction = job.get("progress") or 0.0
        epoch = epoch_of(job)
        if phase in ("queued", "evaluating") or fraction <= 0:
            self.progress.update(task, total=None, detail=epoch or ("" if phase == "queued" else "started"))
        else:
            self.progress.update(task, total=1.0, completed=fraction, detail=epoch)


def watch_job(api: Session, job_id: int, *, interval: float) -> dict:
    """Follow a job to its end: Rich progress on a terminal, one line per change otherwise."""
    if not out.is_terminal:
        shown = None
        while True:
            job = api.json("GET", f"/updates/{job_id}")
            line = job_line(job)
            if line != shown:
                out.print(f"job {job_id}: {line}")
                shown = line
            if job["status"] in TERMINAL_JOB_STATUSES:
                return job
            time.sleep(interval)
    columns = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description:<20}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=out) as progress:
        view = JobProgress(progress)
        while True:
            job = api.json("GET", f"/updates/{job_id}")
            view.update(job)
            if job["status"] in TERMINAL_JOB_STATUSES:
                return job
            time.sleep(interval)


def parse_sweep(pairs: list[str]) -> dict[str, list]:
    """`bias=0,1,2,4` -> {"bias": [0, 1, 2, 4]}; repeat the option for a grid over several fields."""
    grid = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise typer.BadParameter(f"expects KEY=V1,V2,..., got {pair!r}", param_hint="--sweep")
        try:
            grid[key.strip()] = [json.loads(value) for value in raw.split(",")]
        except json.JSONDecodeError:
            raise typer.BadParameter(f"values must be numbers, got {raw!r}", param_hint="--sweep") from None
    return grid


def print_candidates(job: dict) -> None:
    """A sweeping job's candidates on the validation split beside the independent retrain, and the
    rule's choice in words (nothing for a job without a sweep)."""
    candidates = job.get("candidates") or []
    if not candidates:
        if job.get("sweep") and job["status"] not in TERMINAL_JOB_STATUSES:
            out.print(f"sweep {json.dumps(job['sweep'])}: the candidates are listed once the job has succeeded")
        return
    choice = job.get("choice") or {}
    qualified = set(choice.get("qualified") or [])
    grid = table(
        "candidate",
        "accuracy (val)",
        "NFR old classes (val)",
        "within bound",
        "chosen",
        title=f"candidates of job {job['id']} (validation split)",
    )
    for candidate in candidates:
        figures = candidate["validation"]
        grid.add_row(
            candidate["label"],
            percent(figures.get("accuracy")),
            percent(figures.get("nfr_old_classes")),
            "yes" if candidate["index"] in qualified else "no",
            "* registered" if candidate["chosen"] else "",
            style="bold" if candidate["chosen"] else None,
        )
    reference = choice.get("reference_validation") or {}
    if reference:
        grid.add_row(
            "independent retrain",
            percent(reference.get("accuracy")),
            percent(reference.get("nfr_old_classes")),
            "-",
            "",
        )
    out.print(grid)
    if choice:
        out.print(f"rule: {choice.get('rule')}", highlight=False)
        out.print(f"choice: {choice.get('explanation')}", highlight=False)


def finish_job(api: Session, job: dict) -> None:
    """Report a finished job and exit with its code: 0 registered (and not rejected), 1 failed,
    3 gate-rejected, 4 cancelled."""
    print_candidates(job)
    if job["status"] == "failed":
        fail(f"job {job['id']} failed: {job['error']}")
    if job["status"] == "cancelled":
        fail(f"job {job['id']} was cancelled; nothing was registered", ExitCode.CANCELLED)
    model = api.json("GET", f"/models/{job['result_model_id']}")
    figures = model.get("figures") or {}
    summary = f"model {model['id']} ({model['family']} v{model['version']})"
    if figures.get("accuracy") is not None and figures.get("measured_as") == "model":
        summary += f": accuracy {percent(figures['accuracy'])}, NFR old classes {percent(figures['nfr_old_classes'])}"
    verdict = model.get("gate_verdict") or {}
    if model["status"] == "rejected":
        fail(
            f"job {job['id']} trained {summary}, but the gate rejected it: {'; '.join(verdict.get('reasons', []))}",
            ExitCode.GATE_REJECTED,
        )
    out.print(f"registered {summary}, status {model['status']}")


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

    def act():
        api = session()
        chosen = method.value if method else ("mpt-kl" if base is not None else "independent")
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

    def act():
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

    def act():
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

    def act():
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

    def act():
        api = session()
        finish_job(api, watch_job(api, job_id, interval=interval))

    run(act, JOB_ID)


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
    def __enter__(self):
        return self

    def __exit__(self, *_):
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


@app.command("flips")
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

    def act():
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


@app.command("compare")
def compare(
    model_a: Annotated[int, typer.Argument(metavar="A", help="the model whose flips are counted", min=0)],
    model_b: Annotated[int, typer.Argument(metavar="B", help="the baseline it is compared against", min=0)],
    interval: Annotated[float, typer.Option(help="seconds between polls")] = 1.0,
) -> None:
    """The flip report of any version A against any version B, computed on demand (waits for it).

    Both are evaluated on the evaluation split of the newer one's update job; the report is
    stored, so asking again answers at once.
    """

    def act():
        api = session()
        comparison = api.json("POST", "/comparisons", json={"model_id": model_a, "baseline_model_id": model_b})
        wait_for_comparison(api, comparison, interval=interval)
        report = fetch_report(api, model_a, model_b, params={"page_size": 1}, interval=interval)
        if api.as_json:
            return emit_json(report)
        print_report(report, per_class=True)
        return None

    run(act, FLIP_NAMES)


def main(argv: list[str] | None = None) -> int:
    """Run one command in this process and return its exit code (scripts and tests);
    `python -m api.cli` runs the same app as a program."""
    try:
        result = app(args=argv, prog_name="python -m api.cli", standalone_mode=False)
    except typer.Abort:
        err.print("aborted")
        return int(ExitCode.FAILED)
    except typer.TyperException as error:  # click's usage errors (exit 2)
        error.show()  # type: ignore[attr-defined]
        return int(getattr(error, "exit_code", ExitCode.USAGE))
    finally:
        client = STATE.pop("session", None)
        if client is not None:
            client.client.close()
    return result if isinstance(result, int) else int(ExitCode.OK)


if __name__ == "__main__":
    app(prog_name="python -m api.cli")
