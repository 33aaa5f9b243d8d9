"""Yank and un-yank: withdraw a version from the CDN at once, and (explicitly) bring it back.

The yank is one transaction (the promotion marked, an append-only yank event, a decision,
the submission moved to ``yanked``, the audit entry, the ``submission.yanked`` callback):
from its commit on, the origin answers 410 for the version's files, because it reads the
yank from the records on every request. Storage follows in the promotion's sync
(``withdraw``): the files are deleted, the manifest and the index say ``yanked``, the
blocklist lists it, and the purge hooks are called.

A yanked version is never published again by a retry or a rescan: ``sync`` withdraws
whatever a late upload wrote, and only ``unyank``, an admin's audited action, clears it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import audit, transition
from service.callbacks import enqueue_event
from service.cdn import blocklist, index, purge
from service.cdn.manifest import ManifestFacts, PublishedFile, payload, signed
from service.cdn.paths import BLOCKLIST_KEY, SHORT_LIVED, manifest_key
from service.cdn.promote import Claim, delete_files, dispatch
from service.cdn.purge import url_of
from service.cdn.storage import sha256_hex
from service.models import (
    Decision,
    Promotion,
    ReviewItem,
    Scan,
    Submission,
    SubmissionStatus,
    YankEvent,
    iso,
    utcnow,
)
from service.services import Services

log = logging.getLogger(__name__)
YANKABLE = (SubmissionStatus.APPROVED.value, SubmissionStatus.PROMOTED.value)
MAX_REASON = 2000
KILL_SWITCH = "kill-switch"


class YankError(Exception):
    """A yank or un-yank that cannot be made; ``status`` is the HTTP status it maps to."""

    status = 409
    code = "conflict"


class YankNotFoundError(YankError):
    status = 404
    code = "not-found"


class InvalidYankError(YankError):
    status = 422
    code = "invalid-yank"


@dataclass
class YankOutcome:
    decision_id: int
    status: str
    promotion_id: int | None
    deliveries: list[int] = field(default_factory=list)


def _latest_scan(s: Session, submission_id: str) -> Scan:
    scan = s.scalar(
        select(Scan)
        .where(Scan.submission_id == submission_id)
        .order_by(Scan.created_at.desc(), Scan.id.desc())
        .limit(1)
    )
    if scan is None:
        raise YankNotFoundError("the submission has no scan")
    return scan


def _decision(
    s: Session, submission: Submission, action: str, actor: str, why: str, user_id: int | None
) -> Decision:
    scan = _latest_scan(s, submission.id)
    decision = Decision(
        scan_id=scan.id,
        submission_id=submission.id,
        kind="system" if actor == KILL_SWITCH else "reviewer",
        verdict="reject" if action == "yank" else "pass",
        risk_score=scan.risk_score,
        reasons=[{"code": action, "title": action.capitalize(), "text": why}],
        actor=actor,
        action=action,
        user_id=user_id,
        bundle_sha256=scan.bundle_sha256,
        ruleset=scan.ruleset,
        tree_sha256=scan.tree_sha256,
        message=why,
    )
    s.add(decision)
    s.flush()
    return decision


def yank(
    svc: Services, submission_id: str, actor: str, why: str, user_id: int | None = None
) -> YankOutcome:
    """Withdraw an approved or promoted version now; storage and caches follow."""
    why = why.strip()[:MAX_REASON]
    if not why:
        raise InvalidYankError("say why the version is withdrawn (it is published)")
    with svc.session() as s:
        submission = s.get(Submission, submission_id, with_for_update=True)
        if submission is None:
            raise YankNotFoundError("no such submission")
        if submission.status not in YANKABLE:
            raise YankError(
                f"the submission is {submission.status}: only an approved or"
                " promoted version can be yanked"
            )
        p = s.scalar(
            select(Promotion).where(Promotion.submission_id == submission_id).with_for_update()
        )
        now = utcnow()
        if p is not None:
            p.yanked_at, p.yank_reason, p.yanked_by = now, why, actor
            p.store_synced, p.updated_at = False, now
            s.add(
                YankEvent(
                    promotion_id=p.id, action="yank", kind=_kind(actor), actor=actor, reason=why
                )
            )
        decision = _decision(s, submission, "yank", actor, why, user_id)
        transition(s, submission, SubmissionStatus.YANKED, actor, why)
        item = s.get(ReviewItem, submission_id, with_for_update=True)
        if item is not None and item.retro_state == "flagged":
            item.retro_state = "yanked"
        audit(
            s,
            actor,
            "cdn.yank",
            "submission",
            submission_id,
            {"why": why, "decision_id": decision.id, "promotion_id": p.id if p else None},
        )
        event = enqueue_event(
            s, submission, "submission.yanked", _yanked_data(svc, s, p, why, actor)
        )
        s.flush()
        outcome = YankOutcome(
            decision.id,
            SubmissionStatus.YANKED.value,
            p.id if p else None,
            [event.id] if event is not None else [],
        )
    _after(svc, outcome)
    return outcome


def unyank(
    svc: Services, submission_id: str, actor: str, why: str, user_id: int | None = None
) -> YankOutcome:
    """An admin's explicit return of a yanked version: approved again, then republished
    from the scanned tree (verified again) by the promotion's sync."""
    why = why.strip()[:MAX_REASON]
    if not why:
        raise InvalidYankError("say why the version comes back")
    with svc.session() as s:
        submission = s.get(Submission, submission_id, with_for_update=True)
        if submission is None:
            raise YankNotFoundError("no such submission")
        if submission.status != SubmissionStatus.YANKED:
            raise YankError(f"the submission is {submission.status}, not yanked")
        p = s.scalar(
            select(Promotion).where(Promotion.submission_id == submission_id).with_for_update()
        )
        if p is not None:
            p.yanked_at = p.yank_reason = p.yanked_by = None
            p.store_synced, p.attempts, p.updated_at = False, 0, utcnow()
            s.add(
                YankEvent(promotion_id=p.id, action="unyank", kind="admin", actor=actor, reason=why)
            )
        decision = _decision(s, submission, "unyank", actor, why, user_id)
        transition(s, submission, SubmissionStatus.APPROVED, actor, why)
        audit(
            s,
            actor,
            "cdn.unyank",
            "submission",
            submission_id,
            {"why": why, "decision_id": decision.id},
        )
        outcome = YankOutcome(decision.id, SubmissionStatus.APPROVED.value, p.id if p else None)
    _after(svc, outcome)
    return outcome


def _kind(actor: str) -> str:
    return KILL_SWITCH if actor == KILL_SWITCH else "admin"


def _after(svc: Services, outcome: YankOutcome) -> None:
    dispatch(svc, outcome.deliveries)
    if outcome.promotion_id is not None:
        try:
            svc.jobs.promote(outcome.promotion_id)
        except Exception as exc:  # the sweeper syncs it once the broker answers
            log.warning("promotion %d not synced now: %s", outcome.promotion_id, exc)


def _yanked_data(
    svc: Services, s: Session, p: Promotion | None, why: str, actor: str
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": SubmissionStatus.YANKED.value,
        "reason": why,
        "by": KILL_SWITCH if actor == KILL_SWITCH else "admin",
        "blocklist_url": url_of(svc.settings, BLOCKLIST_KEY),
    }
    if p is not None:
        paths = [str(f["path"]) for f in (p.files or [])]
        data["plugin"], data["version"] = p.plugin_name, p.plugin_version
        data["urls"] = purge.urls_of(svc.settings, p.plugin_name, p.plugin_version, paths)
        data["scan_id"] = p.scan_id
    return data


def withdraw(svc: Services, c: Claim) -> str:
    """Make storage say what a yank says: no files, a yanked manifest and index, the
    blocklist; then purge the caches."""
    with svc.session() as s:
        p = s.get_one(Promotion, c.id)
        paths = [str(f["path"]) for f in (p.files or [])]
    delete_files(svc, c.plugin, c.version, paths, manifest=c.published_at is None)
    deliveries: list[int] = []
    with svc.session() as s:
        p = s.get_one(Promotion, c.id, with_for_update=True)
        if p.yanked_at is None:
            return "un-yanked meanwhile"  # its own sync republishes
        if p.published_at is not None:
            _rewrite_manifest(svc, s, p)
            index.write(s, svc.cdn, p.plugin_name)
            deliveries = [
                d.id
                for d in purge.enqueue(
                    s, svc.settings, p.submission_id, p.plugin_name, p.plugin_version, paths, "yank"
                )
            ]
        p.store_synced, p.updated_at = True, utcnow()
    blocklist.publish(svc)
    dispatch(svc, deliveries)
    return "withdrawn"


def _rewrite_manifest(svc: Services, s: Session, p: Promotion) -> None:
    """The version's manifest again, signed, now saying when and why it was yanked."""
    scan = s.get_one(Scan, p.scan_id)
    assert p.published_at is not None
    facts = ManifestFacts(
        plugin=p.plugin_name,
        version=p.plugin_version,
        entry=p.entry,
        csp=p.csp,
        scan_id=p.scan_id,
        ruleset=scan.ruleset,
        advisories=scan.advisories,
        decision_id=p.decision_id,
        tree_sha256=p.tree_sha256,
        repack_sha256=p.repack_sha256,
        published_at=p.published_at,
    )
    files = [PublishedFile.from_dict(f) for f in (p.files or []) if "integrity" in f]
    yanked = {"at": iso(p.yanked_at), "reason": p.yank_reason}
    data = signed(svc.signer, payload(facts, files, utcnow(), yanked))
    svc.cdn.put(
        manifest_key(p.plugin_name, p.plugin_version), data, "application/json", SHORT_LIVED, {}
    )
    p.manifest_sha256 = sha256_hex(data)
