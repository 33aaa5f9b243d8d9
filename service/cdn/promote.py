"""Promotion: publish exactly the scanned tree under ``{plugin}/{version}/``, verified.

The approving transaction records a Promotion (``request``); ``sync`` then brings storage
in line with that row, whatever it says: publish (upload each file of the scan's
canonical repack, read it back and compare its sha256, then write the signed manifest,
then the index), or withdraw (a yank: delete the files, mark the manifest and the index,
publish the blocklist, purge). It is idempotent and re-run by the sweeper until the row
says storage is in sync, so a crash mid-way is finished; a promotion that cannot finish
is rolled back (what it uploaded is deleted) and recorded as failed.

The row is locked while the manifest is written: a yank committed before that point is
seen (nothing is published after a yank), and one committed after waits for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner.db import insert_if_absent
from scanner.intake import ArchiveViolation
from scanner.repack import RepackError
from service.audit import audit, transition
from service.blobs import BlobNotFoundError
from service.bundles import materialized
from service.callbacks import enqueue_event
from service.cdn import blocklist, index, purge
from service.cdn.manifest import ManifestFacts, PublishedFile, describe, payload, signed
from service.cdn.paths import (
    IMMUTABLE,
    MANIFEST_NAME,
    SHORT_LIVED,
    CdnPathError,
    check_file_path,
    file_key,
    index_key,
    manifest_key,
    plugin_prefix,
    version_prefix,
)
from service.cdn.purge import url_of
from service.cdn.storage import CdnNotFoundError, sha256_hex
from service.models import (
    CdnPlugin,
    Decision,
    Promotion,
    PromotionState,
    Scan,
    ScanFacts,
    Submission,
    SubmissionStatus,
    utcnow,
)
from service.services import Services

log = logging.getLogger(__name__)
ACTOR = "gatehouse-cdn"
# Starts of a publication before it is given up and rolled back (storage kept failing).
MAX_ATTEMPTS = 8


class NotPromotableError(Exception):
    """An approval whose version cannot go to the CDN (checked in its transaction)."""


class PromotionError(Exception):
    """A publication that can never succeed: it is rolled back and recorded as failed."""


class VerifyError(RuntimeError):
    """Storage gave back other bytes than were put: retried, then failed."""


@dataclass(frozen=True)
class Claim:
    """A promotion as one sync attempt saw it when it started."""

    id: int
    submission_id: str
    scan_id: str
    decision_id: int
    publisher_id: int
    plugin: str
    version: str
    repack_sha256: str
    tree_sha256: str
    yanked: bool
    published_at: datetime | None
    attempts: int


def check(s: Session, submission: Submission, scan: Scan) -> Promotion | None:
    """Why this version cannot go to the CDN (NotPromotableError), or its promotion when
    it has one already: another's bytes or another publisher's name never get there."""
    name, version = submission.plugin_name, submission.plugin_version
    try:
        version_prefix(name, version)
    except CdnPathError as exc:
        raise NotPromotableError(str(exc)) from None
    taken = s.scalar(
        select(Promotion).where(Promotion.plugin_name == name, Promotion.plugin_version == version)
    )
    if taken is not None and taken.submission_id != submission.id:
        raise NotPromotableError(f"{name}@{version} is on the CDN already, from other bytes")
    if taken is not None:
        return taken
    owner = s.get(CdnPlugin, name)
    if owner is not None and owner.publisher_id != submission.publisher_id:
        raise NotPromotableError(f"{name} belongs to another publisher on the CDN")
    if scan.repack_sha256 is None or scan.tree_sha256 is None:
        raise NotPromotableError("the scan admitted no tree: there is nothing to publish")
    yanked = s.scalar(
        select(Promotion).where(
            Promotion.tree_sha256 == scan.tree_sha256, Promotion.yanked_at.is_not(None)
        )
    )
    if yanked is not None:
        # A yank withdraws these bytes, under any version: un-yanking is the way back.
        raise NotPromotableError(
            f"exactly these files were yanked as {yanked.plugin_name}@{yanked.plugin_version}"
            f" ({yanked.yank_reason or 'no reason given'}); un-yank that version instead"
        )
    facts = s.get(ScanFacts, scan.id)
    for row in facts.data.get("files", []) if facts is not None else []:
        if row and row[0] == MANIFEST_NAME:
            raise NotPromotableError(
                f"the bundle ships a {MANIFEST_NAME}, the CDN's own file: it cannot be promoted"
            )
    return None


def request(s: Session, submission: Submission, scan: Scan, decision: Decision) -> Promotion:
    """The Promotion of an approval, in the approving transaction (NotPromotableError)."""
    taken = check(s, submission, scan)
    if taken is not None:
        return taken
    assert scan.repack_sha256 is not None and scan.tree_sha256 is not None
    name, version = submission.plugin_name, submission.plugin_version
    promotion = Promotion(
        submission_id=submission.id,
        scan_id=scan.id,
        decision_id=decision.id,
        publisher_id=submission.publisher_id,
        plugin_name=name,
        plugin_version=version,
        repack_sha256=scan.repack_sha256,
        tree_sha256=scan.tree_sha256,
        state=PromotionState.PENDING,
        store_synced=False,
    )
    s.add(promotion)
    s.flush()
    audit(s, ACTOR, "promotion.requested", "submission", submission.id, {"scan_id": scan.id})
    return promotion


def publish(svc: Services, c: Claim) -> str:
    """Upload, verify, then manifest and index; PromotionError when it never can."""
    _claim_name(svc, c)
    with svc.session() as s:
        scan = s.get_one(Scan, c.scan_id)
        s.expunge(scan)
    if (scan.repack_sha256, scan.tree_sha256) != (c.repack_sha256, c.tree_sha256):
        raise PromotionError("the scan's tree is not the one the approval named")
    try:
        with materialized(svc, scan) as opened:
            assert opened.workspace is not None
            ws = opened.workspace
            try:
                paths = [check_file_path(f.path) for f in opened.files]
            except CdnPathError as exc:
                raise PromotionError(str(exc)) from None
            _plan(svc, c, [f.path for f in opened.files])
            files = [_upload(svc, c, p, ws.read_bytes(p)) for p in paths]
            loaded = ws.manifest.manifest
            entry = loaded.entry if loaded is not None else None
    except (BlobNotFoundError, RepackError, ArchiveViolation) as exc:
        raise PromotionError(f"the scanned tree cannot be read back: {exc}") from None
    return _finish(svc, c, scan, files, entry)


def _claim_name(svc: Services, c: Claim) -> None:
    """The plugin's name on the CDN is its first promoter's; another publisher never
    writes below it."""
    with svc.session() as s:
        insert_if_absent(
            s,
            CdnPlugin,
            {
                "name": plugin_prefix(c.plugin),
                "publisher_id": c.publisher_id,
                "created_at": utcnow(),
            },
        )
        owner = s.get_one(CdnPlugin, c.plugin)
        if owner.publisher_id != c.publisher_id:
            raise PromotionError(f"{c.plugin} belongs to another publisher on the CDN")


def _plan(svc: Services, c: Claim, paths: list[str]) -> None:
    """Record the keys about to be written first: a rollback after a crash finds them."""
    with svc.session() as s:
        p = s.get_one(Promotion, c.id, with_for_update=True)
        if not p.files:
            p.files = [{"path": path} for path in paths]


def _upload(svc: Services, c: Claim, path: str, data: bytes) -> PublishedFile:
    published = describe(path, data)
    key = file_key(c.plugin, c.version, path)
    meta = {"sha256": published.sha256, "integrity": published.integrity}
    svc.cdn.put(key, data, published.content_type, IMMUTABLE, meta)
    _verify(svc, key, published.sha256)
    return published


def _verify(svc: Services, key: str, sha256: str) -> None:
    try:
        stored = svc.cdn.get(key)
    except CdnNotFoundError:
        raise VerifyError(f"{key} is missing right after it was written") from None
    if sha256_hex(stored) != sha256:
        raise VerifyError(f"{key} reads back with other bytes than were written")


def _finish(
    svc: Services, c: Claim, scan: Scan, files: list[PublishedFile], entry: str | None
) -> str:
    """Manifest, then index, then the records, under the promotion's row lock."""
    deliveries: list[int] = []
    republished = False
    with svc.session() as s:
        p = s.get_one(Promotion, c.id, with_for_update=True)
        if p.yanked_at is not None:
            # Yanked while uploading: nothing is published; the yank's sync withdraws.
            p.store_synced = False
            rollback = True
        elif p.store_synced:
            return "in sync"  # a duplicate delivery finished first
        else:
            rollback = False
            republished = p.published_at is not None
            now = utcnow()
            facts = _facts(c, scan, entry, p.published_at or now)
            body = payload(facts, files, now)
            data = signed(svc.signer, body)
            key = manifest_key(c.plugin, c.version)
            svc.cdn.put(key, data, "application/json", SHORT_LIVED, {})
            _verify(svc, key, sha256_hex(data))
            p.published_at = p.published_at or now
            p.files = [f.to_dict() for f in files]
            p.entry, p.csp, p.manifest_sha256 = entry, facts.csp, sha256_hex(data)
            p.state, p.store_synced, p.error, p.updated_at = (
                PromotionState.PUBLISHED,
                True,
                None,
                now,
            )
            s.flush()
            index.write(s, svc.cdn, c.plugin)
            deliveries = _published(svc, s, p, files, republished)
    if rollback:
        delete_files(svc, c.plugin, c.version, [f.path for f in files], manifest=False)
        return "withdrawn"
    if republished:
        blocklist.publish(svc)  # un-yanked: its entry goes
    else:
        blocklist.ensure(svc)
    dispatch(svc, deliveries)
    return "published"


def _facts(c: Claim, scan: Scan, entry: str | None, published_at: datetime) -> ManifestFacts:
    report = scan.report or {}
    csp = report.get("csp")
    return ManifestFacts(
        plugin=c.plugin,
        version=c.version,
        entry=entry,
        csp=csp if isinstance(csp, str) else None,
        scan_id=scan.id,
        ruleset=scan.ruleset,
        advisories=scan.advisories,
        decision_id=c.decision_id,
        tree_sha256=c.tree_sha256,
        repack_sha256=c.repack_sha256,
        published_at=published_at,
    )


def _published(
    svc: Services, s: Session, p: Promotion, files: list[PublishedFile], republished: bool
) -> list[int]:
    submission = s.get_one(Submission, p.submission_id, with_for_update=True)
    if submission.status == SubmissionStatus.APPROVED:
        transition(s, submission, SubmissionStatus.PROMOTED, ACTOR, "published to the CDN")
    audit(
        s,
        ACTOR,
        "promotion.published",
        "submission",
        submission.id,
        {"files": len(files), "manifest_sha256": p.manifest_sha256, "again": republished},
    )
    ids = []
    event = enqueue_event(s, submission, "submission.promoted", promoted_data(svc, p, files))
    if event is not None:
        ids.append(event)
    if republished:
        ids += purge.enqueue(
            s,
            svc.settings,
            p.submission_id,
            p.plugin_name,
            p.plugin_version,
            [f.path for f in files],
            "unyank",
        )
    s.flush()
    return [d.id for d in ids]


def promoted_data(svc: Services, p: Promotion, files: list[PublishedFile]) -> dict[str, object]:
    """The submission.promoted callback: where the files are, their SRI, the CSP."""
    settings = svc.settings
    base = url_of(settings, version_prefix(p.plugin_name, p.plugin_version)) + "/"
    return {
        "scan_id": p.scan_id,
        "status": SubmissionStatus.PROMOTED.value,
        "plugin": p.plugin_name,
        "version": p.plugin_version,
        "base_url": base,
        "manifest_url": url_of(settings, manifest_key(p.plugin_name, p.plugin_version)),
        "index_url": url_of(settings, index_key(p.plugin_name)),
        "entry": p.entry,
        "entry_url": url_of(settings, file_key(p.plugin_name, p.plugin_version, p.entry))
        if p.entry
        else None,
        "files": [
            {
                "path": f.path,
                "url": url_of(settings, file_key(p.plugin_name, p.plugin_version, f.path)),
                "integrity": f.integrity,
                "content_type": f.content_type,
            }
            for f in files
        ],
        "csp": p.csp,
        "manifest_sha256": p.manifest_sha256,
        "key_id": svc.signer.key_id,
    }


def delete_files(
    svc: Services, plugin: str, version: str, paths: list[str], *, manifest: bool
) -> None:
    for path in paths:
        try:
            svc.cdn.delete(file_key(plugin, version, path))
        except CdnPathError:
            continue  # never uploaded: its path was refused
    if manifest:
        svc.cdn.delete(manifest_key(plugin, version))


def fail(svc: Services, c: Claim, why: str) -> None:
    """Roll back what this promotion may have written and record why it failed."""
    log.error("promotion %s of %s@%s failed: %s", c.id, c.plugin, c.version, why)
    with svc.session() as s:
        p = s.get_one(Promotion, c.id)
        paths = [str(f["path"]) for f in (p.files or [])]
        first = p.published_at is None
    delete_files(svc, c.plugin, c.version, paths, manifest=first)
    with svc.session() as s:
        p = s.get_one(Promotion, c.id, with_for_update=True)
        if first:
            p.state = PromotionState.FAILED
        p.error, p.store_synced, p.updated_at = why[:1000], True, utcnow()
        audit(s, ACTOR, "promotion.failed", "submission", c.submission_id, {"why": why[:1000]})


def dispatch(svc: Services, deliveries: list[int]) -> None:
    for delivery_id in deliveries:
        try:
            svc.jobs.deliver(delivery_id)
        except Exception as exc:  # the sweeper delivers it once the lease runs out
            log.warning("delivery %d not dispatched now: %s", delivery_id, exc)
