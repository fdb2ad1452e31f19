"""What one `mpt reproduce` study is: the paper's methods, the presets and the resolved Study."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from contracts.methods import UpdateMethod
from contracts.selection import Selection
from mpt.data import DataBundle
from mpt.recipe import MethodParams, Recipe
from mpt.reference import FileReferenceStore

PAPER_METHODS = (
    UpdateMethod.INDEPENDENT,
    UpdateMethod.PCT_NAIVE,
    UpdateMethod.PCT_KL,
    UpdateMethod.PCT_LM,
    UpdateMethod.ELODI,
    UpdateMethod.MPT_KL,
    UpdateMethod.MPT_LM,
    UpdateMethod.MPT_NODISTILL,
    UpdateMethod.MPT_KL_NOBIAS,
    UpdateMethod.MPT_LM_NOBIAS,
)
SWEEP_BIASES = (0.0, 1.0, 2.0, 4.0, 8.0)
# The service's default sweep (contracts.selection.DEFAULT_SWEEP), for --policy-sweep.
POLICY_BIASES = (0.0, 1.0, 2.0, 4.0)
CHAIN_METHODS = (UpdateMethod.INDEPENDENT, UpdateMethod.MPT_KL)


class Preset(TypedDict):
    """A named study's defaults: class ranges as `parse_classes` reads them, recipe and params overrides."""

    arch: str
    old_classes: str
    new_classes: str
    chain: str  # the --chain steps, ':'-separated
    recipe: dict[str, object]
    params: dict[str, object]


# Preset values fill the options left unset on the command line.
PRESETS: dict[str, Preset] = {
    # docs/METHOD.md, "The paper's recipe": CIFAR-100, resnet18, 0-49 -> 0-99, the Recipe defaults.
    "paper": {
        "arch": "resnet18",
        "old_classes": "0-49",
        "new_classes": "50-99",
        "chain": "0-32:0-65:0-99",
        "recipe": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]},
        "params": {},
    },
    # Sized for a shared 2-core CPU: the Fashion-MNIST study with sweep and chain took 54
    # minutes with OMP_NUM_THREADS=1, the methods alone about 35 (docs/REPRODUCTION.md). ELODI's distillation starts
    # after the first epoch, the nearest to the paper's 5 of 100 epochs.
    "quick": {
        "arch": "small_cnn",
        "old_classes": "0-4",
        "new_classes": "5-9",
        "chain": "0-3:0-6:0-9",
        "recipe": {"epochs": 5, "train_samples_per_class": 500, "eval_samples_per_class": 500},
        "params": {"elodi_start_epoch": 1},
    },
}


@dataclass
class Study:
    """Everything one `reproduce` invocation does, resolved from the options and the preset."""

    bundle: DataBundle
    data: str
    preset: str
    arch: str
    old_classes: list[str]
    classes: list[str]
    methods: list[str]
    seeds: list[int]
    recipe: Recipe
    params: MethodParams
    out_dir: Path
    device: str = "auto"
    sweep_biases: list[float] = field(default_factory=list)
    # --policy-sweep: mpt-kl at these b trained together (mpt.sweep.run_sweep), every one
    # reported on the evaluation split beside the candidate `selection` chose on validation.
    policy_biases: list[float] = field(default_factory=list)
    selection: Selection | None = None
    chain: list[list[str]] = field(default_factory=list)
    chain_methods: list[str] = field(default_factory=list)
    quiet: bool = False
    checkpoint_dir: Path | None = None
    options: dict = field(default_factory=dict)  # the command line's values, for the record

    @property
    def store(self) -> FileReferenceStore:
        return FileReferenceStore(self.out_dir / "models")
