"""Option parsing shared by the engine's commands: class lists, KEY=VALUE pairs and the recipe."""

from __future__ import annotations

import argparse
import json

from mpt.data import DataError
from mpt.recipe import Recipe


def parse_classes(text: str | None, available: list[str]) -> list[str] | None:
    """'0-4', '0,2,7' (indices into the data set's classes) or 'Coat,Bag' (names)."""
    if not text:
        return None
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    if all(t.replace("-", "").isdigit() for t in tokens):
        indices: list[int] = []
        for token in tokens:
            low, sep, high = token.partition("-")
            if not low or (sep and not high) or int(high or low) < int(low):
                raise DataError(f"bad class range {token!r} in {text!r}; use e.g. 0-4 or 0,2,7")
            indices.extend(range(int(low), int(high or low) + 1))
        bad = [i for i in indices if i >= len(available)]
        if bad:
            raise DataError(f"class indices {bad} are out of range for {len(available)} classes")
        return [available[i] for i in indices]
    return tokens


def parse_assignments(pairs: list[str]) -> dict:
    """['bias=2', 'mean=[0.5]'] -> {'bias': 2, 'mean': [0.5]}: JSON values, else the raw text."""
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {pair!r}")
        try:
            values[key.replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.replace("-", "_")] = raw
    return values


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The Recipe of `--set KEY=VALUE` pairs, overridden by the explicit options."""
    values = parse_assignments(args.set)
    for name in (
        "epochs",
        "batch_size",
        "lr",
        "train_samples_per_class",
        "eval_samples_per_class",
        "image_size",
        "data_path",
    ):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return Recipe.from_dict(values)
