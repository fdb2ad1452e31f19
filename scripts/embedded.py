"""The embedded default: one command runs flipguard on this machine with no servers.

    .venv/bin/python scripts/embedded.py [--home var/embedded] [--port 8000]

SQLite file, kombu's filesystem transport and a local artifact folder under --home; the API
and one worker run until Ctrl-C. A FLIPGUARD_* setting set in the environment wins over the
embedded default (for example FLIPGUARD_DATA_ROOTS, the folders data sets and model files may
be registered from: a JSON list, or folders separated by ':').
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.stack import embedded_env, running_stack


def with_environment(env: dict[str, str], environ: Mapping[str, str] = os.environ) -> tuple[dict[str, str], list[str]]:
    """The embedded settings with every FLIPGUARD_* variable of the environment taking precedence;
    returns them and the names taken from the environment. FLIPGUARD_DATA_ROOTS may also be
    folders separated by os.pathsep (turned into the JSON list the settings read)."""
    merged = dict(env)
    taken = sorted(name for name in environ if name.startswith("FLIPGUARD_") and name in env)
    for name in taken:
        merged[name] = environ[name]
    roots = merged.get("FLIPGUARD_DATA_ROOTS", "")
    if roots and not roots.lstrip().startswith("["):
        merged["FLIPGUARD_DATA_ROOTS"] = json.dumps([part for part in roots.split(os.pathsep) if part])
    return merged, taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="var/embedded", type=Path)
    parser.add_argument("--port", default=8000, type=int)
    args = parser.parse_args()
    env, taken = with_environment(embedded_env(args.home))
    with running_stack(env, log_dir=args.home / "logs", port=args.port) as stack:
        print(f"flipguard is running at {stack.url} (dashboard {stack.url}/dashboard); Ctrl-C stops it")
        if taken:
            print(f"from the environment: {', '.join(taken)}")
        roots = ", ".join(json.loads(env["FLIPGUARD_DATA_ROOTS"]))
        print(f"data roots (set FLIPGUARD_DATA_ROOTS to change them): {roots}")
        print(f"admin API token (shown once; for the CLI: export FLIPGUARD_TOKEN=...): {stack.token}")
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
    print("stopped")


if __name__ == "__main__":
    main()
