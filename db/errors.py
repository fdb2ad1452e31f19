"""Domain errors raised by service functions; the API maps each to one HTTP status.

Every error carries `loc`, the path of the offending input (for example
`("body", "dataset_id")`), so that a client learns which field to fix.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: a message, the input it concerns, and a machine-readable type."""

    error_type = "service_error"

    def __init__(self, message: str, *, loc: tuple[str | int, ...] = ()):
        super().__init__(message)
        self.message = message
        self.loc = loc


class NotFound(ServiceError):
    error_type = "not_found"


class Conflict(ServiceError):
    """The request is well-formed but clashes with the current state."""

    error_type = "conflict"


class InvalidInput(ServiceError):
    """The request names things that do not fit together (checked against stored data)."""

    error_type = "value_error"


class JobNotOwned(Conflict):
    """The worker no longer holds the job (it was taken over or finished elsewhere)."""

    error_type = "job_not_owned"
