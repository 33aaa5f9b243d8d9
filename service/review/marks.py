"""Per-finding marks (true / false positive) and the precision they give each rule."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner.config import Settings
from service.audit import audit
from service.models import FindingMark, FindingRecord
from service.review.accounts import Actor

MARKS = {"tp": "true positive", "fp": "false positive"}


class MarkError(ValueError):
    """Unknown finding or mark."""


def mark_finding(
    session: Session, finding_id: int, actor: Actor, mark: str, note: str | None = None
) -> FindingMark:
    """Record a reviewer's mark; a later mark by anyone replaces it in the precision."""
    if mark not in MARKS:
        raise MarkError("mark is tp or fp")
    finding = session.get(FindingRecord, finding_id)
    if finding is None:
        raise MarkError("no such finding")
    row = FindingMark(
        finding_id=finding_id,
        scan_id=finding.scan_id,
        rule_id=finding.rule_id,
        mark=mark,
        user_id=actor.user_id,
        note=(note or "").strip()[:2000] or None,
    )
    session.add(row)
    session.flush()
    audit(
        session,
        actor.label,
        f"finding.marked_{mark}",
        "finding",
        finding_id,
        {"rule_id": finding.rule_id, "scan_id": finding.scan_id, "note": row.note},
    )
    return row


def latest_marks(session: Session, finding_ids: list[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    if not finding_ids:
        return out
    for fid, mark in session.execute(
        select(FindingMark.finding_id, FindingMark.mark)
        .where(FindingMark.finding_id.in_(finding_ids))
        .order_by(FindingMark.id)
    ):
        out[fid] = mark
    return out


@dataclass(frozen=True)
class RulePrecision:
    rule_id: str
    true_positives: int
    false_positives: int
    flagged: bool

    @property
    def marked(self) -> int:
        return self.true_positives + self.false_positives

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.marked if self.marked else None

    def to_dict(self) -> dict[str, object]:
        return {
            "rule_id": self.rule_id,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "precision": self.precision,
            "flagged_for_evaluation": self.flagged,
        }


def precision_by_rule(session: Session, settings: Settings) -> list[RulePrecision]:
    """Each marked rule's precision over its findings' latest marks; rules at or past
    the minimum number of marks and below the threshold are flagged for evaluation."""
    latest: dict[int, tuple[str, str]] = {}
    for fid, rule_id, mark in session.execute(
        select(FindingMark.finding_id, FindingMark.rule_id, FindingMark.mark).order_by(
            FindingMark.id
        )
    ):
        latest[fid] = (rule_id, mark)
    tally: dict[str, list[int]] = {}
    for rule_id, mark in latest.values():
        counts = tally.setdefault(rule_id, [0, 0])
        counts[0 if mark == "tp" else 1] += 1
    out = []
    for rule_id, (tp, fp) in sorted(tally.items()):
        marked = tp + fp
        flagged = marked >= settings.review_min_marks and tp / marked < settings.precision_threshold
        out.append(RulePrecision(rule_id, tp, fp, flagged))
    out.sort(
        key=lambda r: (not r.flagged, r.precision if r.precision is not None else 1, r.rule_id)
    )
    return out
