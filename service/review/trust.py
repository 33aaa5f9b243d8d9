"""Publisher trust levels, set by admins (audited); only trusted ones are auto-approved."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import audit
from service.models import Publisher
from service.review.accounts import Actor

LEVELS = ("new", "verified", "trusted")


class TrustError(ValueError):
    """Unknown level or publisher, or not an admin."""


def set_trust(session: Session, actor: Actor, external_id: str, level: str, why: str) -> Publisher:
    if not actor.is_admin:
        raise TrustError("only admins set trust levels")
    if level not in LEVELS:
        raise TrustError(f"level is one of {', '.join(LEVELS)}")
    publisher = session.scalar(select(Publisher).where(Publisher.external_id == external_id))
    if publisher is None:
        raise TrustError("no such publisher")
    before = publisher.trust
    publisher.trust = level
    audit(
        session,
        actor.label,
        "publisher.trust",
        "publisher",
        publisher.id,
        {"from": before, "to": level, "why": why.strip()[:2000] or None},
    )
    return publisher
