"""The training methods of METHOD.md, by the names that jobs, the API and both CLIs use."""

from __future__ import annotations

import enum


class UpdateMethod(enum.StrEnum):
    """A training method; the engine's loss registry (`mpt.losses.METHODS`) has one entry per member."""

    INDEPENDENT = "independent"
    PCT_NAIVE = "pct-naive"
    PCT_KL = "pct-kl"
    PCT_LM = "pct-lm"
    ELODI = "elodi"
    ELODI_TOPK = "elodi-topk"
    MPT_KL = "mpt-kl"
    MPT_LM = "mpt-lm"
    MPT_NODISTILL = "mpt-nodistill"
    MPT_KL_NOBIAS = "mpt-kl-nobias"
    MPT_LM_NOBIAS = "mpt-lm-nobias"
