"""Accepting work: registry submissions and CI pre-flight scans.

Everything a request creates is written in one transaction, and the scan is queued only
after that commits; if the queue is down, the sweeper queues it later (nothing is lost).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scanner.audit import audit
from scanner.fetch import allowed
from scanner.models import (
    ApiToken,
    Publisher,
    Scan,
    ScanKind,
    ScanStatus,
    Submission,
    SubmissionEvent,
    SubmissionStatus,
    utcnow,
)
from scanner.orchestration import bundle_from_file
from scanner.ratelimit import check_publisher, check_token
from scanner.services import Services

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^(?:@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]{0,213}$")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]{1,40})?$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
PUBLISHER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


class SubmissionError(ValueError):
    """The submission's fields are wrong; ``field`` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class SubmissionRequest:
    webhook_id: str
    publisher_id: str
    plugin_name: str
    plugin_version: str
    callback_url: str | None = None
    bundle_url: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Accepted:
    submission_id: str
    scan_id: str
    status: str
    created: bool


def validate(req: SubmissionRequest, svc: Services, has_file: bool) -> None:
    if not PUBLISHER_RE.match(req.publisher_id):
        raise SubmissionError("publisher_id", "must be 1-200 letters, digits, . _ : -")
    if not NAME_RE.match(req.plugin_name):
        raise SubmissionError("name", "must be a lowercase package name")
    if not VERSION_RE.match(req.plugin_version):
        raise SubmissionError("version", "must be a semantic version (1.2.3)")
    if has_file == bool(req.bundle_url):
        raise SubmissionError("bundle", "give the bundle either inline or as bundle_url, not both")
    if req.bundle_url is not None:
        if not allowed(req.bundle_url, svc.settings.registry_origin_list):
            raise SubmissionError("bundle_url", "is not on a configured registry origin")
        if not req.sha256 or not SHA256_RE.match(req.sha256):
            raise SubmissionError("sha256", "a bundle_url needs the bundle's sha256 (hex)")
    if req.callback_url is not None and not allowed(
        req.callback_url, svc.settings.callback_origin_list
    ):
        raise SubmissionError("callback_url", "is not on a configured callback origin")


def accept_submission(svc: Services, req: SubmissionRequest, bundle: Path | None) -> Accepted:
    """Record a registry submission (idempotent on webhook-id and on name, version, sha256)."""
    validate(req, svc, bundle is not None)
    with svc.session() as s:
        existing = _existing(s, req)
    if existing is not None:
        return existing
    with svc.session() as s:
        # Refuse before storing anything, so a limited publisher leaves no blob behind.
        known = s.scalar(select(Publisher).where(Publisher.external_id == req.publisher_id))
        if known is not None:
            check_publisher(s, known, svc.settings.publisher_daily_limit)
    if bundle is not None:
        sha256, _ = bundle_from_file(svc, bundle)
        if req.sha256 and req.sha256 != sha256:
            raise SubmissionError("sha256", "does not match the uploaded bundle")
    else:
        assert req.sha256 is not None
        sha256 = req.sha256
    try:
        accepted = _create(svc, req, sha256, bundle is not None)
    except IntegrityError:
        # A concurrent delivery of the same webhook won the race: answer with its record.
        with svc.session() as s:
            found = _existing(s, req, sha256)
        if found is None:
            raise
        return found
    _queue(svc, accepted.scan_id)
    return accepted


def publisher_named(s: Session, external_id: str, actor: str) -> Publisher:
    """The publisher the registry calls ``external_id``, recorded on first sight."""
    publisher = s.scalar(select(Publisher).where(Publisher.external_id == external_id))
    if publisher is None:
        publisher = Publisher(external_id=external_id)
        s.add(publisher)
        s.flush()
        audit(s, actor, "publisher.created", "publisher", publisher.id)
    return publisher


def _existing(s: Session, req: SubmissionRequest, sha256: str | None = None) -> Accepted | None:
    sub = s.scalar(select(Submission).where(Submission.webhook_id == req.webhook_id))
    sha = sha256 or req.sha256
    if sub is None and sha:
        sub = s.scalar(
            select(Submission)
            .join(Publisher)
            .where(
                Publisher.external_id == req.publisher_id,
                Submission.plugin_name == req.plugin_name,
                Submission.plugin_version == req.plugin_version,
                Submission.bundle_sha256 == sha,
            )
        )
    if sub is None:
        return None
    scan_id = s.scalar(
        select(Scan.id).where(Scan.submission_id == sub.id).order_by(Scan.created_at.desc())
    )
    return Accepted(sub.id, scan_id or "", sub.status, created=False)


def _create(svc: Services, req: SubmissionRequest, sha256: str, stored: bool) -> Accepted:
    with svc.session() as s:
        publisher = publisher_named(s, req.publisher_id, "registry")
        check_publisher(s, publisher, svc.settings.publisher_daily_limit)
        sub = Submission(
            publisher_id=publisher.id,
            plugin_name=req.plugin_name,
            plugin_version=req.plugin_version,
            bundle_sha256=sha256,
            bundle_url=req.bundle_url,
            callback_url=req.callback_url,
            webhook_id=req.webhook_id,
            status=SubmissionStatus.RECEIVED,
        )
        s.add(sub)
        s.flush()
        s.add(SubmissionEvent(submission_id=sub.id, to_status="received", actor="registry"))
        scan = Scan(
            kind=ScanKind.SUBMISSION,
            submission_id=sub.id,
            bundle_sha256=sha256 if stored else None,
            bundle_name=f"{req.plugin_name}-{req.plugin_version}.bundle",
            status=ScanStatus.QUEUED,
        )
        s.add(scan)
        s.flush()
        audit(
            s, "registry", "submission.received", "submission", sub.id, {"webhook": req.webhook_id}
        )
        return Accepted(sub.id, scan.id, sub.status, created=True)


def start_preflight(svc: Services, token_id: int, bundle: Path, filename: str) -> str:
    """A CI scan: never enters the reviewer queue, and its report expires."""
    with svc.session() as s:
        check_token(s, s.get_one(ApiToken, token_id), svc.settings.token_hourly_limit)
    sha256, _ = bundle_from_file(svc, bundle)
    with svc.session() as s:
        token = s.get_one(ApiToken, token_id)
        check_token(s, token, svc.settings.token_hourly_limit)
        scan = Scan(
            kind=ScanKind.PREFLIGHT,
            token_id=token_id,
            bundle_sha256=sha256,
            bundle_name=_safe_name(filename),
            status=ScanStatus.QUEUED,
            expires_at=utcnow() + timedelta(hours=svc.settings.preflight_ttl_hours),
        )
        s.add(scan)
        s.flush()
        audit(s, f"token:{token_id}", "preflight.received", "scan", scan.id)
        scan_id = scan.id
    _queue(svc, scan_id)
    return scan_id


def _safe_name(filename: str) -> str:
    name = Path(filename.replace("\\", "/")).name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100]
    return name if name and name not in {".", ".."} else "bundle.zip"


def _queue(svc: Services, scan_id: str) -> None:
    try:
        svc.jobs.start_scan(scan_id)
    except Exception as exc:
        # Accepted and committed: the sweeper queues it once the broker is back.
        log.warning("scan %s accepted but not queued yet: %s", scan_id, exc)
