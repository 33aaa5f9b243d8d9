"""The risk delta of a submission's scan against the last approved version's scan."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Scan, ScanFacts, ScanStatus, Submission
from service.review import delta as deltas
from service.review.queue import previous_approved


def completed_scan(session: Session, submission_id: str) -> Scan | None:
    return session.scalar(
        select(Scan)
        .where(Scan.submission_id == submission_id, Scan.status == ScanStatus.COMPLETED)
        .order_by(Scan.created_at.desc(), Scan.id.desc())
        .limit(1)
    )


def facts_of(session: Session, scan_id: str) -> dict[str, Any] | None:
    row = session.get(ScanFacts, scan_id)
    return dict(row.data) if row is not None else None


def previous_view(session: Session, submission: Submission) -> dict[str, Any] | None:
    """What the delta compares with, or None when no version was approved before."""
    before = previous_approved(session, submission)
    if before is None:
        return None
    scan = completed_scan(session, before.id)
    report = scan.report if scan is not None and scan.report else {}
    return {
        "submission_id": before.id,
        "version": before.plugin_version,
        "scan_id": scan.id if scan is not None else None,
        "facts": facts_of(session, scan.id) if scan is not None else None,
        "findings": report.get("findings", []),
    }


def delta_for(
    session: Session,
    submission: Submission,
    scan: Scan,
    facts: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
) -> deltas.Delta:
    report = report if report is not None else (scan.report or {})
    facts = facts if facts is not None else facts_of(session, scan.id)
    return deltas.compute(facts, report.get("findings", []), previous_view(session, submission))
