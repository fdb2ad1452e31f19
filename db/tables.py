"""Every table of the schema, imported together so that `Base.metadata` is complete."""

from db.base import Base
from db.comparisons.models import Comparison
from db.datasets.models import Dataset
from db.flips.models import FlipReport, FlipSample
from db.model_versions.models import ModelVersion
from db.references.models import ReferenceModel
from db.tokens.models import ApiToken
from db.updates.models import JobEvent, UpdateCandidate, UpdateJob
from db.workers.models import WorkerHeartbeat

metadata = Base.metadata

__all__ = [
    "ApiToken",
    "Comparison",
    "Dataset",
    "FlipReport",
    "FlipSample",
    "JobEvent",
    "ModelVersion",
    "ReferenceModel",
    "UpdateCandidate",
    "UpdateJob",
    "WorkerHeartbeat",
    "metadata",
]
