"""Model registration, promotion rules, lineage, the reference cache, data set states."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from db_helpers import ready_dataset, uploaded_model

from db.datasets.models import DatasetFormat, DatasetStatus
from db.datasets.service import create_dataset, list_datasets, mark_dataset_failed
from db.errors import Conflict, InvalidInput
from db.model_versions.models import ModelStatus
from db.model_versions.service import get_model, lineage, list_models, promote_model
from db.references.service import add_reference, find_reference
from db.tokens.service import actor, create_token

RELEASE_BOT = "token 3 'release-bot'"


def test_upload_new_family_is_production_then_candidates(session):
    first = uploaded_model(session)
    second = uploaded_model(session)
    assert (first.version, first.status) == (1, ModelStatus.PRODUCTION)
    assert first.promoted_at.tzinfo is not None
    assert first.promoted_by == "flipguard (automatic)"
    assert second.promoted_by is None
    assert (second.version, second.status, second.parent_id) == (2, ModelStatus.CANDIDATE, first.id)
    assert [m.id for m in lineage(session, model_id=second.id)] == [second.id, first.id]
    assert list_models(session, family="shoes", status=ModelStatus.CANDIDATE).total == 1


def test_promotion_archives_previous_and_forced_needs_reason(session):
    first = uploaded_model(session)
    second = uploaded_model(session)
    promoted = promote_model(session, model_id=second.id, promoted_by=RELEASE_BOT)
    assert promoted.status == ModelStatus.PRODUCTION and promoted.forced is False
    assert promoted.promoted_by == RELEASE_BOT
    assert get_model(session, model_id=first.id).status == ModelStatus.ARCHIVED
    with pytest.raises(Conflict):
        promote_model(session, model_id=first.id, promoted_by=RELEASE_BOT)  # archived: only a forced promotion
    with pytest.raises(InvalidInput) as error:
        promote_model(session, model_id=first.id, promoted_by=RELEASE_BOT, force=True, reason="  ")
    assert error.value.loc == ("body", "reason")
    rollback = promote_model(
        session, model_id=first.id, promoted_by="token 7 'on-call'", force=True, reason="v2 broke checkout"
    )
    assert (rollback.forced, rollback.promotion_reason) == (True, "v2 broke checkout")
    # The rollback names who rolled back; the archived version keeps who promoted it.
    assert rollback.promoted_by == "token 7 'on-call'"
    assert get_model(session, model_id=second.id).promoted_by == RELEASE_BOT
    assert list_models(session, family="shoes", status=ModelStatus.PRODUCTION).total == 1


def test_the_actor_names_a_token_by_id_and_name_and_fits_its_column(session_factory):
    with session_factory() as session:
        bot, _ = create_token(session, name="release-bot", scopes=["admin"])
        assert actor(token=bot) == f"token {bot.id} 'release-bot'"
        assert actor(token=None) == "anonymous (authentication off)"
        # The longest name a token may have still fits models.promoted_by (PostgreSQL enforces it).
        longest, _ = create_token(session, name="n" * 200, scopes=["admin"])
        described = actor(token=longest)
        assert len(described) == 200 and described.startswith(f"token {longest.id} 'nnn") and described.endswith("…")
        uploaded_model(session)
        second = uploaded_model(session)
        promote_model(session, model_id=second.id, promoted_by=described)
    with session_factory() as fresh:  # read back from the database, not the session's objects
        assert get_model(fresh, model_id=second.id).promoted_by == described


def test_reference_cache_race_returns_one_row(session, session_factory):
    def add(index):
        with session_factory() as own:
            return add_reference(
                own,
                cache_key="key",
                artifact_uri=f"/r/{index}",
                sha256="2" * 64,
                architecture="small_cnn",
                classes=["a"],
            ).id

    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(add, range(4)))
    assert len(ids) == 1
    assert find_reference(session, cache_key="key").id in ids
    assert find_reference(session, cache_key="other") is None


def test_dataset_states(session):
    ready = ready_dataset(session)
    assert ready.status == DatasetStatus.READY and ready.classes == ["a", "b", "c", "d"]
    broken = create_dataset(session, name="broken", uri="/x", format=DatasetFormat.CIFAR)
    mark_dataset_failed(session, dataset_id=broken.id, error="no batches.meta")
    assert list_datasets(session, status=DatasetStatus.FAILED).items[0].error == "no batches.meta"
    with pytest.raises(Conflict) as error:
        create_dataset(session, name="broken", uri="/y", format=DatasetFormat.NPZ)
    assert error.value.loc == ("body", "name")
