"""The audit page's query: entries filtered by who, which plugin and what action."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import AuditEntry, Submission, iso

PAGE = 100


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    plugin: str | None = None
    action: str | None = None
    page: int = 1

    @classmethod
    def from_args(cls, args: dict[str, str]) -> AuditFilter:
        try:
            page = max(1, min(10_000, int(args.get("page") or 1)))
        except ValueError:
            page = 1
        return cls(
            actor=(args.get("actor") or "").strip() or None,
            plugin=(args.get("plugin") or "").strip() or None,
            action=(args.get("action") or "").strip() or None,
            page=page,
        )


def search(session: Session, f: AuditFilter) -> list[dict[str, Any]]:
    query = select(AuditEntry, Submission.plugin_name, Submission.plugin_version).outerjoin(
        Submission,
        (AuditEntry.subject_type == "submission") & (Submission.id == AuditEntry.subject_id),
    )
    if f.actor:
        # "alice" finds user:alice; a full actor label matches itself.
        query = query.where(AuditEntry.actor.in_((f.actor, f"user:{f.actor}")))
    if f.plugin:
        query = query.where(Submission.plugin_name == f.plugin)
    if f.action:
        query = query.where(AuditEntry.action.startswith(f.action, autoescape=True))
    rows = session.execute(
        query.order_by(AuditEntry.id.desc()).limit(PAGE).offset((f.page - 1) * PAGE)
    )
    return [
        {
            "id": e.id,
            "at": iso(e.at),
            "actor": e.actor,
            "action": e.action,
            "subject_type": e.subject_type,
            "subject_id": e.subject_id,
            "plugin": f"{name}@{version}" if name else None,
            "data": e.data,
        }
        for e, name, version in rows
    ]
