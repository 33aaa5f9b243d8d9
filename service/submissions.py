"""Accepting work: registry submissions and CI pre-flight scans.

Everything a request creates is written in one transaction, and the scan is queued only
after that commits; if the queue is down, the sweeper queues it later (nothing is lost).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Connection, and_, bindparam, func, insert, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scanner.db import insert_if_absent
from scanner.semver import is_plugin_version
from service import bundles
from service.audit import audit
from service.blobs import sha256_file
from service.fetch import allowed
from service.models import (
    ApiToken,
    CdnPlugin,
    Publisher,
    Scan,
    ScanKind,
    ScanStatus,
    Submission,
    SubmissionEvent,
    SubmissionStatus,
    new_id,
    utcnow,
)
from service.ratelimit import DAY, Quota, check_token
from service.services import Services

log = logging.getLogger(__name__)

# Every pattern here is applied with fullmatch: with match and "$", "pub-1\n" passed as a
# publisher of its own (and got a fresh rate-limit quota).
NAME_RE = re.compile(r"(?:@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*")
MAX_NAME_LENGTH = 214  # npm's limit, scope included
SHA256_RE = re.compile(r"[0-9a-f]{64}")
PUBLISHER_RE = re.compile(r"[a-z0-9][a-z0-9._:-]{0,199}")


class SubmissionError(ValueError):
    """The submission's fields are wrong; ``field`` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class VersionTakenError(SubmissionError):
    """The plugin version exists with other bytes, or the name is another publisher's on
    the CDN: a version is immutable (409), whoever submits it."""


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


def normalise_publisher(external_id: str) -> str:
    """The registry's publisher id as stored: ids differ by more than letter case.

    ``Pub-1`` and ``pub-1`` are one publisher, with one quota and one token scope.
    """
    return external_id.lower()


def validate(req: SubmissionRequest, svc: Services, has_file: bool) -> None:
    if not PUBLISHER_RE.fullmatch(req.publisher_id):
        raise SubmissionError("publisher_id", "must be 1-200 letters, digits, . _ : -")
    if len(req.plugin_name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(req.plugin_name):
        raise SubmissionError("name", "must be a lowercase package name")
    if not is_plugin_version(req.plugin_version):
        raise SubmissionError("version", "must be a semantic version (1.2.3), no build metadata")
    if has_file == bool(req.bundle_url):
        raise SubmissionError("bundle", "give the bundle either inline or as bundle_url, not both")
    if req.bundle_url is not None:
        if not allowed(req.bundle_url, svc.settings.registry_origin_list):
            raise SubmissionError("bundle_url", "is not on a configured registry origin")
        if not req.sha256 or not SHA256_RE.fullmatch(req.sha256):
            raise SubmissionError("sha256", "a bundle_url needs the bundle's sha256 (hex)")
    if req.callback_url is not None and not allowed(
        req.callback_url, svc.settings.callback_origin_list
    ):
        raise SubmissionError("callback_url", "is not on a configured callback origin")


def accept_submission(svc: Services, req: SubmissionRequest, bundle: Path | None) -> Accepted:
    """Record a registry submission (idempotent on webhook-id and on name, version, sha256).

    One transaction: a duplicate or a refused request writes nothing, and the bundle's
    bytes are stored before the commit that names them.
    """
    req = replace(req, publisher_id=normalise_publisher(req.publisher_id))
    validate(req, svc, bundle is not None)
    sha256 = sha256_file(bundle) if bundle is not None else req.sha256
    assert sha256 is not None
    if req.sha256 and req.sha256 != sha256:
        raise SubmissionError("sha256", "does not match the uploaded bundle")
    try:
        # Core statements on one connection: intake is the hot path, and the ORM's unit of
        # work cost more CPU than the database did.
        with svc.engine.begin() as conn:
            existing = _existing(conn, req, sha256)
            if existing is not None:
                return existing
            accepted = _create(conn, svc, req, sha256, bundle)
    except IntegrityError:
        # A concurrent delivery of the same webhook won the race: answer with its record.
        with svc.engine.connect() as conn:
            found = _existing(conn, req, sha256)
        if found is None:
            raise
        return found
    _queue(svc, accepted.scan_id)
    return accepted


def publisher_named(s: Session, external_id: str, actor: str) -> Publisher:
    """The publisher the registry calls ``external_id``, recorded on first sight."""
    external_id = normalise_publisher(external_id)
    if not PUBLISHER_RE.fullmatch(external_id):
        raise SubmissionError("publisher_id", "must be 1-200 letters, digits, . _ : -")
    query = select(Publisher).where(Publisher.external_id == external_id)
    publisher = s.scalar(query)
    if publisher is None:
        _first_sighting(s, external_id, actor)
        publisher = s.scalars(query).one()
    return publisher


def _first_sighting(db: Session | Connection, external_id: str, actor: str) -> None:
    """Record a new publisher; of two first sightings racing, one records and audits it."""
    if insert_if_absent(db, Publisher, {"external_id": external_id, "created_at": utcnow()}):
        publisher_id = db.scalar(select(Publisher.id).where(Publisher.external_id == external_id))
        audit(db, actor, "publisher.created", "publisher", str(publisher_id))


# Intake's statements are built once: building one per request cost more CPU than running it.

# Two indexed lookups in one round trip (an OR across the join would scan the table).
_SAME_DELIVERY_OR_VERSION = union_all(
    select(Submission.id).where(Submission.webhook_id == bindparam("webhook_id")),
    select(Submission.id)
    .join(Publisher)
    .where(
        Publisher.external_id == bindparam("publisher"),
        Submission.plugin_name == bindparam("name"),
        Submission.plugin_version == bindparam("version"),
        Submission.bundle_sha256 == bindparam("sha256"),
    ),
).limit(1)

_STATUS_AND_LATEST_SCAN = select(
    Submission.status,
    select(Scan.id)
    .where(Scan.submission_id == Submission.id)
    .order_by(Scan.created_at.desc())
    .limit(1)
    .scalar_subquery(),
).where(Submission.id == bindparam("id"))

# The publisher with its submissions of the last day (ix_submissions_publisher_created).
_PUBLISHER_QUOTA = (
    select(
        Publisher.id,
        Publisher.daily_limit,
        func.count(Submission.id),
        func.min(Submission.created_at),
    )
    .outerjoin(
        Submission,
        and_(
            Submission.publisher_id == Publisher.id,
            Submission.created_at >= bindparam("since"),
        ),
    )
    .where(Publisher.external_id == bindparam("publisher"))
    .group_by(Publisher.id, Publisher.daily_limit)
)

# The same plugin version with other bytes, from anyone (ix_submissions_plugin_version).
_OTHER_BYTES = (
    select(Submission.id)
    .where(
        Submission.plugin_name == bindparam("name"),
        Submission.plugin_version == bindparam("version"),
        Submission.bundle_sha256 != bindparam("sha256"),
    )
    .limit(1)
)
_CDN_OWNER = select(CdnPlugin.publisher_id).where(CdnPlugin.name == bindparam("name"))

_INSERT_SUBMISSION = insert(Submission)
_INSERT_EVENT = insert(SubmissionEvent)
_INSERT_SCAN = insert(Scan)


def _existing(conn: Connection, req: SubmissionRequest, sha256: str) -> Accepted | None:
    sub_id = conn.scalar(
        _SAME_DELIVERY_OR_VERSION,
        {
            "webhook_id": req.webhook_id,
            "publisher": req.publisher_id,
            "name": req.plugin_name,
            "version": req.plugin_version,
            "sha256": sha256,
        },
    )
    if sub_id is None:
        return None
    status, scan_id = conn.execute(_STATUS_AND_LATEST_SCAN, {"id": sub_id}).one()
    return Accepted(sub_id, scan_id or "", status, created=False)


def _create(
    conn: Connection, svc: Services, req: SubmissionRequest, sha256: str, bundle: Path | None
) -> Accepted:
    publisher_id, quota = _publisher_quota(conn, req.publisher_id)
    _immutable(conn, req, sha256, publisher_id)
    quota.enforce(svc.settings.publisher_daily_limit)
    if bundle is not None:
        bundles.record(conn, bundles.store_bytes(svc.blobs, bundle, sha256))
    now = utcnow()
    sub_id, scan_id = new_id(), new_id()
    conn.execute(
        _INSERT_SUBMISSION,
        {
            "id": sub_id,
            "publisher_id": publisher_id,
            "plugin_name": req.plugin_name,
            "plugin_version": req.plugin_version,
            "bundle_sha256": sha256,
            "bundle_url": req.bundle_url,
            "callback_url": req.callback_url,
            "webhook_id": req.webhook_id,
            "status": SubmissionStatus.RECEIVED,
            "created_at": now,
            "updated_at": now,
        },
    )
    conn.execute(
        _INSERT_EVENT,
        {"submission_id": sub_id, "to_status": "received", "actor": "registry", "at": now},
    )
    conn.execute(
        _INSERT_SCAN,
        {
            "id": scan_id,
            "kind": ScanKind.SUBMISSION,
            "submission_id": sub_id,
            "bundle_sha256": sha256 if bundle is not None else None,
            # A label for reports, never a path: a scope's "/" once made every scoped
            # plugin end "bundle missing from storage".
            "bundle_name": f"{req.plugin_name.replace('/', '__')}-{req.plugin_version}.bundle",
            "status": ScanStatus.QUEUED,
            "created_at": now,
            "updated_at": now,
        },
    )
    audit(
        conn, "registry", "submission.received", "submission", sub_id, {"webhook": req.webhook_id}
    )
    return Accepted(sub_id, scan_id, SubmissionStatus.RECEIVED, created=True)


def _immutable(conn: Connection, req: SubmissionRequest, sha256: str, publisher_id: int) -> None:
    """npm's rule: once a version is submitted its bytes never change, and a name on the
    CDN stays its publisher's (nobody else's files land below it)."""
    params = {"name": req.plugin_name, "version": req.plugin_version, "sha256": sha256}
    if conn.scalar(_OTHER_BYTES, params) is not None:
        raise VersionTakenError(
            "version",
            f"{req.plugin_name}@{req.plugin_version} was submitted with other bytes:"
            " a version is immutable, publish a new one",
        )
    owner = conn.scalar(_CDN_OWNER, {"name": req.plugin_name})
    if owner is not None and owner != publisher_id:
        raise VersionTakenError("name", f"{req.plugin_name} belongs to another publisher")


def _publisher_quota(conn: Connection, external_id: str) -> tuple[int, Quota]:
    """The publisher's id and its submissions in the last day, in one round trip."""
    params = {"publisher": external_id, "since": utcnow() - DAY}
    row = conn.execute(_PUBLISHER_QUOTA, params).one_or_none()
    if row is None:
        _first_sighting(conn, external_id, "registry")
        row = conn.execute(_PUBLISHER_QUOTA, params).one()
    publisher_id, limit, count, oldest = row
    return publisher_id, Quota(count, oldest, limit, DAY, "submissions a day")


def start_preflight(svc: Services, token_id: int, bundle: Path, filename: str) -> str:
    """A CI scan: never enters the reviewer queue, and its report expires."""
    with svc.session() as s:
        token = s.get_one(ApiToken, token_id)
        check_token(s, token, svc.settings.token_hourly_limit)
        # Stored before the commit that names it; a refused request stores nothing.
        stored = bundles.store_bytes(svc.blobs, bundle)
        bundles.record(s, stored)
        scan = Scan(
            id=new_id(),
            kind=ScanKind.PREFLIGHT,
            token_id=token_id,
            bundle_sha256=stored.sha256,
            bundle_name=_safe_name(filename),
            status=ScanStatus.QUEUED,
            expires_at=utcnow() + timedelta(hours=svc.settings.preflight_ttl_hours),
        )
        s.add(scan)
        audit(s, f"token:{token_id}", "preflight.received", "scan", scan.id)
        scan_id = scan.id
    _queue(svc, scan_id, urgent=True)  # CI waits on it
    return scan_id


def _safe_name(filename: str) -> str:
    name = Path(filename.replace("\\", "/")).name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100]
    return name if name and name not in {".", ".."} else "bundle.zip"


def _queue(svc: Services, scan_id: str, urgent: bool = False) -> None:
    try:
        svc.jobs.start_scan(scan_id, urgent=urgent)
    except Exception as exc:
        # Accepted and committed: the sweeper queues it once the broker is back.
        log.warning("scan %s accepted but not queued yet: %s", scan_id, exc)
