"""The API's gate verdict and the stored one (contracts.jobs.GateVerdict) have the same fields."""

from __future__ import annotations

from typing import get_type_hints

from api.model_versions.schemas import GateVerdict as GateVerdictOut
from contracts.jobs import GateVerdict


def test_the_api_serves_every_field_of_the_stored_verdict():
    assert set(GateVerdictOut.model_fields) == set(get_type_hints(GateVerdict))
