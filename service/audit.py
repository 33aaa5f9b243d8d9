"""The append-only audit log: who did what to which record."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, update
from sqlalchemy.orm import Session

from service.models import (
    TRANSITIONS,
    AuditEntry,
    ReviewItem,
    Submission,
    SubmissionEvent,
    SubmissionStatus,
    utcnow,
)


class TransitionError(RuntimeError):
    """A submission was asked to make a move its lifecycle does not allow."""


_INSERT = insert(AuditEntry)


def audit(
    db: Session | Connection,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | int,
    data: dict[str, Any] | None = None,
) -> None:
    """One entry, in the caller's transaction (a Session, or a Connection on hot paths)."""
    values = {
        "at": utcnow(),
        "actor": actor,
        "action": action,
        "subject_type": subject_type,
        "subject_id": str(subject_id),
        "data": data,
    }
    if isinstance(db, Session):
        db.add(AuditEntry(**values))
    else:
        db.execute(_INSERT, values)


def transition(
    session: Session,
    submission: Submission,
    to: SubmissionStatus,
    actor: str,
    reason: str | None = None,
) -> None:
    """Move a submission, recording the event and an audit entry in the same transaction."""
    current = SubmissionStatus(submission.status)
    if to not in TRANSITIONS[current]:
        raise TransitionError(f"submission {submission.id}: {current} -> {to} is not allowed")
    submission.status = to
    submission.updated_at = utcnow()
    # The queue's copy of the status moves with the submission, in the same transaction.
    session.execute(
        update(ReviewItem)
        .where(ReviewItem.submission_id == submission.id)
        .values(status=to.value, updated_at=submission.updated_at)
    )
    session.add(
        SubmissionEvent(
            submission_id=submission.id,
            from_status=current.value,
            to_status=to.value,
            actor=actor,
            reason=reason,
        )
    )
    audit(
        session,
        actor,
        f"submission.{to.value}",
        "submission",
        submission.id,
        {"from": current.value},
    )
