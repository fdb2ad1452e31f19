"""The embedded default: one command runs flipguard on this machine with no servers.

    .venv/bin/python scripts/embedded.py [--home var/embedded] [--port 8000]

SQLite file, kombu's filesystem transport and a local artifact folder under --home; the API
and one worker run until Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.stack import embedded_env, running_stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="var/embedded", type=Path)
    parser.add_argument("--port", default=8000, type=int)
    args = parser.parse_args()
    with running_stack(embedded_env(args.home), log_dir=args.home / "logs", port=args.port) as stack:
        print(f"flipguard is running at {stack.url} (dashboard {stack.url}/dashboard); Ctrl-C stops it")
        print(f"admin API token (shown once; for the CLI: export FLIPGUARD_TOKEN=...): {stack.token}")
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
    print("stopped")


if __name__ == "__main__":
    main()
