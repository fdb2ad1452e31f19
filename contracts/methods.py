"""The training methods of docs/METHOD.md, by the names that jobs, the API and both CLIs use."""

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


# Every field of mpt.recipe.MethodParams, in its order (tests/engine/test_losses.py checks it).
METHOD_PARAM_FIELDS = (
    "bias",
    "alpha",
    "beta",
    "tau",
    "lm_weight",
    "elodi_start_epoch",
    "elodi_old_weight",
    "elodi_ensemble_weight",
    "elodi_ensemble_size",
    "elodi_topk",
)

_FOCAL = frozenset({"alpha", "beta"})
_ELODI = frozenset({"elodi_start_epoch", "elodi_old_weight", "elodi_ensemble_weight", "elodi_ensemble_size"})

# The MethodParams fields each method reads (its loss, or for ELODI also the size of the
# ensemble it trains): a sweep over any other field would train identical students.
# tests/engine/test_losses.py checks it against the losses.
PARAMS_USED: dict[UpdateMethod, frozenset[str]] = {
    UpdateMethod.INDEPENDENT: frozenset(),
    UpdateMethod.PCT_NAIVE: frozenset(),
    UpdateMethod.PCT_KL: _FOCAL | {"tau"},
    UpdateMethod.PCT_LM: _FOCAL | {"lm_weight"},
    UpdateMethod.ELODI: _ELODI,
    UpdateMethod.ELODI_TOPK: _ELODI | {"elodi_topk"},
    UpdateMethod.MPT_KL: _FOCAL | {"bias", "tau"},
    UpdateMethod.MPT_LM: _FOCAL | {"bias", "lm_weight"},
    UpdateMethod.MPT_NODISTILL: frozenset({"bias"}),
    UpdateMethod.MPT_KL_NOBIAS: _FOCAL | {"tau"},
    UpdateMethod.MPT_LM_NOBIAS: _FOCAL | {"lm_weight"},
}
