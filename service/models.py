"""The service's records: submissions, bundles, scans and everything a scan produced.

Findings, stage runs, decisions, events and the audit log are append-only history: no
foreign key cascades a delete into them, and the audit log refuses updates and deletes.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from service.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    # Random, so one CI token cannot walk another's scans by counting.
    return uuid.uuid4().hex


def aware(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; everything we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def iso(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a Z, as the API shows times."""
    value = aware(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


class SubmissionStatus(enum.StrEnum):
    RECEIVED = "received"
    SCANNING = "scanning"
    AWAITING_REVIEW = "awaiting_review"
    REJECTED = "rejected"
    APPROVED = "approved"
    PROMOTED = "promoted"
    # A reviewer asked the publisher for a new version; this one leaves the queue for good.
    CHANGES_REQUESTED = "changes_requested"
    # An admin (or the kill switch) withdrew an approved or promoted version: the CDN
    # answers 410 for its files. Only an explicit, audited un-yank brings it back.
    YANKED = "yanked"


# The only moves a submission can make; anything else is a bug, refused loudly.
TRANSITIONS: dict[SubmissionStatus, frozenset[SubmissionStatus]] = {
    SubmissionStatus.RECEIVED: frozenset({SubmissionStatus.SCANNING, SubmissionStatus.REJECTED}),
    SubmissionStatus.SCANNING: frozenset(
        {SubmissionStatus.AWAITING_REVIEW, SubmissionStatus.REJECTED}
    ),
    SubmissionStatus.AWAITING_REVIEW: frozenset(
        {
            SubmissionStatus.APPROVED,
            SubmissionStatus.REJECTED,
            SubmissionStatus.SCANNING,
            SubmissionStatus.CHANGES_REQUESTED,
        }
    ),
    SubmissionStatus.REJECTED: frozenset({SubmissionStatus.SCANNING}),
    SubmissionStatus.APPROVED: frozenset(
        {SubmissionStatus.PROMOTED, SubmissionStatus.REJECTED, SubmissionStatus.YANKED}
    ),
    SubmissionStatus.PROMOTED: frozenset({SubmissionStatus.YANKED}),
    SubmissionStatus.CHANGES_REQUESTED: frozenset(),
    # Un-yank: approved again, then published again from the scanned tree.
    SubmissionStatus.YANKED: frozenset({SubmissionStatus.APPROVED}),
}


class ScanStatus(enum.StrEnum):
    QUEUED = "queued"
    SCANNING = "scanning"
    COMPLETED = "completed"
    EXPIRED = "expired"


class ScanKind(enum.StrEnum):
    SUBMISSION = "submission"
    PREFLIGHT = "preflight"
    # A promoted version scanned again because the rules or the advisories changed; it
    # never moves the submission's status, and runs on the low-priority queues.
    RETRO = "retro"


# Stage run states before a StageStatus (ok/error/timeout/skipped) is recorded.
STAGE_PENDING = "pending"
STAGE_RUNNING = "running"


class Publisher(Base):
    __tablename__ = "publishers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The registry's own id for the publisher.
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    # Submissions a day; None means the deployment's default.
    daily_limit: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # new | verified | trusted: set by admins (audited); only trusted ones may be auto-approved.
    trust: Mapped[str] = mapped_column(String(12), default="new", server_default="new")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # sha256 of the whole token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, so a person can tell tokens apart in lists and logs.
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[str] = mapped_column(String(200))  # space-separated
    publisher_id: Mapped[int | None] = mapped_column(ForeignKey("publishers.id"))
    hourly_limit: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The reviewer a review token acts for: its actions are audited under that name.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())


class Bundle(Base):
    """Bytes as uploaded, stored once however many submissions or scans name them."""

    __tablename__ = "bundles"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    blob_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Submission(Base):
    __tablename__ = "submissions"
    __table_args__ = (
        UniqueConstraint(
            "publisher_id",
            "plugin_name",
            "plugin_version",
            "bundle_sha256",
            name="uq_submissions_identity",
        ),
        Index("ix_submissions_publisher_created", "publisher_id", "created_at"),
        # A plugin version is immutable across publishers: the webhook looks it up.
        Index("ix_submissions_plugin_version", "plugin_name", "plugin_version"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publishers.id"))
    plugin_name: Mapped[str] = mapped_column(String(214))
    plugin_version: Mapped[str] = mapped_column(String(64))
    # Known at intake for inline bundles, announced by the registry for bundle_url.
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    bundle_url: Mapped[str | None] = mapped_column(Text)
    callback_url: Mapped[str | None] = mapped_column(Text)
    # The registry's webhook-id: a redelivered webhook finds its submission by it.
    webhook_id: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(20), default=SubmissionStatus.RECEIVED)
    verdict: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    publisher: Mapped[Publisher] = relationship()
    events: Mapped[list[SubmissionEvent]] = relationship(
        order_by="SubmissionEvent.id", back_populates="submission"
    )


class SubmissionEvent(Base):
    """One recorded transition of a submission's status."""

    __tablename__ = "submission_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    submission: Mapped[Submission] = relationship(back_populates="events")


class Scan(Base):
    """One run of the pipeline over one bundle."""

    __tablename__ = "scans"
    __table_args__ = (
        Index("ix_scans_status_updated", "status", "updated_at"),
        Index("ix_scans_token_created", "token_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(12))
    submission_id: Mapped[str | None] = mapped_column(ForeignKey("submissions.id"), index=True)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    bundle_sha256: Mapped[str | None] = mapped_column(ForeignKey("bundles.sha256"))
    bundle_name: Mapped[str] = mapped_column(String(255), default="bundle.zip")
    status: Mapped[str] = mapped_column(String(12), default=ScanStatus.QUEUED)
    verdict: Mapped[str | None] = mapped_column(String(10))
    risk_score: Mapped[int | None] = mapped_column(Integer)
    ruleset: Mapped[str | None] = mapped_column(String(80))
    tool_versions: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The JSON report contract (docs/report-format.md), kept whole once the scan completes.
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Why a scan could not run at all (bundle unfetchable...), for the report.
    error: Mapped[str | None] = mapped_column(Text)
    # The canonical repack of exactly the tree intake admitted (scanner/repack.py), by
    # sha256 in blob storage: what every stage and the conclusion read, and what is
    # published later; never the uploaded bytes again. None when intake refused.
    repack_sha256: Mapped[str | None] = mapped_column(String(64))
    repack_size: Mapped[int | None] = mapped_column(BigInteger)
    # sha256 over the admitted tree's sorted "path, size, sha256" lines.
    tree_sha256: Mapped[str | None] = mapped_column(String(64))
    # The advisory database the scan was judged with (scanner.advisories.store
    # .snapshot_identity); with ``ruleset`` it says whether the scan is stale.
    advisories: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StageRun(Base):
    __tablename__ = "stage_runs"
    __table_args__ = (UniqueConstraint("scan_id", "stage", name="uq_stage_runs_scan_stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id"))
    stage: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer, default=0)
    # pending, running, then a StageStatus value once recorded (never changed after).
    status: Mapped[str] = mapped_column(String(10), default=STAGE_PENDING)
    # Incremented before each start and committed first: a bundle that kills its worker
    # every time shows up here and is quarantined instead of redelivered forever.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    coverage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    tool_versions: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The stage's raw output beside its parsed findings.
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FindingRecord(Base):
    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id"), index=True)
    stage_run_id: Mapped[int] = mapped_column(ForeignKey("stage_runs.id"), index=True)
    stage: Mapped[str] = mapped_column(String(40))
    rule_id: Mapped[str] = mapped_column(String(120))
    category: Mapped[str] = mapped_column(String(40))
    severity: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(Text)
    line: Mapped[int | None] = mapped_column(Integer)
    evidence: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(12))
    details: Mapped[list[Any] | None] = mapped_column(JSON)


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("scan_id", "name", name="uq_artifacts_scan_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id"))
    stage_run_id: Mapped[int | None] = mapped_column(ForeignKey("stage_runs.id"))
    name: Mapped[str] = mapped_column(String(120))
    media_type: Mapped[str] = mapped_column(String(80))
    blob_key: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Decision(Base):
    """A verdict with its reasons: the policy's (automatic), a reviewer's, or the system's
    (auto-approval). A person's or the system's decision names the exact bytes and rules
    it was made on."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id"), index=True)
    submission_id: Mapped[str | None] = mapped_column(ForeignKey("submissions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12))  # automatic | reviewer
    verdict: Mapped[str] = mapped_column(String(10))
    risk_score: Mapped[int | None] = mapped_column(Integer)
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # approve | reject | request_changes | rescan | yank (None for the policy's verdicts).
    action: Mapped[str | None] = mapped_column(String(20))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # What was decided on: the scan's bundle, its ruleset and (once scans record it) the
    # canonical digest of the scanned tree.
    bundle_sha256: Mapped[str | None] = mapped_column(String(64))
    ruleset: Mapped[str | None] = mapped_column(String(80))
    tree_sha256: Mapped[str | None] = mapped_column(String(64))
    # The message for the publisher (request changes, reject), sent in the callback.
    message: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    """Who did what to which record; written once, never changed (see the guard below)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(80))
    subject_type: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class WebhookDelivery(Base):
    """One event for the registry, delivered until it succeeds or the window closes."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Our webhook-id: stable across retries, so the registry can deduplicate.
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(40))
    submission_id: Mapped[str | None] = mapped_column(ForeignKey("submissions.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    # The exact bytes signed and sent, the same on every attempt.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float)


class SweeperState(Base):
    """What the sweeper remembers between runs (on whichever worker each runs)."""

    __tablename__ = "sweeper_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # When the last sweep ran: a long gap means the broker (which carries the beat's
    # sweeps) was away, and messages sent before may be gone.
    last_sweep_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The broker's identity at the last sweep (Redis's run id): a change is a restart.
    broker_identity: Mapped[str | None] = mapped_column(String(100))


class WorkerHeartbeat(Base):
    """A Celery worker that said, at ``seen_at``, which queues it serves and how its browser is.

    /readyz reads these: the browser runs on the workers' hosts, not the web server's.
    """

    __tablename__ = "worker_heartbeats"

    hostname: Mapped[str] = mapped_column(String(200), primary_key=True)
    queues: Mapped[str] = mapped_column(String(200))  # space-separated
    # The browser's own version line, or why it would not run.
    browser: Mapped[str | None] = mapped_column(String(200))
    browser_error: Mapped[str | None] = mapped_column(Text)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class User(Base):
    """A reviewer or an admin of the desk."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(12))  # reviewer | admin
    # argon2id; the one-time password's hash until the user sets their own.
    password_hash: Mapped[str] = mapped_column(Text)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped on password change or disable: every older session stops working.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginAttempt(Base):
    """Every sign-in attempt, kept for throttling and for the audit of who tried what."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_name_at", "name", "at"),
        Index("ix_login_attempts_ip_at", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    ok: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReviewItem(Base):
    """A submission as the queue sees it: what it is sorted and filtered by, kept beside
    the submission so a queue page reads one indexed table, not every report."""

    __tablename__ = "review_items"
    __table_args__ = (
        Index("ix_review_items_status_due", "status", "due_at", "risk_score"),
        Index("ix_review_items_plugin", "publisher_id", "plugin_name"),
    )

    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    # The scan the item was last concluded from (a rescan replaces it).
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id"))
    # The submission's status, kept in step by service.audit.transition.
    status: Mapped[str] = mapped_column(String(20))
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publishers.id"))
    plugin_name: Mapped[str] = mapped_column(String(214))
    plugin_version: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str | None] = mapped_column(String(10))
    risk_score: Mapped[int] = mapped_column(Integer, default=0)
    # Categories of the enabled findings, space-separated, for the filter and the list.
    categories: Mapped[str] = mapped_column(String(500), default="")
    # The policy's reasons (the first few), shown as "why is this here".
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_overridden: Mapped[bool] = mapped_column(Boolean, default=False)
    # No approved version of this plugin came before (never auto-approved).
    first_version: Mapped[bool] = mapped_column(Boolean, default=True)
    claimed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    claim_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # A retro-scan of the promoted version judged it worse: flagged (waiting for a person,
    # with the delta and a pre-filled yank), yanked (by the kill switch or a person) or
    # cleared (a later rescan was no worse than the approved scan).
    retro_state: Mapped[str | None] = mapped_column(String(12), index=True)
    retro_scan_id: Mapped[str | None] = mapped_column(ForeignKey("scans.id"))
    # Only what the new rules found: findings of the retro scan beyond the approved scan's.
    retro_delta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    retro_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ScanFacts(Base):
    """What a scan saw, for the risk delta: files with hashes, origins, dependencies."""

    __tablename__ = "scan_facts"

    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id"), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CannedReason(Base):
    """A rejection reason admins keep as data; a decision copies its text when made."""

    __tablename__ = "canned_reasons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    # The text the publisher gets through the registry callback.
    body: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FindingMark(Base):
    """A reviewer's judgement of one finding: true or false positive (latest one counts)."""

    __tablename__ = "finding_marks"
    __table_args__ = (Index("ix_finding_marks_rule", "rule_id", "finding_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id"), index=True)
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id"))
    rule_id: Mapped[str] = mapped_column(String(120))
    mark: Mapped[str] = mapped_column(String(4))  # tp | fp
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AllowlistEntry(Base):
    """A scoped suppression of one rule: written once; revoked by a record of its own."""

    __tablename__ = "allowlist_entries"
    __table_args__ = (Index("ix_allowlist_scope", "publisher_id", "rule_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(120))
    # The rule's version when the entry was made: a changed rule voids the entry.
    rule_version: Mapped[str] = mapped_column(String(120))
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publishers.id"))
    # None: every plugin of the publisher.
    plugin_name: Mapped[str | None] = mapped_column(String(214))
    # None: any file; else only the file with exactly these bytes.
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The false-positive finding it was made from, when made in one step from a mark.
    source_finding_id: Mapped[int | None] = mapped_column(ForeignKey("findings.id"))


class AllowlistRevocation(Base):
    __tablename__ = "allowlist_revocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("allowlist_entries.id"), unique=True)
    revoked_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DeskSwitch(Base):
    """A desk-wide switch admins turn (auto-approval); every change is audited."""

    __tablename__ = "desk_switches"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_by: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CdnPlugin(Base):
    """A plugin name on the CDN and the publisher it belongs to (the first to promote it).

    Its row is also the lock under which the plugin's index.json is rebuilt and written.
    """

    __tablename__ = "cdn_plugins"

    name: Mapped[str] = mapped_column(String(214), primary_key=True)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publishers.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PromotionState(enum.StrEnum):
    PENDING = "pending"  # approved; not (yet) published
    PUBLISHED = "published"  # every file verified in storage, the manifest written
    FAILED = "failed"  # could not be published; what was uploaded was removed


class Promotion(Base):
    """One plugin version on its way to, or on, the CDN: exactly the scanned tree.

    A plugin version is promoted once, ever (the unique constraint): the same version
    with other bytes can never overwrite it, whatever races past the webhook's check.
    """

    __tablename__ = "promotions"
    __table_args__ = (
        UniqueConstraint("plugin_name", "plugin_version", name="uq_promotions_plugin_version"),
        Index("ix_promotions_synced_updated", "store_synced", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), unique=True)
    # The scan and decision the approval was bound to: what is published is its tree.
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id"))
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"))
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publishers.id"))
    plugin_name: Mapped[str] = mapped_column(String(214))
    plugin_version: Mapped[str] = mapped_column(String(64))
    repack_sha256: Mapped[str] = mapped_column(String(64))
    tree_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(12), default=PromotionState.PENDING)
    # False while storage must still be brought in line with this row (a new promotion,
    # a yank, an un-yank); the promotion task sets it, the sweeper re-dispatches it.
    store_synced: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Every published file: path, size, sha256, SRI, content type (the manifest's list).
    files: Mapped[list[Any] | None] = mapped_column(JSON)
    entry: Mapped[str | None] = mapped_column(Text)
    csp: Mapped[str | None] = mapped_column(Text)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    # Files served by the origin (cache misses behind a CDN): how much a version is used,
    # for the retro-scan order.
    hits: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    yanked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    yank_reason: Mapped[str | None] = mapped_column(Text)
    yanked_by: Mapped[str | None] = mapped_column(String(200))


class YankEvent(Base):
    """A yank or un-yank, written once; the blocklist's version is the newest event's id."""

    __tablename__ = "yank_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    promotion_id: Mapped[int] = mapped_column(ForeignKey("promotions.id"), index=True)
    action: Mapped[str] = mapped_column(String(8))  # yank | unyank
    # admin | kill-switch
    kind: Mapped[str] = mapped_column(String(12))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CdnDocument(Base):
    """A service document in CDN storage (the blocklist) and the serial last written, so
    two writers racing can never put an older one back."""

    __tablename__ = "cdn_documents"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    serial: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    written_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RetroGeneration(Base):
    """The rules and advisories promoted versions are being brought up to."""

    __tablename__ = "retro_generations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ruleset: Mapped[str] = mapped_column(String(80))
    advisories: Mapped[str] = mapped_column(String(80))
    # rules | advisories | rules+advisories | manual
    reason: Mapped[str] = mapped_column(String(40))
    planned: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RetroItem(Base):
    """One promoted version to rescan for a generation, in priority order."""

    __tablename__ = "retro_items"
    __table_args__ = (
        UniqueConstraint("generation_id", "submission_id", name="uq_retro_items_generation"),
        Index("ix_retro_items_state_rank", "state", "rank"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("retro_generations.id"))
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    # Lower first: the newest version of each plugin by use, then the older ones.
    rank: Mapped[int] = mapped_column(Integer)
    # planned | running | done | skipped
    state: Mapped[str] = mapped_column(String(10), default="planned")
    scan_id: Mapped[str | None] = mapped_column(ForeignKey("scans.id"))
    # worse | same | better | skipped (no longer promoted), once done
    outcome: Mapped[str | None] = mapped_column(String(10))
    planned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AppendOnlyError(RuntimeError):
    """Something tried to change or delete a history record."""


APPEND_ONLY = (
    AuditEntry,
    SubmissionEvent,
    Decision,
    FindingRecord,
    FindingMark,
    AllowlistEntry,
    AllowlistRevocation,
    LoginAttempt,
    YankEvent,
)


@event.listens_for(Session, "before_flush")
def _refuse_history_changes(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, APPEND_ONLY) and (obj in session.deleted or session.is_modified(obj)):
            raise AppendOnlyError(f"{type(obj).__name__} records are append-only")
