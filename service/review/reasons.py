"""Canned rejection reasons, kept by admins as data."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import audit
from service.models import CannedReason, utcnow
from service.review.accounts import Actor


def save_reason(
    session: Session, actor: Actor, code: str, title: str, body: str, active: bool
) -> CannedReason:
    """Create or edit; the audit entry keeps the text before (decisions copied theirs)."""
    if not actor.is_admin:
        raise PermissionError("only admins edit canned reasons")
    row = session.scalar(select(CannedReason).where(CannedReason.code == code))
    before = None if row is None else {"title": row.title, "body": row.body, "active": row.active}
    if row is None:
        row = CannedReason(code=code, title=title, body=body, updated_by=actor.label)
        session.add(row)
    row.title, row.body, row.active = title, body, active
    row.updated_by, row.updated_at = actor.label, utcnow()
    audit(
        session,
        actor.label,
        "reason.saved",
        "reason",
        code,
        {"before": before, "title": title, "body": body, "active": active},
    )
    return row
