"""The queue: every submission that needs a person, by due date and then risk."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session, aliased

from scanner.config import Settings
from scanner.findings import RuleState
from service.audit import audit
from service.models import (
    Publisher,
    ReviewItem,
    Scan,
    Submission,
    SubmissionStatus,
    User,
    aware,
    utcnow,
)
from service.review.accounts import Actor
from service.review.due import add_working_hours, end_of_day

APPROVED = (SubmissionStatus.APPROVED.value, SubmissionStatus.PROMOTED.value)
DUE_VIEWS = ("2d", "today", "overdue", "all")
# Not a submission status: promoted versions a retro-scan judged worse, waiting for a
# person (with the delta and a pre-filled yank), however old their own review was.
RETRO = "retro"
PAGE_SIZE = 50
MAX_REASONS = 5


@dataclass(frozen=True)
class QueueFilter:
    status: str = SubmissionStatus.AWAITING_REVIEW.value
    verdict: str | None = None
    category: str | None = None
    publisher: str | None = None
    plugin: str | None = None
    due: str = "2d"  # due within 2 working days by default
    page: int = 1

    @classmethod
    def from_args(cls, args: dict[str, str]) -> QueueFilter:
        due = args.get("due") or "2d"
        try:
            page = max(1, min(10_000, int(args.get("page") or 1)))
        except ValueError:
            page = 1
        statuses = {s.value for s in SubmissionStatus} | {RETRO}
        status = args.get("status") or SubmissionStatus.AWAITING_REVIEW.value
        return cls(
            status=status if status in statuses else SubmissionStatus.AWAITING_REVIEW.value,
            verdict=args.get("verdict") or None,
            category=args.get("category") or None,
            publisher=args.get("publisher") or None,
            plugin=args.get("plugin") or None,
            due=due if due in DUE_VIEWS else "2d",
            page=page,
        )

    def args(self, **changes: Any) -> dict[str, Any]:
        """Query arguments for a link to this view with ``changes``."""
        values = {
            "status": self.status,
            "verdict": self.verdict,
            "category": self.category,
            "publisher": self.publisher,
            "plugin": self.plugin,
            "due": self.due,
        }
        values.update(changes)
        return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class QueueRow:
    submission_id: str
    plugin: str
    version: str
    publisher: str
    verdict: str | None
    risk_score: int
    categories: list[str]
    reasons: list[dict[str, Any]]
    submitted_at: datetime
    due_at: datetime
    due_overridden: bool
    overdue: bool
    first_version: bool
    status: str
    claimed_by: str | None
    claim_expires_at: datetime | None
    retro_state: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from service.models import iso

        return {
            "submission_id": self.submission_id,
            "plugin": self.plugin,
            "version": self.version,
            "publisher": self.publisher,
            "status": self.status,
            "verdict": self.verdict,
            "risk_score": self.risk_score,
            "categories": self.categories,
            "reasons": self.reasons,
            "submitted_at": iso(self.submitted_at),
            "due_at": iso(self.due_at),
            "due_overridden": self.due_overridden,
            "overdue": self.overdue,
            "first_version": self.first_version,
            "claimed_by": self.claimed_by,
            "claim_expires_at": iso(self.claim_expires_at),
            "retro_state": self.retro_state,
        }


@dataclass
class QueuePage:
    rows: list[QueueRow]
    total: int
    counts: dict[str, int] = field(default_factory=dict)
    page: int = 1
    pages: int = 1


def due_bound(view: str, now: datetime) -> datetime | None:
    if view == "2d":
        return add_working_hours(now, 48)
    if view == "today":
        return end_of_day(now)
    if view == "overdue":
        return now
    return None


def _by_status(query: Any, status: str) -> Any:
    if status == RETRO:
        return query.where(ReviewItem.retro_state == "flagged")
    return query.where(ReviewItem.status == status)


def _filtered(query: Any, f: QueueFilter, now: datetime) -> Any:
    query = _by_status(query, f.status)
    if f.verdict:
        query = query.where(ReviewItem.verdict == f.verdict)
    if f.category:
        padded = literal(" ") + ReviewItem.categories + literal(" ")
        query = query.where(padded.like(f"% {f.category} %"))
    if f.publisher:
        query = query.where(
            ReviewItem.publisher_id
            == select(Publisher.id).where(Publisher.external_id == f.publisher).scalar_subquery()
        )
    if f.plugin:
        query = query.where(ReviewItem.plugin_name == f.plugin)
    bound = due_bound(f.due, now)
    if bound is not None and f.status != RETRO:  # a flag is due now, whatever the date
        query = query.where(ReviewItem.due_at <= bound)
    return query


def list_queue(session: Session, f: QueueFilter, now: datetime | None = None) -> QueuePage:
    now = now or utcnow()
    holder = aliased(User)
    query = _filtered(
        select(ReviewItem, Publisher.external_id, holder.name)
        .join(Publisher, Publisher.id == ReviewItem.publisher_id)
        .outerjoin(holder, holder.id == ReviewItem.claimed_by),
        f,
        now,
    ).order_by(
        *(
            (ReviewItem.retro_at,)
            if f.status == RETRO
            else (ReviewItem.due_at, ReviewItem.risk_score.desc(), ReviewItem.submitted_at)
        )
    )
    rows = []
    for item, publisher, holder_name in session.execute(
        query.limit(PAGE_SIZE).offset((f.page - 1) * PAGE_SIZE)
    ):
        due = aware(item.due_at)
        assert due is not None
        until = aware(item.claim_expires_at)
        live = until is not None and until > now
        rows.append(
            QueueRow(
                submission_id=item.submission_id,
                plugin=item.plugin_name,
                version=item.plugin_version,
                publisher=publisher,
                verdict=item.verdict,
                risk_score=item.risk_score,
                categories=item.categories.split(),
                reasons=list(item.reasons or [])[:2],
                submitted_at=aware(item.submitted_at) or now,
                due_at=due,
                due_overridden=item.due_overridden,
                overdue=due < now,
                first_version=item.first_version,
                status=item.status,
                claimed_by=holder_name if live else None,
                claim_expires_at=until if live else None,
                retro_state=item.retro_state,
            )
        )
    total = int(session.scalar(_filtered(select(func.count()), f, now)) or 0)
    counts = queue_counts(session, f.status, now)
    pages = max(1, -(-total // PAGE_SIZE))
    return QueuePage(rows, total, counts, f.page, pages)


def queue_counts(session: Session, status: str, now: datetime) -> dict[str, int]:
    """How many are waiting, by verdict, and how many are overdue or due today."""
    counts: dict[str, int] = {"total": 0}
    base = _by_status(select(ReviewItem.verdict, func.count()), status)
    for verdict, n in session.execute(base.group_by(ReviewItem.verdict)):
        counts[f"verdict:{verdict or 'none'}"] = n
        counts["total"] += n
    for view in ("overdue", "today", "2d"):
        bound = due_bound(view, now)
        counts[f"due:{view}"] = int(
            session.scalar(
                _by_status(select(func.count()), status).where(ReviewItem.due_at <= bound)
            )
            or 0
        )
    counts[RETRO] = int(
        session.scalar(select(func.count()).where(ReviewItem.retro_state == "flagged")) or 0
    )
    return counts


def previous_approved(session: Session, submission: Submission) -> Submission | None:
    """The last approved (or promoted) version of the same plugin by the same publisher."""
    return session.scalar(
        select(Submission)
        .where(
            Submission.publisher_id == submission.publisher_id,
            Submission.plugin_name == submission.plugin_name,
            Submission.status.in_(APPROVED),
            Submission.id != submission.id,
            Submission.created_at <= submission.created_at,
        )
        .order_by(Submission.created_at.desc())
        .limit(1)
    )


def top_categories(report: dict[str, Any]) -> list[str]:
    counts: Counter[str] = Counter(
        f["category"]
        for f in report.get("findings", [])
        if f.get("state") == RuleState.ENABLED.value
        and not f.get("suppressed_by")
        and not f.get("library")
        and f.get("severity") != "info"
    )
    return [c for c, _ in counts.most_common()]


def enter_queue(
    session: Session,
    submission: Submission,
    scan: Scan,
    report: dict[str, Any],
    settings: Settings,
) -> ReviewItem:
    """Create or refresh the submission's queue item from a concluded scan.

    A rescan keeps the due date: the clock runs from the submission, not from the scan.
    """
    item = session.get(ReviewItem, submission.id, with_for_update=True)
    first = previous_approved(session, submission) is None
    reasons = [
        {"action": r.get("action"), "text": str(r.get("text", ""))[:300]}
        for r in report.get("reasons", [])[:MAX_REASONS]
    ]
    values = {
        "scan_id": scan.id,
        "status": submission.status,
        "verdict": scan.verdict,
        "risk_score": scan.risk_score or 0,
        "categories": " ".join(top_categories(report))[:500],
        "reasons": reasons,
        "first_version": first,
        "updated_at": utcnow(),
    }
    if item is None:
        created = aware(submission.created_at) or utcnow()
        item = ReviewItem(
            submission_id=submission.id,
            publisher_id=submission.publisher_id,
            plugin_name=submission.plugin_name,
            plugin_version=submission.plugin_version,
            submitted_at=created,
            due_at=add_working_hours(created, settings.review_target_hours),
            due_overridden=False,
            **values,
        )
        session.add(item)
    else:
        for key, value in values.items():
            setattr(item, key, value)
    return item


def override_due(
    session: Session, submission_id: str, due_at: datetime, actor: Actor, why: str
) -> None:
    """An admin moves a due date; the old and new dates and the reason are audited."""
    item = session.get(ReviewItem, submission_id, with_for_update=True)
    if item is None:
        raise LookupError(submission_id)
    before = aware(item.due_at)
    item.due_at, item.due_overridden = due_at, True
    audit(
        session,
        actor.label,
        "due.override",
        "submission",
        submission_id,
        {
            "from": before.isoformat() if before else None,
            "to": due_at.isoformat(),
            "why": why,
        },
    )


@dataclass(frozen=True)
class HistoryRow:
    submission_id: str
    plugin: str
    version: str
    status: str
    verdict: str | None
    submitted_at: datetime


def publisher_history(session: Session, publisher_id: int, limit: int = 200) -> list[HistoryRow]:
    rows = session.execute(
        select(
            Submission.id,
            Submission.plugin_name,
            Submission.plugin_version,
            Submission.status,
            Submission.verdict,
            Submission.created_at,
        )
        .where(Submission.publisher_id == publisher_id)
        .order_by(Submission.created_at.desc())
        .limit(limit)
    )
    return [HistoryRow(r[0], r[1], r[2], r[3], r[4], aware(r[5]) or utcnow()) for r in rows]
