"""Downloads of weights (`models download`, `updates reference`): streamed to a file with a
progress bar, the sha256 checked against the server's."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from api.cli.client import ApiFailure, Session, fail
from api.cli.output import err


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
