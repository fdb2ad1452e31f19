"""Every table of the schema, imported together so that `Base.metadata` is complete."""

from db.base import Base
from db.datasets.models import Dataset
from db.jobs.models import JobEvent, UpdateJob
from db.model_versions.models import ModelVersion
from db.references.models import ReferenceModel
from db.reports.models import FlipReport, FlipSample
from db.tokens.models import ApiToken

metadata = Base.metadata

__all__ = [
    "ApiToken",
    "Dataset",
    "FlipReport",
    "FlipSample",
    "JobEvent",
    "ModelVersion",
    "ReferenceModel",
    "UpdateJob",
    "metadata",
]
