"""Auto-approval: off by default; when an admin turns it on, a trusted publisher's routine
update is approved by the system, recorded as such with its reasons.

Routine means: the policy said ``pass``, no stage failed or left a file unscanned, and
relative to the last approved version there is no new finding, capability, origin,
dependency or advisory. A first version is never auto-approved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import audit
from service.models import (
    DeskSwitch,
    Publisher,
    ReviewItem,
    Scan,
    Submission,
    SubmissionStatus,
    utcnow,
)
from service.review import delta as deltas
from service.review.accounts import Actor
from service.review.comparison import delta_for, facts_of

SWITCH = "auto_approval"
ACTOR = "auto-approval"


@dataclass(frozen=True)
class Evaluation:
    eligible: bool
    reasons: list[str] = field(default_factory=list)  # why it qualifies, or why not

    def to_dict(self) -> dict[str, Any]:
        return {"eligible": self.eligible, "reasons": self.reasons}


def evaluate(
    trust: str, verdict: str | None, delta: deltas.Delta, stage_gaps: list[str]
) -> Evaluation:
    """Pure: every condition is checked and every failed one named."""
    blockers = []
    if trust != "trusted":
        blockers.append(f"publisher trust is {trust}, not trusted")
    if verdict != "pass":
        blockers.append(f"verdict is {verdict}, not pass")
    if stage_gaps:
        blockers.append(f"stage gaps: {', '.join(stage_gaps)}")
    if delta.first_version:
        blockers.append("first version: no approved version to compare with")
    elif delta.facts_missing:
        blockers.append("the previous version's facts are unknown")
    for label, items in (
        ("new findings", [str(f.get("rule_id")) for f in delta.new_findings]),
        ("new capabilities", delta.new_capabilities),
        ("new origins", delta.new_origins),
        ("new dependencies", delta.new_dependencies),
        ("new advisories", delta.new_advisories),
        ("files of a yanked version", delta.yanked_files),
    ):
        if items:
            blockers.append(f"{label}: {', '.join(items[:10])}")
    if blockers:
        return Evaluation(False, blockers)
    return Evaluation(
        True,
        [
            "publisher is trusted",
            "verdict pass with every stage complete",
            f"nothing new since approved version {delta.previous_version}",
        ],
    )


def enabled(session: Session) -> bool:
    row = session.get(DeskSwitch, SWITCH)
    return bool(row and row.enabled)


def set_enabled(session: Session, actor: Actor, on: bool) -> None:
    if not actor.is_admin:
        raise PermissionError("only admins switch auto-approval")
    row = session.get(DeskSwitch, SWITCH, with_for_update=True)
    if row is None:
        row = DeskSwitch(name=SWITCH, enabled=on, changed_by=actor.label)
        session.add(row)
    row.enabled, row.changed_by, row.changed_at = on, actor.label, utcnow()
    audit(session, actor.label, "auto_approval.on" if on else "auto_approval.off", "desk", SWITCH)


def evaluate_submission(
    session: Session,
    submission: Submission,
    scan: Scan,
    facts: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
    delta: deltas.Delta | None = None,
) -> Evaluation:
    publisher = session.get(Publisher, submission.publisher_id)
    facts = facts if facts is not None else facts_of(session, scan.id)
    delta = delta if delta is not None else delta_for(session, submission, scan, facts, report)
    gaps = list((facts or {}).get("stage_gaps", ["unknown: no facts recorded"]))
    return evaluate(publisher.trust if publisher else "new", scan.verdict, delta, gaps)


def dry_run(session: Session, limit: int = 200) -> list[tuple[ReviewItem, Evaluation]]:
    """What auto-approval would approve among the waiting submissions of trusted
    publishers (others can never qualify), whether it is on or off."""
    out = []
    rows = session.execute(
        select(ReviewItem, Submission, Scan)
        .join(Submission, Submission.id == ReviewItem.submission_id)
        .join(Scan, Scan.id == ReviewItem.scan_id)
        .join(Publisher, Publisher.id == ReviewItem.publisher_id)
        .where(
            ReviewItem.status == SubmissionStatus.AWAITING_REVIEW.value,
            Publisher.trust == "trusted",
        )
        .order_by(ReviewItem.due_at)
        .limit(limit)
    )
    for item, submission, scan in rows:
        out.append((item, evaluate_submission(session, submission, scan)))
    return out
