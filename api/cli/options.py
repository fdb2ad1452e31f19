"""Choices and option parsers shared by the commands (names from contracts/)."""

from __future__ import annotations

import enum
import json

import typer

from contracts.data_formats import DatasetFormat
from contracts.methods import UpdateMethod
from contracts.model_file import HEAD_WEIGHT_KEYS

# Choices shown by --help, from the names every layer shares (contracts/).
Method = enum.Enum("Method", {member.name: member.value for member in UpdateMethod}, type=str)  # type: ignore[misc]
Architecture = enum.Enum("Architecture", {name.upper(): name for name in HEAD_WEIGHT_KEYS}, type=str)  # type: ignore[misc]
Format = enum.Enum("Format", {member.name: member.value for member in DatasetFormat}, type=str)  # type: ignore[misc]


class ModelStatusChoice(enum.StrEnum):
    candidate = "candidate"
    production = "production"
    rejected = "rejected"
    archived = "archived"


class JobStatusChoice(enum.StrEnum):
    queued = "queued"
    running = "running"
    evaluating = "evaluating"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class DatasetStatusChoice(enum.StrEnum):
    pending = "pending"
    ready = "ready"
    failed = "failed"


class FlipKindChoice(enum.StrEnum):
    negative = "negative"
    positive = "positive"


def split_classes(text: str | None) -> list[str] | None:
    """`"shirt, bag"` -> ["shirt", "bag"]: names are comma-separated, spaces around them dropped."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise typer.BadParameter("an empty class name (two commas, or a comma at an end)", param_hint="--classes")
    return names


def parse_assignments(pairs: list[str], *, flag: str) -> dict:
    """`key=value` pairs with JSON values (`bias=2`, `mean=[0.5]`); bare strings stay strings."""
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expects KEY=VALUE, got {pair!r}", param_hint=flag)
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values
