"""Consoles, tables and number formats shared by the commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table


def make_console(stream: TextIO | None = None) -> Console:
    """A console that does not squeeze tables when writing to a file or a pipe."""
    console = Console(file=stream, soft_wrap=False, highlight=False)
    if not console.is_terminal:
        console = Console(file=stream, soft_wrap=False, highlight=False, width=200)
    return console


out = make_console()
err = make_console(sys.stderr)


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
