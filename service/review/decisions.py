"""Decisions at the desk: approve, reject, request changes, rescan, yank.

A decision names the exact scan the reviewer looked at and is refused unless that scan is
still the submission's latest, was made on the submission's bytes and with the current
rules. The decision row, the status change, the audit entry, the registry callback and,
for an approval, the CDN promotion are written in one transaction; the callback and the
promotion task are dispatched after it commits. Yanks are the CDN's (service.cdn.yank).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner.advisories.store import snapshot_identity
from scanner.ruleset import ruleset_hash
from service.audit import audit, transition
from service.callbacks import enqueue_event
from service.cdn import promote as cdn_promote
from service.cdn import yank as cdn_yank
from service.models import (
    CannedReason,
    Decision,
    ReviewItem,
    Scan,
    ScanKind,
    ScanStatus,
    Submission,
    SubmissionStatus,
    new_id,
)
from service.review.accounts import Actor
from service.review.claims import require_free_or_mine
from service.services import Services

log = logging.getLogger(__name__)

ACTIONS = ("approve", "reject", "request_changes")
RESULT = {
    "approve": (SubmissionStatus.APPROVED, "pass", "submission.approved"),
    "reject": (SubmissionStatus.REJECTED, "reject", "submission.rejected"),
    "request_changes": (
        SubmissionStatus.CHANGES_REQUESTED,
        "review",
        "submission.changes_requested",
    ),
}
MAX_MESSAGE = 5000


class DecisionError(Exception):
    """A decision that cannot be made; ``status`` is the HTTP status it maps to."""

    status = 409
    code = "conflict"


class InvalidDecisionError(DecisionError):
    status = 422
    code = "invalid-decision"


class StaleScanError(DecisionError):
    """The scan is not the one to decide on (rescanned since, or made by older rules)."""

    code = "stale-scan"


class NotFoundError(DecisionError):
    status = 404
    code = "not-found"


@dataclass
class Outcome:
    decision_id: int
    status: str
    deliveries: list[int] = field(default_factory=list)
    promotions: list[int] = field(default_factory=list)


def latest_scan(session: Session, submission_id: str) -> Scan | None:
    return session.scalar(
        select(Scan)
        .where(Scan.submission_id == submission_id)
        .order_by(Scan.created_at.desc(), Scan.id.desc())
        .limit(1)
    )


def check_bound(svc: Services, submission: Submission, scan: Scan | None, scan_id: str) -> Scan:
    """The scan a decision binds to, or why it cannot be decided on."""
    if scan is None or scan.id != scan_id:
        raise StaleScanError(
            "the submission was rescanned since this page was loaded: reload and look again"
        )
    if scan.status != ScanStatus.COMPLETED:
        raise StaleScanError("the scan has not completed")
    if scan.bundle_sha256 != submission.bundle_sha256:
        raise StaleScanError("the scan is not of the submitted bundle's bytes")
    if scan.ruleset != ruleset_hash(svc.settings.rules_dir):
        raise StaleScanError("the rules changed since this scan: rescan it with the current rules")
    if scan.advisories is None or scan.advisories != snapshot_identity(svc.engine):
        # An approval stands for "nothing known against it": known as of today's data.
        raise StaleScanError(
            "the advisory data changed since this scan: rescan it with the current advisories"
        )
    return scan


def canned(session: Session, codes: list[str]) -> list[dict[str, str]]:
    rows = {
        r.code: r
        for r in session.scalars(select(CannedReason).where(CannedReason.code.in_(codes or [""])))
    }
    unknown = [c for c in codes if c not in rows or not rows[c].active]
    if unknown:
        raise InvalidDecisionError(f"unknown or retired reasons: {', '.join(sorted(unknown))}")
    return [{"code": c, "title": rows[c].title, "text": rows[c].body} for c in dict.fromkeys(codes)]


def decide(
    svc: Services,
    submission_id: str,
    actor: Actor,
    action: str,
    scan_id: str,
    reason_codes: list[str] | None = None,
    message: str | None = None,
) -> Outcome:
    """A reviewer's approve, reject or request-changes; callbacks dispatched after commit."""
    if action not in ACTIONS:
        raise InvalidDecisionError(f"action is one of {', '.join(ACTIONS)}")
    message = (message or "").strip()[:MAX_MESSAGE] or None
    with svc.session() as s:
        submission = s.get(Submission, submission_id, with_for_update=True)
        if submission is None:
            raise NotFoundError("no such submission")
        if submission.status != SubmissionStatus.AWAITING_REVIEW:
            raise DecisionError(f"the submission is {submission.status}, not awaiting review")
        item = s.get(ReviewItem, submission_id, with_for_update=True)
        if item is not None:
            require_free_or_mine(s, item, actor)
        scan = check_bound(svc, submission, latest_scan(s, submission_id), scan_id)
        reasons = canned(s, list(reason_codes or [])) if reason_codes else []
        if action == "reject" and not reasons:
            raise InvalidDecisionError("a rejection needs at least one reason")
        if action == "request_changes" and not message:
            raise InvalidDecisionError("say what the publisher should change")
        try:
            outcome = record(s, submission, scan, actor.label, action, reasons, message, actor)
        except cdn_promote.NotPromotableError as exc:
            raise DecisionError(f"cannot be approved for the CDN: {exc}") from None
        if item is not None:
            item.claimed_by, item.claim_expires_at = None, None
    dispatch(svc, outcome.deliveries, outcome.promotions)
    return outcome


def record(
    s: Session,
    submission: Submission,
    scan: Scan,
    actor_label: str,
    action: str,
    reasons: list[dict[str, str]],
    message: str | None,
    actor: Actor | None,
    kind: str = "reviewer",
) -> Outcome:
    """Write the decision, move the submission, queue the callback and, for an approval,
    the CDN promotion (caller's transaction; NotPromotableError leaves it to roll back)."""
    to, verdict, event = RESULT[action]
    decision = Decision(
        scan_id=scan.id,
        submission_id=submission.id,
        kind=kind,
        verdict=verdict,
        risk_score=scan.risk_score,
        reasons=reasons,
        actor=actor_label,
        action=action,
        user_id=actor.user_id if actor else None,
        bundle_sha256=scan.bundle_sha256,
        ruleset=scan.ruleset,
        tree_sha256=scan.tree_sha256,
        message=message,
    )
    s.add(decision)
    transition(
        s, submission, to, actor_label, message or (reasons[0]["title"] if reasons else None)
    )
    s.flush()
    audit(
        s,
        actor_label,
        f"decision.{action}",
        "submission",
        submission.id,
        {
            "decision_id": decision.id,
            "scan_id": scan.id,
            "reasons": [r["code"] for r in reasons],
            "message": message,
            "kind": kind,
        },
    )
    data: dict[str, Any] = {
        "scan_id": scan.id,
        "status": to.value,
        "verdict": scan.verdict,
        "decision": {
            "action": action,
            "by": "auto-approval" if kind == "system" else "reviewer",
            "reasons": reasons,
            "message": message,
        },
    }
    promotions = []
    if action == "approve":
        promotions.append(cdn_promote.request(s, submission, scan, decision).id)
    delivery = enqueue_event(s, submission, event, data)
    s.flush()
    return Outcome(decision.id, to.value, [delivery.id] if delivery else [], promotions)


def rescan(svc: Services, submission_id: str, actor: Actor) -> str:
    """A new scan of the same bytes with the current rules; the submission leaves the queue."""
    with svc.session() as s:
        submission = s.get(Submission, submission_id, with_for_update=True)
        if submission is None:
            raise NotFoundError("no such submission")
        if submission.status not in (SubmissionStatus.AWAITING_REVIEW, SubmissionStatus.REJECTED):
            raise DecisionError(f"a {submission.status} submission cannot be rescanned")
        item = s.get(ReviewItem, submission_id, with_for_update=True)
        if item is not None:
            require_free_or_mine(s, item, actor)  # a rescan voids the claimer's decision
        last = s.scalar(
            select(Decision)
            .where(Decision.submission_id == submission_id)
            .order_by(Decision.id.desc())
            .limit(1)
        )
        if (
            submission.status == SubmissionStatus.REJECTED
            and last is not None
            and last.kind != "automatic"
            and not actor.is_admin
        ):
            raise DecisionError("a reviewer's rejection is reopened only by an admin")
        previous = latest_scan(s, submission_id)
        scan = Scan(
            id=new_id(),
            kind=ScanKind.SUBMISSION,
            submission_id=submission_id,
            bundle_sha256=previous.bundle_sha256 if previous else None,
            bundle_name=previous.bundle_name
            if previous
            else f"{submission.plugin_name}-{submission.plugin_version}.bundle",
            status=ScanStatus.QUEUED,
        )
        s.add(scan)
        s.flush()
        transition(s, submission, SubmissionStatus.SCANNING, actor.label, "rescan requested")
        audit(s, actor.label, "decision.rescan", "submission", submission_id, {"scan_id": scan.id})
        scan_id = scan.id
    try:
        svc.jobs.start_scan(scan_id)
    except Exception as exc:  # committed: the sweeper queues it once the broker answers
        log.warning("rescan %s not queued yet: %s", scan_id, exc)
    return scan_id


def yank(svc: Services, submission_id: str, actor: Actor, why: str) -> Outcome:
    """An admin withdraws an approved or promoted version (see service.cdn.yank)."""
    if not actor.is_admin:
        raise DecisionError("only admins may yank a version")
    try:
        done = cdn_yank.yank(svc, submission_id, actor.label, why, actor.user_id)
    except cdn_yank.YankError as exc:
        raise _as_decision_error(exc) from None
    return Outcome(done.decision_id, done.status, done.deliveries)


def unyank(svc: Services, submission_id: str, actor: Actor, why: str) -> Outcome:
    """An admin brings a yanked version back (explicit and audited)."""
    if not actor.is_admin:
        raise DecisionError("only admins may un-yank a version")
    try:
        done = cdn_yank.unyank(svc, submission_id, actor.label, why, actor.user_id)
    except cdn_yank.YankError as exc:
        raise _as_decision_error(exc) from None
    return Outcome(done.decision_id, done.status, done.deliveries)


def _as_decision_error(exc: cdn_yank.YankError) -> DecisionError:
    error = DecisionError(str(exc))
    error.status, error.code = exc.status, exc.code
    return error


def dispatch(svc: Services, deliveries: Sequence[int], promotions: Sequence[int] = ()) -> None:
    for delivery_id in deliveries:
        try:
            svc.jobs.deliver(delivery_id)
        except Exception as exc:  # the sweeper delivers it once the lease runs out
            log.warning("callback %d not dispatched now: %s", delivery_id, exc)
    for promotion_id in promotions:
        try:
            svc.jobs.promote(promotion_id)
        except Exception as exc:  # the sweeper promotes it once the broker answers
            log.warning("promotion %d not dispatched now: %s", promotion_id, exc)
