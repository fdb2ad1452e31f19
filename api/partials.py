"""Files being written into the artifact store: `<name>.partial` until they are complete, held
under an exclusive flock for as long as their writer lives.

An API process killed mid-upload leaves its `.partial` behind; the kernel drops its lock with
the process, so at start-up every `.partial` that nobody holds is an orphan and is removed (a
partial file another live API process is writing stays: it holds the lock).
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from db.settings import Settings

log = logging.getLogger(__name__)
PARTIAL_SUFFIX = ".partial"
# Folders of the artifact store that the API writes partial files into.
UPLOAD_FOLDERS = ("models",)


@contextmanager
def locked_partial(path: Path) -> Iterator[BinaryIO]:
    """Create `path` for writing under an exclusive lock (released when it is closed)."""
    with open(path, "wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield handle


def remove_orphaned_partials(settings: Settings) -> list[Path]:
    """Delete the `.partial` files of the artifact store that no live process holds; returns them."""
    removed = []
    for folder in UPLOAD_FOLDERS:
        for path in sorted(settings.artifact_path(folder).glob(f"*{PARTIAL_SUFFIX}")):
            try:
                with open(path, "rb") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    path.unlink()
            except BlockingIOError:
                continue  # a live upload
            except FileNotFoundError:
                continue  # finished or removed meanwhile
            removed.append(path)
    if removed:
        log.warning("removed %d partial upload(s) left by a killed API process", len(removed))
    return removed
