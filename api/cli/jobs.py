"""Update jobs as the terminal shows them: progress lines, watching, sweep candidates."""

from __future__ import annotations

import json
import time

import typer
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from api.cli.client import TERMINAL_JOB_STATUSES, ExitCode, Session, fail
from api.cli.output import out, percent, table

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
        phases_shown: set[str] = set()
        while True:
            job = api.json("GET", f"/updates/{job_id}")
            # A phase shorter than the poll interval left only its epoch events: named once each.
            for phase in dict.fromkeys(event["phase"] for event in job.get("events") or []):
                if phase not in phases_shown and phase != job.get("phase"):
                    out.print(f"job {job_id}: running · {phase}")
                    phases_shown.add(phase)
            phases_shown.add(job.get("phase") or job["status"])
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
