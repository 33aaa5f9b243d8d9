"""The risk delta of a submission's scan against the last approved version's scan."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Decision, Promotion, Scan, ScanFacts, ScanStatus, Submission
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
    # The baseline is what a person (or auto-approval) approved, never a later scan of it:
    # a retro-scan that flagged the old version must not make the same code look routine.
    approved_on = session.scalar(
        select(Decision.scan_id)
        .where(Decision.submission_id == before.id, Decision.action == "approve")
        .order_by(Decision.id.desc())
        .limit(1)
    )
    scan = (
        session.get(Scan, approved_on)
        if approved_on is not None
        else completed_scan(session, before.id)
    )
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
    delta = deltas.compute(facts, report.get("findings", []), previous_view(session, submission))
    delta.yanked_files = yanked_matches(session, facts)
    return delta


def yanked_matches(session: Session, facts: dict[str, Any] | None) -> list[str]:
    """Files of this scan that were served before and yanked, by content, across plugins.

    A yank withdraws bytes, not a version number: the same files under the next version
    (or another name) must not slip back as a routine update.
    """
    mine: dict[str, str] = {str(h): str(p) for p, h, *_ in (facts or {}).get("files", [])}
    if not mine:
        return []
    out = []
    yanked = session.execute(
        select(Promotion.plugin_name, Promotion.plugin_version, ScanFacts.data)
        .join(ScanFacts, ScanFacts.scan_id == Promotion.scan_id)
        .where(Promotion.yanked_at.is_not(None))
    )
    for name, version, data in yanked:
        for _, digest, *_ in (data or {}).get("files", []):
            if str(digest) in mine:
                out.append(f"{mine[str(digest)]} (the same bytes as yanked {name}@{version})")
    return sorted(set(out))
