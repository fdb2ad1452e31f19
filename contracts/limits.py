"""Bounds on lists that every layer checks the same way (the API's schemas and model-file
checks, the engine's data loaders). Limits an operator may change are settings (db/settings.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

# At most this many classes in a request, a model file or a data set.
MAX_CLASSES = 10_000
# A class name is at most this many characters.
MAX_CLASS_NAME_CHARS = 200


def duplicates(names: Iterable[str]) -> list[str]:
    """The names that occur more than once, sorted (linear time: one Counter pass)."""
    return sorted(name for name, count in Counter(names).items() if count > 1)
