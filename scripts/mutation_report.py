"""Summarise the last `make mutation` run: mutmut's verdict on every mutant of the core modules
the Makefile selects, counted per module, and the names of the ones that survived.

Usage: .venv/bin/python scripts/mutation_report.py PATTERN [PATTERN ...]  (the Makefile's MUTANTS)
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from collections import Counter, defaultdict


def verdicts(patterns: list[str]) -> dict[str, str]:
    """{mutant name: status} of the mutants matching `patterns`, from `mutmut results --all true`."""
    listing = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in listing.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
            found[name] = status
    return found


def main(patterns: list[str]) -> int:
    found = verdicts(patterns)
    if not found:
        print("no mutants found: run `make mutation` first", file=sys.stderr)
        return 1
    by_module: dict[str, Counter] = defaultdict(Counter)
    for name, status in found.items():
        module = re.sub(r"\.x[_ǁ].*$", "", name)
        by_module[module][status] += 1
    statuses = sorted({status for counts in by_module.values() for status in counts})
    print("| module | " + " | ".join(statuses) + " |")
    print("|---|" + "---|" * len(statuses))
    for module, counts in sorted(by_module.items()):
        print(f"| {module} | " + " | ".join(str(counts[s]) for s in statuses) + " |")
    total = Counter(found.values())
    print("| **all** | " + " | ".join(str(total[s]) for s in statuses) + " |")
    others = sorted(name for name, status in found.items() if status != "killed")
    print(f"\n{len(others)} not killed:")
    for name in others:
        print(f"  {name}: {found[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
