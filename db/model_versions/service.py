"""Model versions: registration, listing, lineage and (gated) promotion."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.base import utcnow
from db.errors import Conflict, InvalidInput, NotFound
from db.model_versions.gate import promotion_blocker
from db.model_versions.models import ModelStatus, ModelVersion
from db.pagination import Page, paginate
from db.tokens.service import AUTOMATIC_ACTOR


def get_model(session: Session, *, model_id: int, loc: tuple = ("path", "model_id")) -> ModelVersion:
    """The model version with this id; NotFound naming `loc` otherwise."""
    model = session.get(ModelVersion, model_id)
    if model is None:
        raise NotFound(f"model {model_id} does not exist", loc=loc)
    return model


def list_models(
    session: Session,
    *,
    family: str | None = None,
    status: ModelStatus | None = None,
    page: int = 1,
    page_size: int = 50,
) -> Page[ModelVersion]:
    """Model versions, newest first, optionally of one family and status."""
    statement = select(ModelVersion).order_by(ModelVersion.id.desc())
    if family is not None:
        statement = statement.where(ModelVersion.family == family)
    if status is not None:
        statement = statement.where(ModelVersion.status == status)
    return paginate(session, statement, page=page, page_size=page_size)


def get_production(session: Session, *, family: str) -> ModelVersion | None:
    """The production version of a family, if any."""
    return session.scalar(
        select(ModelVersion).where(ModelVersion.family == family, ModelVersion.status == ModelStatus.PRODUCTION)
    )


def add_version(
    session: Session,
    *,
    family: str,
    parent_id: int | None,
    architecture: str,
    classes: list[str],
    artifact_uri: str,
    sha256: str,
    status: ModelStatus,
    job_id: int | None = None,
    recipe: dict | None = None,
    method: str | None = None,
) -> ModelVersion:
    """Add the family's next version number (flushes; the caller commits).

    Two writers racing for one family collide on the (family, version) unique constraint,
    so a version number is never handed out twice.
    """
    latest = session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.family == family))
    model = ModelVersion(
        family=family,
        version=(latest or 0) + 1,
        parent_id=parent_id,
        architecture=architecture,
        classes=list(classes),
        artifact_uri=artifact_uri,
        sha256=sha256,
        status=status,
        job_id=job_id,
        recipe=recipe,
        method=method,
    )
    if status == ModelStatus.PRODUCTION:
        model.promoted_at = utcnow()
        model.promotion_reason = "first version of the family"
        model.promoted_by = AUTOMATIC_ACTOR
    session.add(model)
    session.flush()
    return model


def register_uploaded_model(
    session: Session,
    *,
    family: str,
    architecture: str,
    classes: list[str],
    artifact_uri: str,
    sha256: str,
) -> ModelVersion:
    """Register a deployed model: a new family starts in production, later uploads are candidates."""
    production = get_production(session, family=family)
    latest = session.scalar(
        select(ModelVersion).where(ModelVersion.family == family).order_by(ModelVersion.version.desc()).limit(1)
    )
    predecessor = production or latest
    model = add_version(
        session,
        family=family,
        parent_id=predecessor.id if predecessor else None,
        architecture=architecture,
        classes=classes,
        artifact_uri=artifact_uri,
        sha256=sha256,
        status=ModelStatus.CANDIDATE if latest else ModelStatus.PRODUCTION,
    )
    session.commit()
    return model


def set_production(session: Session, *, model: ModelVersion, reason: str, forced: bool, promoted_by: str) -> None:
    """Make `model` its family's production version, archiving the previous one (no commit)."""
    previous = get_production(session, family=model.family)
    if previous is not None and previous.id != model.id:
        previous.status = ModelStatus.ARCHIVED
        # The partial unique index allows one production row: archive before promoting.
        session.flush()
    model.status = ModelStatus.PRODUCTION
    model.promoted_at = utcnow()
    model.promotion_reason = reason
    model.forced = forced
    model.promoted_by = promoted_by
    session.flush()


def promote_model(
    session: Session, *, model_id: int, promoted_by: str, force: bool = False, reason: str | None = None
) -> ModelVersion:
    """Promote a candidate whose gate passed; `force` overrides the gate and needs a reason."""
    model = get_model(session, model_id=model_id)
    if model.status == ModelStatus.PRODUCTION:
        raise Conflict(f"model {model_id} is already in production", loc=("path", "model_id"))
    reason = (reason or "").strip() or None
    if force:
        if reason is None:
            raise InvalidInput("a forced promotion needs a reason", loc=("body", "reason"))
    else:
        blocker = promotion_blocker(model)
        if blocker is not None:
            raise Conflict(f"{blocker}; promote it with force and a reason", loc=("path", "model_id"))
    if reason is None:
        reason = "gate passed" if model.job_id is not None else "uploaded model promoted"
    set_production(session, model=model, reason=reason, forced=force, promoted_by=promoted_by)
    session.commit()
    return model


def lineage(session: Session, *, model_id: int) -> list[ModelVersion]:
    """The model and its predecessors, newest first, following parent links."""
    chain = [get_model(session, model_id=model_id)]
    seen = {chain[0].id}
    while chain[-1].parent_id is not None and chain[-1].parent_id not in seen:
        parent = get_model(session, model_id=chain[-1].parent_id)
        seen.add(parent.id)
        chain.append(parent)
    return chain


def list_families(session: Session) -> list[dict]:
    """Every family with its version count, latest version and production version (if any),
    most recently updated first: two aggregate queries, whatever the number of versions."""
    rows = session.execute(
        select(
            ModelVersion.family,
            func.count(ModelVersion.id),
            func.max(ModelVersion.version),
            func.max(ModelVersion.created_at),
        )
        .group_by(ModelVersion.family)
        .order_by(func.max(ModelVersion.created_at).desc(), ModelVersion.family)
    ).all()
    production = {
        model.family: model
        for model in session.scalars(select(ModelVersion).where(ModelVersion.status == ModelStatus.PRODUCTION))
    }
    return [
        {
            "family": family,
            "versions": versions,
            "latest_version": latest_version,
            "updated_at": updated_at,
            "production": production.get(family),
        }
        for family, versions, latest_version, updated_at in rows
    ]
