"""API tokens: shown once, stored as a sha256, with scopes."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import audit
from service.models import ApiToken, Publisher, User, utcnow

# review: act at the desk as the token's user (reviewer or admin, by the user's role).
SCOPES = frozenset({"preflight", "read", "admin", "review"})
TOKEN_PREFIX = "gh_"  # noqa: S105 - a recognisable prefix (secret scanners), not a secret


class TokenError(ValueError):
    """Unknown scope, or a token that does not exist."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    name: str,
    scopes: set[str],
    *,
    publisher: Publisher | None = None,
    hourly_limit: int | None = None,
    actor: str = "cli",
    user: User | None = None,
) -> tuple[ApiToken, str]:
    unknown = scopes - SCOPES
    if unknown or not scopes:
        raise TokenError(f"scopes must be some of {', '.join(sorted(SCOPES))}")
    if ("review" in scopes) != (user is not None):
        raise TokenError("a review token acts for one user: give --user with --scope review")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        token_hash=hash_token(plaintext),
        prefix=plaintext[:10],
        scopes=" ".join(sorted(scopes)),
        publisher_id=publisher.id if publisher else None,
        hourly_limit=hourly_limit,
        user_id=user.id if user else None,
    )
    session.add(row)
    session.flush()
    audit(session, actor, "token.created", "token", row.id, {"scopes": row.scopes, "name": name})
    return row, plaintext


def authenticate(session: Session, plaintext: str) -> ApiToken | None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext)))
    if row is None or row.revoked_at is not None:
        return None
    return row


def revoke(session: Session, token_id: int, actor: str = "cli") -> None:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise TokenError(f"no token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit(session, actor, "token.revoked", "token", token_id)
