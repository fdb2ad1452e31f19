"""What the engine's commands print: per-epoch progress lines and tables of figures."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from mpt.reference import Progress
from mpt.train import Callbacks


def epoch_progress(label: str, quiet: bool) -> Progress:
    """Progress that prints each epoch's metrics to stderr under the current phase (`label` first)."""
    if quiet:
        return Progress()

    def on_epoch_end(epoch: int, metrics: dict) -> None:
        # A sweep's epoch carries {"epoch", "students": [metrics, ...]}: one line per student.
        for index, student in enumerate(metrics.get("students", [metrics])):
            shown = ", ".join(f"{k} {v:.4f}" for k, v in student.items() if k not in ("epoch", "lr"))
            who = f" student {index}" if "students" in metrics else ""
            print(f"  [{state['phase']}]{who} epoch {epoch + 1}: {shown}", file=sys.stderr, flush=True)

    state = {"phase": label}
    return Progress(on_phase=lambda phase: state.update(phase=phase), callbacks=Callbacks(on_epoch_end=on_epoch_end))


def format_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """One column per model, one row per headline figure."""
    names = list(rows)
    keys = list(next(iter(rows.values())))
    width = max(len(k) for k in keys)
    lines = [" " * width + "".join(f"  {n:>14}" for n in names)]
    for key in keys:
        cells = []
        for name in names:
            value = rows[name][key]
            cells.append(f"  {'-' if value is None else (f'{value:.4f}' if isinstance(value, float) else value):>14}")
        lines.append(f"{key:<{width}}" + "".join(cells))
    return "\n".join(lines)
