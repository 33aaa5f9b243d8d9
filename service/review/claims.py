"""Claims: a reviewer holds a submission for a while; nobody else decides meanwhile."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import audit
from service.models import ReviewItem, User, aware, utcnow
from service.review.accounts import Actor


class ClaimHeldError(Exception):
    """Someone else holds the claim; ``holder`` and ``until`` say who and how long."""

    def __init__(self, holder: str, until: datetime) -> None:
        super().__init__(f"claimed by {holder} until {until:%Y-%m-%d %H:%M} UTC")
        self.holder, self.until = holder, until


class NotInQueueError(LookupError):
    """The submission has no queue item (never concluded, or unknown)."""


@dataclass(frozen=True)
class ClaimState:
    holder_id: int | None
    holder: str | None
    until: datetime | None

    def held_by_other(self, actor: Actor) -> bool:
        return self.holder_id is not None and self.holder_id != actor.user_id


def state(session: Session, item: ReviewItem, now: datetime | None = None) -> ClaimState:
    """The live claim on an item; an expired claim is no claim."""
    now = now or utcnow()
    until = aware(item.claim_expires_at)
    if item.claimed_by is None or until is None or until <= now:
        return ClaimState(None, None, None)
    name = session.scalar(select(User.name).where(User.id == item.claimed_by))
    return ClaimState(item.claimed_by, name, until)


def locked_item(session: Session, submission_id: str) -> ReviewItem:
    item = session.get(ReviewItem, submission_id, with_for_update=True)
    if item is None:
        raise NotInQueueError(submission_id)
    return item


def claim(session: Session, submission_id: str, actor: Actor, minutes: float) -> ClaimState:
    """Take or renew the claim; refused while another reviewer's claim is live."""
    item = locked_item(session, submission_id)
    current = state(session, item)
    if current.held_by_other(actor):
        assert current.holder is not None and current.until is not None
        raise ClaimHeldError(current.holder, current.until)
    until = utcnow() + timedelta(minutes=minutes)
    item.claimed_by, item.claim_expires_at = actor.user_id, until
    action = "claim.renewed" if current.holder_id == actor.user_id else "claim.taken"
    audit(session, actor.label, action, "submission", submission_id, {"until": until.isoformat()})
    return ClaimState(actor.user_id, actor.name, until)


def release(session: Session, submission_id: str, actor: Actor) -> None:
    """Give the claim back; an admin may release anyone's (logged as such)."""
    item = locked_item(session, submission_id)
    current = state(session, item)
    if current.holder_id is None:
        return
    if current.held_by_other(actor) and not actor.is_admin:
        assert current.holder is not None and current.until is not None
        raise ClaimHeldError(current.holder, current.until)
    item.claimed_by, item.claim_expires_at = None, None
    audit(
        session,
        actor.label,
        "claim.released",
        "submission",
        submission_id,
        {"holder": current.holder},
    )


def require_free_or_mine(session: Session, item: ReviewItem, actor: Actor) -> None:
    current = state(session, item)
    if current.held_by_other(actor):
        assert current.holder is not None and current.until is not None
        raise ClaimHeldError(current.holder, current.until)
