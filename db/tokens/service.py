"""API tokens: creation (admin command), lookup per request (API), listing and revocation."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.base import utcnow
from db.errors import InvalidInput, NotFound
from db.tokens.models import ACTOR_LENGTH, ApiToken, Scope

TOKEN_BYTES = 32
# Who an automatic promotion (a family's first version, a gate's auto_promote) names.
AUTOMATIC_ACTOR = "flipguard (automatic)"


def token_digest(token: str) -> str:
    """The hex sha256 under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, name: str, scopes: list[str]) -> tuple[ApiToken, str]:
    """Store a new random token with these scopes; returns (row, token), the token only here."""
    unknown = sorted(set(scopes) - {scope.value for scope in Scope})
    if unknown or not scopes:
        raise InvalidInput(
            f"scopes must be a non-empty subset of {[scope.value for scope in Scope]}; got {scopes}",
            loc=("scopes",),
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = ApiToken(name=name, token_hash=token_digest(token), scopes=sorted(set(scopes)))
    session.add(row)
    session.commit()
    return row, token


def authenticate(session: Session, *, token: str) -> ApiToken | None:
    """The live (not revoked) token row matching this token, or None."""
    digest = token_digest(token)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None)))
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return row


def actor(*, token: ApiToken | None) -> str:
    """Who acted, as a promotion records it: the token's id and name, or anonymous with auth off."""
    if token is None:
        return "anonymous (authentication off)"
    described = f"token {token.id} {token.name!r}"
    # A name may be as long as the column on its own: cut it, keeping the id whole.
    return described if len(described) <= ACTOR_LENGTH else described[: ACTOR_LENGTH - 1] + "…"


def list_tokens(session: Session) -> list[ApiToken]:
    """Every token row (revoked ones included), oldest first."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, *, token_id: int) -> ApiToken:
    """Revoke a token: requests carrying it are refused from now on."""
    session.execute(
        update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    session.commit()
    row = session.get(ApiToken, token_id, populate_existing=True)
    if row is None:
        raise NotFound(f"token {token_id} does not exist", loc=("token_id",))
    return row
