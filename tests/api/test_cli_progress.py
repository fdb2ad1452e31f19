"""The CLI's terminal progress of a job: one bar per phase with its epoch, a pulsing bar while
a phase has reported no progress, finished phases at 100%."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from api.cli.jobs import JobProgress, job_line, watch_job
from api.cli.options import split_classes


def job(status: str, phase: str | None, progress: float = 0.0, epoch: int | None = None, epochs: int = 1) -> dict:
    return {"status": status, "phase": phase, "progress": progress, "epoch": epoch, "epochs": epochs}


def test_each_phase_has_its_bar_and_epoch():
    progress = Progress(console=Console(file=io.StringIO(), force_terminal=True))
    view = JobProgress(progress)
    view.update(job("queued", None))
    view.update(job("running", "reference"))
    reference = progress.tasks[view.tasks["reference"]]
    assert reference.total is None, "no progress reported yet: a pulsing bar, not 0%"
    view.update(job("running", "reference", 0.5, epoch=1, epochs=2))
    assert reference.total == 1.0 and reference.completed == 0.5 and reference.fields["detail"] == "epoch 1/2"
    view.update(job("running", "training"))
    assert reference.completed == reference.total == 1, "a phase that ended is complete"
    assert progress.tasks[view.tasks["queued"]].finished
    view.update(job("evaluating", "evaluating"))
    evaluating = progress.tasks[view.tasks["evaluating"]]
    assert evaluating.description == "evaluating" and evaluating.total is None


def test_job_line_says_the_phase_once():
    assert job_line(job("evaluating", "evaluating", epoch=2, epochs=2)) == "evaluating"
    assert job_line(job("running", "reference", epoch=1)) == "running · reference · epoch 1/1"
    assert (
        job_line(job("running", "training", 0.5, epoch=2, epochs=4))
        == "running · training · epoch 2/4 · 50% of the phase"
    )
    assert job_line(job("succeeded", "done", 1.0, epoch=1)) == "succeeded · done"


def test_class_names_are_stripped():
    assert split_classes("Shirt, Bag ,Coat") == ["Shirt", "Bag", "Coat"]


def test_a_phase_shorter_than_the_poll_interval_is_still_named(monkeypatch, capsys):
    # Two polls: the reference epoch, then the finished job; the training phase ran in between.
    polls = iter(
        [
            job("running", "reference", 0.5, epoch=1) | {"events": []},
            job("evaluating", "evaluating")
            | {"events": [{"phase": "reference", "epoch": 1}, {"phase": "training", "epoch": 1}]},
            job("succeeded", "done", 1.0)
            | {"events": [{"phase": "reference", "epoch": 1}, {"phase": "training", "epoch": 1}]},
        ]
    )

    class Api:
        def json(self, method: str, path: str) -> dict:
            return next(polls)

    monkeypatch.setattr("api.cli.jobs.time.sleep", lambda seconds: None)
    watch_job(Api(), 7, interval=0.5)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "job 7: running · reference · epoch 1/1 · 50% of the phase",
        "job 7: running · training",
        "job 7: evaluating",
        "job 7: succeeded · done",
    ]
