"""Flip kinds and the intrusion rule of METHOD.md, shared by the engine (`mpt.flips`) and the
service (`db.flips`)."""

from __future__ import annotations

import enum
from typing import Any, TypeVar

# A bool, or a bool tensor when the engine applies a rule to a whole split at once.
_Flags = TypeVar("_Flags")


class FlipKind(enum.StrEnum):
    NEGATIVE = "negative"  # the old model was right, the new one is wrong
    POSITIVE = "positive"  # the old model was wrong, the new one is right


def is_intrusion(*, negative: _Flags, new_prediction: Any, k_old: int) -> _Flags:
    """Whether a flip is a negative flip into a class the old model never had (elementwise on tensors)."""
    # METHOD.md's layout: the old classes keep indices 0..k_old-1, the new ones come after.
    return negative & (new_prediction >= k_old)
