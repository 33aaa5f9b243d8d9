"""Scoped allowlist entries: rule x (publisher | plugin) x optional file hash.

Entries are written once; a revocation is a record of its own. Every entry has an expiry
no further than the configured maximum, and names the rule version it was made against:
the policy applies it only while the rule is unchanged (scanner.suppressions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner.config import Settings
from scanner.findings import Category
from scanner.rulebook import load_rulebook, rule_version
from scanner.suppressions import NEVER_SUPPRESSED, Suppression, observation_digest
from service.audit import audit
from service.models import (
    AllowlistEntry,
    AllowlistRevocation,
    FindingRecord,
    Publisher,
    Scan,
    ScanFacts,
    StageRun,
    Submission,
    User,
    aware,
    iso,
    utcnow,
)
from service.review.accounts import Actor
from service.review.marks import mark_finding

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class AllowlistError(ValueError):
    """An entry that may not be made (scope, expiry, reason, rule) or revoked."""


def _require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise AllowlistError("only admins manage the allowlist")


def create(
    session: Session,
    settings: Settings,
    actor: Actor,
    *,
    rule_id: str,
    rule_version_: str,
    publisher_id: int,
    plugin_name: str | None,
    file_sha256: str | None,
    reason: str,
    expires_at: datetime,
    source_finding_id: int | None = None,
) -> AllowlistEntry:
    _require_admin(actor)
    now = utcnow()
    reason = reason.strip()
    if not reason:
        raise AllowlistError("an entry needs a reason")
    expires_at = aware(expires_at) or now
    if expires_at <= now:
        raise AllowlistError("the expiry must be in the future")
    if expires_at > now + timedelta(days=settings.allowlist_max_days):
        raise AllowlistError(f"the expiry may be at most {settings.allowlist_max_days} days away")
    if file_sha256 is not None and not SHA256_RE.match(file_sha256):
        raise AllowlistError("a file hash is 64 lowercase hex digits")
    if session.get(Publisher, publisher_id) is None:
        raise AllowlistError("no such publisher")
    entry = AllowlistEntry(
        rule_id=rule_id,
        rule_version=rule_version_,
        publisher_id=publisher_id,
        plugin_name=plugin_name or None,
        file_sha256=file_sha256,
        reason=reason[:2000],
        expires_at=expires_at,
        created_by=actor.user_id,
        source_finding_id=source_finding_id,
    )
    session.add(entry)
    session.flush()
    audit(
        session,
        actor.label,
        "allowlist.created",
        "allowlist",
        entry.id,
        {
            "rule_id": rule_id,
            "rule_version": rule_version_,
            "publisher_id": publisher_id,
            "plugin": plugin_name,
            "file_sha256": file_sha256,
            "expires_at": iso(expires_at),
            "reason": entry.reason,
        },
    )
    return entry


def finding_version(session: Session, settings: Settings, finding: FindingRecord) -> str:
    run = session.get(StageRun, finding.stage_run_id)
    version = run.version if run is not None else 0
    return rule_version(finding.rule_id, finding.stage, version, load_rulebook(settings.rules_dir))


def from_false_positive(
    session: Session,
    settings: Settings,
    actor: Actor,
    finding_id: int,
    *,
    scope: str,
    bind_file: bool,
    days: int,
    reason: str,
) -> AllowlistEntry:
    """Mark a finding false positive and allowlist its rule for the plugin or the
    publisher in one step (the file's hash binds the entry to those exact bytes)."""
    _require_admin(actor)
    finding = session.get(FindingRecord, finding_id)
    if finding is None:
        raise AllowlistError("no such finding")
    if Category(finding.category) in NEVER_SUPPRESSED:
        raise AllowlistError("coverage gaps and archive refusals cannot be allowlisted")
    submission_id = _submission_of(session, finding)
    submission = session.get(Submission, submission_id) if submission_id else None
    if submission is None:
        raise AllowlistError("the finding is not from a registry submission")
    if scope not in ("plugin", "publisher"):
        raise AllowlistError("scope is plugin or publisher")
    file_sha256 = _file_hash(session, finding) if bind_file else None
    if bind_file and not file_sha256:
        raise AllowlistError("the finding's file hash is unknown; allowlist without binding")
    mark_finding(session, finding_id, actor, "fp", reason)
    return create(
        session,
        settings,
        actor,
        rule_id=finding.rule_id,
        rule_version_=finding_version(session, settings, finding),
        publisher_id=submission.publisher_id,
        plugin_name=submission.plugin_name if scope == "plugin" else None,
        file_sha256=file_sha256 if bind_file else None,
        reason=reason,
        expires_at=utcnow() + timedelta(days=max(1, min(days, settings.allowlist_max_days))),
        source_finding_id=finding_id,
    )


def _file_hash(session: Session, finding: FindingRecord) -> str | None:
    """The sha256 of the finding's file as the scan saw it (from the scan's facts), or for
    a finding without a file (a runtime observation), the digest of the observation."""
    if not finding.path:
        return observation_digest(finding.rule_id, finding.message)
    facts = session.get(ScanFacts, finding.scan_id)
    if facts is None:
        return None
    return next((str(h) for p, h, *_ in facts.data.get("files", []) if p == finding.path), None)


def _submission_of(session: Session, finding: FindingRecord) -> str | None:
    scan = session.get(Scan, finding.scan_id)
    return scan.submission_id if scan is not None else None


def revoke(session: Session, actor: Actor, entry_id: int, reason: str) -> None:
    _require_admin(actor)
    if session.get(AllowlistEntry, entry_id) is None:
        raise AllowlistError("no such entry")
    if session.scalar(
        select(AllowlistRevocation.id).where(AllowlistRevocation.entry_id == entry_id)
    ):
        raise AllowlistError("the entry is revoked already")
    reason = reason.strip() or "revoked"
    session.add(AllowlistRevocation(entry_id=entry_id, revoked_by=actor.user_id, reason=reason))
    audit(session, actor.label, "allowlist.revoked", "allowlist", entry_id, {"reason": reason})


def suppressions_for(
    session: Session, publisher_id: int, plugin_name: str, now: datetime | None = None
) -> list[Suppression]:
    """Live entries whose scope covers this plugin (the version check is the policy's)."""
    now = now or utcnow()
    revoked = select(AllowlistRevocation.entry_id)
    rows = session.scalars(
        select(AllowlistEntry).where(
            AllowlistEntry.publisher_id == publisher_id,
            (AllowlistEntry.plugin_name.is_(None)) | (AllowlistEntry.plugin_name == plugin_name),
            AllowlistEntry.expires_at > now,
            AllowlistEntry.id.not_in(revoked),
        )
    )
    return [
        Suppression(f"allowlist:{e.id}", e.rule_id, e.rule_version, e.file_sha256) for e in rows
    ]


@dataclass(frozen=True)
class EntryView:
    id: int
    rule_id: str
    rule_version: str
    publisher: str
    plugin: str | None
    file_sha256: str | None
    reason: str
    expires_at: datetime
    created_by: str
    created_at: datetime
    state: str  # active | expired | revoked | void (the rule changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule_id": self.rule_id,
            "rule_version": self.rule_version,
            "publisher": self.publisher,
            "plugin": self.plugin,
            "file_sha256": self.file_sha256,
            "reason": self.reason,
            "expires_at": iso(self.expires_at),
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "state": self.state,
        }


def entries(session: Session, settings: Settings, limit: int = 500) -> list[EntryView]:
    now = utcnow()
    book = load_rulebook(settings.rules_dir)
    revoked = set(session.scalars(select(AllowlistRevocation.entry_id)))
    out = []
    for e, publisher, creator in session.execute(
        select(AllowlistEntry, Publisher.external_id, User.name)
        .join(Publisher, Publisher.id == AllowlistEntry.publisher_id)
        .join(User, User.id == AllowlistEntry.created_by)
        .order_by(AllowlistEntry.id.desc())
        .limit(limit)
    ):
        expires = aware(e.expires_at) or now
        info = book.get(e.rule_id)
        void = info is not None and not e.rule_version.endswith(":" + info.digest)
        state = (
            "revoked"
            if e.id in revoked
            else "expired"
            if expires <= now
            else "void"
            if void
            else "active"
        )
        out.append(
            EntryView(
                e.id,
                e.rule_id,
                e.rule_version,
                publisher,
                e.plugin_name,
                e.file_sha256,
                e.reason,
                expires,
                creator,
                aware(e.created_at) or now,
                state,
            )
        )
    return out
