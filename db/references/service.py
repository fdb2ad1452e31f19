"""The reference-model cache: one independently trained model per cache key."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.references.models import ReferenceModel


def find_reference(session: Session, *, cache_key: str) -> ReferenceModel | None:
    """The cached reference model for this key, if one was trained before."""
    return session.scalar(select(ReferenceModel).where(ReferenceModel.cache_key == cache_key))


def add_reference(
    session: Session,
    *,
    cache_key: str,
    artifact_uri: str,
    sha256: str,
    architecture: str,
    classes: list[str],
) -> ReferenceModel:
    """Cache a trained reference; if another worker cached the same key first, return theirs."""
    reference = ReferenceModel(
        cache_key=cache_key,
        artifact_uri=artifact_uri,
        sha256=sha256,
        architecture=architecture,
        classes=list(classes),
    )
    session.add(reference)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = find_reference(session, cache_key=cache_key)
        if existing is None:  # the violation was not the cache key: let it surface
            raise
        return existing
    return reference
