"""A scan as steps that survive crashes: start, one step per stage, conclude, sweep.

The database is the source of truth and the queue only wakes workers up. Every step is
idempotent: a redelivered step finds its work recorded and does nothing twice, a stage
records its findings only by winning a conditional update, and the scan is concluded by
whichever finished stage wins another. The sweeper re-dispatches whatever stopped moving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from scanner.advisories.store import snapshot_identity
from scanner.capabilities import CapabilityCheck
from scanner.db import insert_if_absent
from scanner.findings import Category, Finding, Severity, StageResult, StageStatus
from scanner.pipeline import (
    ARCHIVE_STAGE,
    OpenedBundle,
    StageFactory,
    conclude,
    make_stage,
    opened_bundle,
    stage_name,
)
from scanner.pipeline import run_stages as run_in_threads
from scanner.private_dirs import private_dir
from scanner.repack import Repack
from scanner.reports.json import report_dict
from scanner.reports.sarif import render_sarif
from scanner.sbom import build_sbom
from scanner.stages.base import Stage
from scanner.suppressions import Suppression
from service import bundles
from service.audit import audit, transition
from service.blobs import BlobNotFoundError, artifact_key, bundle_key, repack_key
from service.bundles import bundle_info, downloaded, materialized
from service.callbacks import due, enqueue_event
from service.cdn import promote as cdn_promote
from service.cdn import retro
from service.cdn import sync as cdn_sync
from service.cdn import yank as cdn_yank
from service.fetch import FetchError, fetch_bundle
from service.jobs import queue_of
from service.models import (
    STAGE_PENDING,
    STAGE_RUNNING,
    Artifact,
    Decision,
    FindingRecord,
    Scan,
    ScanFacts,
    ScanKind,
    ScanStatus,
    StageRun,
    Submission,
    SubmissionStatus,
    SweeperState,
    aware,
    iso,
    utcnow,
)
from service.records import fill_stage_run, record_findings, result_of
from service.review import autoapprove
from service.review.allowlists import suppressions_for
from service.review.decisions import record as record_decision
from service.review.facts import collect as collect_facts
from service.review.queue import enter_queue
from service.services import Services

log = logging.getLogger(__name__)

ACTOR = "gatehouse"
FINAL = tuple(s.value for s in StageStatus)
MEDIA = {".json": "application/json", ".png": "image/png", ".sarif": "application/sarif+json"}
SBOM_NAME = "sbom.cdx.json"


class StageRegistry:
    """Stages by name, each built once per process on first use (browsers stay warm)."""

    def __init__(self, factories: Sequence[StageFactory]) -> None:
        self.factories = {stage_name(f): f for f in factories}
        self._built: dict[str, Stage] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.factories)

    def get(self, name: str, svc: Services) -> Stage:
        if name not in self._built:
            self._built[name] = make_stage(self.factories[name], svc.settings)
        return self._built[name]


# --- start ---------------------------------------------------------------------------


def start_scan(svc: Services, scan_id: str, registry: StageRegistry) -> None:
    """Get the bundle, unpack it once to record intake, create the stage runs, fan out."""
    with svc.session() as s:
        scan = s.get(Scan, scan_id)
        if scan is None or scan.status not in (ScanStatus.QUEUED, ScanStatus.SCANNING):
            return
        status, kind = scan.status, scan.kind
        submission = s.get(Submission, scan.submission_id) if scan.submission_id else None
        needs_fetch = scan.bundle_sha256 is None and submission is not None
        if submission is not None:
            s.expunge(submission)
    if status == ScanStatus.SCANNING:
        # Redelivered after the fan-out: send again what never started (idempotent).
        urgent, background = kind == ScanKind.PREFLIGHT, kind == ScanKind.RETRO
        _recover(svc, scan_id, urgent, depths=None, outage=True, background=background)
        return
    if needs_fetch:
        assert submission is not None
        if not _fetch(svc, scan_id, submission):
            return
    _intake_and_fan_out(svc, scan_id, registry)


def _fetch(svc: Services, scan_id: str, submission: Submission) -> bool:
    """Fetch a bundle_url into blob storage; False when it cannot be (the scan concluded)."""
    assert submission.bundle_url is not None
    work_root = private_dir(svc.settings.work_root)
    with tempfile.TemporaryDirectory(prefix="fetch-", dir=work_root) as tmp:
        dest = Path(tmp) / "bundle"
        try:
            fetch_bundle(
                submission.bundle_url,
                dest,
                origins=svc.settings.registry_origin_list,
                max_bytes=svc.settings.archive.max_bundle_bytes,
                expected_sha256=submission.bundle_sha256,
                timeout=svc.settings.fetch_timeout,
            )
        except FetchError as exc:
            if not exc.permanent:
                raise
            give_up(svc, scan_id, "fetch", str(exc))
            return False
        stored = bundles.store_bytes(svc.blobs, dest, submission.bundle_sha256)
    with svc.session() as s:
        bundles.record(s, stored)
        s.get_one(Scan, scan_id).bundle_sha256 = stored.sha256
    return True


def _intake_and_fan_out(svc: Services, scan_id: str, registry: StageRegistry) -> None:
    with svc.session() as s:
        scan = s.get_one(Scan, scan_id)
        s.expunge(scan)
    try:
        intake, repack = _intake_upload(svc, scan)
    except BlobNotFoundError:
        give_up(svc, scan_id, ARCHIVE_STAGE, "the bundle is missing from storage")
        return
    admitted = repack is not None
    names = registry.names if admitted else ()
    with svc.session() as s:
        scan = s.get_one(Scan, scan_id, with_for_update=True)
        if scan.status != ScanStatus.QUEUED:
            return  # a duplicate delivery got here first
        if repack is not None:
            scan.repack_sha256, scan.repack_size = repack.sha256, repack.size
            scan.tree_sha256 = repack.tree_sha256
        # The advisory data the dependency stage is about to read (checked again at the
        # conclusion: an import in between leaves the scan's snapshot unknown, so stale).
        scan.advisories = snapshot_identity(svc.engine)
        background = scan.kind == ScanKind.RETRO
        run = _record(s, scan_id, intake)
        for name in registry.names:
            status = STAGE_PENDING if admitted else StageStatus.SKIPPED.value
            s.add(
                StageRun(
                    scan_id=scan_id,
                    stage=name,
                    status=status,
                    error=None if admitted else "the archive was not admitted at intake",
                )
            )
        scan.status, scan.updated_at = ScanStatus.SCANNING, utcnow()
        _move_submission(s, scan, SubmissionStatus.SCANNING, "scan started")
        audit(s, ACTOR, "scan.started", "scan", scan_id, {"intake": run.status})
    if names:
        svc.jobs.run_stages(
            scan_id, names, urgent=scan.kind == ScanKind.PREFLIGHT, background=background
        )
    else:
        conclude_scan(svc, scan_id)


def _intake_upload(svc: Services, scan: Scan) -> tuple[StageResult, Repack | None]:
    """Intake of the uploaded bytes (the one time they are read) and, when admitted, the
    repack stored before the scan points at it. Intake never raises about the bundle:
    every refusal or failure is in the returned result, so the scan always goes on."""
    assert scan.bundle_sha256 is not None
    with (
        downloaded(svc, bundle_key(scan.bundle_sha256)) as upload,
        opened_bundle(upload, svc.settings) as opened,
    ):
        assert opened.intake is not None
        if opened.repack is not None and opened.repack_path is not None:
            key = repack_key(opened.repack.sha256)
            if not svc.blobs.exists(key):
                svc.blobs.put_file(key, opened.repack_path)
        return opened.intake, opened.repack


def give_up(svc: Services, scan_id: str, stage: str, why: str) -> None:
    """Conclude a scan that cannot run (its bundle cannot be had): fails closed."""
    _record_unrunnable(svc, scan_id, stage, why)
    conclude_scan(svc, scan_id)


def _record_unrunnable(svc: Services, scan_id: str, stage: str, why: str) -> None:
    """The scan cannot run at all: one error stage run, so the verdict fails closed."""
    with svc.session() as s:
        scan = s.get_one(Scan, scan_id, with_for_update=True)
        if scan.status != ScanStatus.QUEUED:
            return
        _record(s, scan_id, StageResult(stage, 1, StageStatus.ERROR, error=why))
        scan.status, scan.error, scan.updated_at = ScanStatus.SCANNING, why, utcnow()
        _move_submission(s, scan, SubmissionStatus.SCANNING, "scan started")


def _record(s: Session, scan_id: str, result: StageResult) -> StageRun:
    run = StageRun(scan_id=scan_id, stage=result.name, attempts=1, finished_at=utcnow())
    fill_stage_run(run, result)
    s.add(run)
    s.flush()
    record_findings(s, run, result.findings)
    return run


def _unfinished(s: Session, scan_id: str) -> list[str]:
    return list(
        s.scalars(
            select(StageRun.stage)
            .where(StageRun.scan_id == scan_id, StageRun.status.in_((STAGE_PENDING, STAGE_RUNNING)))
            .order_by(StageRun.id)
        )
    )


# --- one stage -----------------------------------------------------------------------


def run_stage(
    svc: Services,
    scan_id: str,
    name: str,
    registry: StageRegistry,
    interrupted_by: tuple[type[BaseException], ...] = (),
) -> None:
    """Run one stage of a scan unless it is recorded already; conclude if it was the last.

    ``interrupted_by``: exceptions that mean "out of time" (the queue's soft time limit);
    they unwind (removing the work dir) to the caller, who records a timeout.
    """
    attempts = _claim(svc, scan_id, name)
    if attempts is None:
        conclude_scan(svc, scan_id)
        return
    if attempts > svc.settings.max_stage_attempts:
        _quarantine(svc, scan_id, name, attempts)
        conclude_scan(svc, scan_id)
        return
    with svc.session() as s:
        scan = s.get_one(Scan, scan_id)
        s.expunge(scan)
    try:
        stage = registry.get(name, svc)
        with materialized(svc, scan) as opened:
            assert opened.workspace is not None
            result = run_in_threads(opened.workspace, [stage], svc.settings.stage_timeout)[0]
    except interrupted_by:
        raise
    except Exception as exc:
        log.warning("scan %s stage %s could not run: %s", scan_id, name, exc)
        result = StageResult(name, 0, StageStatus.ERROR, error=f"{type(exc).__name__}: {exc}"[:500])
    _save(svc, scan_id, name, result)
    conclude_scan(svc, scan_id)


def stage_timed_out(svc: Services, scan_id: str, name: str, why: str) -> None:
    """Record a stage its task ran out of time for (fails closed), and conclude if last."""
    log.warning("scan %s stage %s timed out: %s", scan_id, name, why)
    _save(svc, scan_id, name, StageResult(name, 0, StageStatus.TIMEOUT, error=why))
    conclude_scan(svc, scan_id)


def _claim(svc: Services, scan_id: str, name: str) -> int | None:
    """Count one more start, committed before the work; None when already recorded."""
    with svc.session() as s:
        run = _open_run(s, scan_id, name)
        if run is None:
            return None
        run.attempts += 1
        run.status, run.started_at = STAGE_RUNNING, utcnow()
        s.execute(update(Scan).where(Scan.id == scan_id).values(updated_at=utcnow()))
        return run.attempts


def _open_run(s: Session, scan_id: str, name: str) -> StageRun | None:
    """The stage run, locked, while nothing is recorded for it yet; else None."""
    run = s.scalar(
        select(StageRun)
        .where(StageRun.scan_id == scan_id, StageRun.stage == name)
        .with_for_update()
    )
    return run if run is not None and run.status in (STAGE_PENDING, STAGE_RUNNING) else None


def _quarantine(svc: Services, scan_id: str, name: str, attempts: int) -> None:
    why = (
        f"started {attempts - 1} times without finishing (the worker died each time):"
        " quarantined instead of retried"
    )
    log.error("scan %s stage %s quarantined after %d attempts", scan_id, name, attempts - 1)
    finding = Finding(
        name,
        "stage-quarantined",
        Category.COVERAGE,
        Severity.HIGH,
        f"the {name} stage {why}",
    )
    _save(svc, scan_id, name, StageResult(name, 0, StageStatus.ERROR, [finding], error=why))


def _save(svc: Services, scan_id: str, name: str, result: StageResult) -> None:
    """Record a result once: only the delivery that flips the row from running wins."""
    keys = {}
    for artifact, data in result.artifacts.items():
        key = artifact_key(scan_id, f"{name}-{artifact}")
        svc.blobs.put_bytes(key, data)  # same key on a retry: overwritten, not duplicated
        keys[artifact] = (key, data)
    with svc.session() as s:
        run = _open_run(s, scan_id, name)
        if run is None:
            return
        fill_stage_run(run, result)
        run.finished_at = utcnow()
        record_findings(s, run, result.findings)
        for artifact, (key, data) in keys.items():
            _add_artifact(s, scan_id, run.id, f"{name}-{artifact}", key, data)


def _add_artifact(
    s: Session, scan_id: str, run_id: int | None, name: str, key: str, data: bytes
) -> None:
    s.add(
        Artifact(
            scan_id=scan_id,
            stage_run_id=run_id,
            name=name,
            media_type=MEDIA.get(Path(name).suffix, "application/octet-stream"),
            blob_key=key,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
    )


# --- conclude ------------------------------------------------------------------------


def conclude_scan(svc: Services, scan_id: str) -> bool:
    """Decide once every stage is recorded; True when this call concluded the scan."""
    with svc.session() as s:
        scan = s.get(Scan, scan_id)
        if scan is None or scan.status != ScanStatus.SCANNING or _unfinished(s, scan_id):
            return False
        runs = list(s.scalars(select(StageRun).where(StageRun.scan_id == scan_id)))
        rows = list(s.scalars(select(FindingRecord).where(FindingRecord.scan_id == scan_id)))
        suppressions = _suppressions(s, scan)
        trace_keys = list(
            s.scalars(
                select(Artifact.blob_key).where(
                    Artifact.scan_id == scan_id, Artifact.name.like("runtime-trace-%.json")
                )
            )
        )
        s.expunge(scan)
    by_run: dict[int, list[FindingRecord]] = {}
    for row in rows:
        by_run.setdefault(row.stage_run_id, []).append(row)
    results = [result_of(r, by_run.get(r.id, [])) for r in runs]
    judged = _judge(svc, scan, results, suppressions, _traces(svc, trace_keys))
    return _write_outcome(svc, scan_id, judged)


def _suppressions(s: Session, scan: Scan) -> list[Suppression]:
    """The allowlist entries in force for a submission's plugin (pre-flights get none)."""
    if scan.kind != ScanKind.SUBMISSION or not scan.submission_id:
        return []
    submission = s.get_one(Submission, scan.submission_id)
    return suppressions_for(s, submission.publisher_id, submission.plugin_name)


def _traces(svc: Services, keys: list[str]) -> list[dict[str, Any]]:
    out = []
    for key in keys:
        try:
            data = json.loads(svc.blobs.get_bytes(key))
        except (BlobNotFoundError, ValueError) as exc:
            log.warning("trace %s unreadable for the scan's facts: %s", key, exc)
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


@dataclass
class Judged:
    report: dict[str, Any]
    sarif: str
    capability: StageResult | None
    facts: dict[str, Any] | None
    sbom: str | None


def _judge(
    svc: Services,
    scan: Scan,
    results: list[StageResult],
    suppressions: list[Suppression],
    traces: list[dict[str, Any]],
) -> Judged:
    """Conclude from the recorded results; the capability check reads the scanned tree
    again, from its repack."""
    order = {ARCHIVE_STAGE: -1, "fetch": -1}
    results.sort(key=lambda r: order.get(r.name, 0))
    facts = None
    try:
        with materialized(svc, scan) as opened:
            result = conclude(
                opened, results, svc.settings, svc.policy, scan.bundle_name, suppressions
            )
            manifest = opened.workspace.manifest.manifest if opened.workspace else None
            files = [(f.path, f.sha256, f.size) for f in opened.files]
            facts = collect_facts(files, manifest, result.stages, traces)
    except Exception as exc:
        # Whatever goes wrong here (the repack gone or changed, limits lowered since intake
        # admitted it, a bundle that makes the capability check itself fail), the scan still
        # concludes: without a capability check, so never with a pass. A scan that cannot
        # conclude would wait in "scanning" forever and every sweep would fail again.
        judged = list(results)
        if scan.repack_sha256 is not None:
            # An admitted tree that cannot be judged: no capability check, so no pass.
            log.warning("scan %s: the scanned tree cannot be judged: %s", scan.id, exc)
            judged.append(
                StageResult(
                    CapabilityCheck.name,
                    CapabilityCheck.version,
                    StageStatus.ERROR,
                    error=f"the scanned tree could not be judged: {type(exc).__name__}: {exc}"[
                        :500
                    ],
                )
            )
        # Otherwise nothing was admitted: the recorded refusal or error decides.
        nothing = OpenedBundle(Path(), bundle_info(svc, scan), None, (), None)
        result = conclude(nothing, judged, svc.settings, svc.policy, scan.bundle_name)
    known = {id(r) for r in results}
    added = [r for r in result.stages if r.name == "capabilities" and id(r) not in known]
    try:
        sbom: str | None = build_sbom(result)
    except Exception as exc:  # the SBOM is a convenience; the verdict never waits on it
        log.warning("scan %s: no SBOM: %s", scan.id, exc)
        sbom = None
    return Judged(
        report_dict(result), render_sarif(result), added[0] if added else None, facts, sbom
    )


@dataclass
class After:
    """What a conclusion asks for once its transaction has committed."""

    deliveries: list[int] = field(default_factory=list)
    promotions: list[int] = field(default_factory=list)
    retro: retro.RetroVerdict | None = None


def _write_outcome(svc: Services, scan_id: str, judged: Judged) -> bool:
    after = After()
    report, sarif, capability = judged.report, judged.sarif, judged.capability
    sarif_key = artifact_key(scan_id, "report.sarif")
    svc.blobs.put_bytes(sarif_key, sarif.encode())
    sbom_key = artifact_key(scan_id, SBOM_NAME)
    if judged.sbom is not None:
        svc.blobs.put_bytes(sbom_key, judged.sbom.encode())
    advisories = snapshot_identity(svc.engine)
    with svc.session() as s:
        claimed = s.execute(
            update(Scan)
            .where(Scan.id == scan_id, Scan.status == ScanStatus.SCANNING)
            .values(status=ScanStatus.COMPLETED, updated_at=utcnow(), finished_at=utcnow())
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return False  # another finished stage concluded it first
        scan = s.get_one(Scan, scan_id)
        if capability is not None:
            _record(s, scan_id, capability)
        verdict = str(report["verdict"])
        scan.verdict, scan.report = verdict, report
        scan.risk_score = int(report["risk_score"])
        scan.ruleset = str(report["ruleset"])
        scan.tool_versions = report["tool_versions"]
        if scan.advisories != advisories:
            scan.advisories = None  # imported mid-scan: which data it saw is unknown
        _add_artifact(s, scan_id, None, "report.sarif", sarif_key, sarif.encode())
        if judged.sbom is not None:
            _add_artifact(s, scan_id, None, SBOM_NAME, sbom_key, judged.sbom.encode())
        if judged.facts is not None:
            s.add(ScanFacts(scan_id=scan_id, data=judged.facts))
        s.add(
            Decision(
                scan_id=scan_id,
                submission_id=scan.submission_id,
                kind="automatic",
                verdict=verdict,
                risk_score=scan.risk_score,
                reasons=report["reasons"],
                actor="policy",
            )
        )
        audit(s, ACTOR, "scan.completed", "scan", scan_id, {"verdict": verdict})
        if scan.kind == ScanKind.SUBMISSION and scan.submission_id:
            after = _conclude_submission(svc, s, scan, judged)
        elif scan.kind == ScanKind.RETRO:
            after.retro = retro.concluded(s, scan, report, svc.policy.kill_switch)
    _follow_up(svc, after)
    return True


def _follow_up(svc: Services, after: After) -> None:
    for delivery_id in after.deliveries:
        _dispatch_delivery(svc, delivery_id)
    for promotion_id in after.promotions:
        try:
            svc.jobs.promote(promotion_id)
        except Exception as exc:  # the sweeper syncs it once the broker answers
            log.warning("promotion %d not dispatched now: %s", promotion_id, exc)
    if after.retro is None:
        return
    if after.retro.submission_id and after.retro.yank_reason:
        try:
            cdn_yank.yank(
                svc, after.retro.submission_id, cdn_yank.KILL_SWITCH, after.retro.yank_reason
            )
        except cdn_yank.YankError as exc:  # yanked already, by a person or another rescan
            log.warning("kill switch: %s not yanked: %s", after.retro.submission_id, exc)
    retro.tick(svc)  # this rescan's slot is free: start the next one


def _conclude_submission(svc: Services, s: Session, scan: Scan, judged: Judged) -> After:
    report = judged.report
    verdict = str(report["verdict"])
    submission = s.get_one(Submission, scan.submission_id)
    submission.verdict = verdict
    rejected = verdict == "reject"
    to = SubmissionStatus.REJECTED if rejected else SubmissionStatus.AWAITING_REVIEW
    _move_submission(s, scan, to, f"policy verdict: {verdict}")
    enter_queue(s, submission, scan, report, svc.settings)
    data = {
        "scan_id": scan.id,
        "status": to.value,
        "verdict": verdict,
        "risk_score": report["risk_score"],
        "findings": summarize(report),
    }
    events = [enqueue_event(s, submission, "scan.completed", data)]
    if rejected:
        events.append(enqueue_event(s, submission, "submission.rejected", data))
    s.flush()
    after = After(deliveries=[e.id for e in events if e is not None])
    if not rejected and autoapprove.enabled(s):
        _auto_approve(s, submission, scan, judged, after)
    return after


def _auto_approve(
    s: Session, submission: Submission, scan: Scan, judged: Judged, after: After
) -> None:
    """Approve a routine update of a trusted publisher as the system, with its reasons."""
    evaluation = autoapprove.evaluate_submission(s, submission, scan, judged.facts, judged.report)
    eligible, why = evaluation.eligible, list(evaluation.reasons)
    if eligible:
        try:
            cdn_promote.check(s, submission, scan)
        except cdn_promote.NotPromotableError as exc:
            eligible, why = False, [f"cannot go to the CDN: {exc}"]
    if not eligible:
        audit(
            s,
            autoapprove.ACTOR,
            "auto_approval.declined",
            "submission",
            submission.id,
            {"why": why},
        )
        return
    reasons = [
        {"code": "auto-approval", "title": "Approved automatically", "text": text}
        for text in evaluation.reasons
    ]
    outcome = record_decision(
        s, submission, scan, autoapprove.ACTOR, "approve", reasons, None, None, kind="system"
    )
    after.deliveries += outcome.deliveries
    after.promotions += outcome.promotions


def summarize(report: dict[str, object]) -> dict[str, int]:
    """Findings per severity label, the way a registry shows them."""
    counts: dict[str, int] = {}
    for f in report.get("findings", []):  # type: ignore[attr-defined]
        counts[f["severity"]] = counts.get(f["severity"], 0) + 1
    return counts


def _move_submission(s: Session, scan: Scan, to: SubmissionStatus, reason: str) -> None:
    if scan.kind != ScanKind.SUBMISSION or not scan.submission_id:
        return
    submission = s.get_one(Submission, scan.submission_id, with_for_update=True)
    if submission.status != to:
        transition(s, submission, to, ACTOR, reason)


def _dispatch_delivery(svc: Services, delivery_id: int) -> None:
    try:
        svc.jobs.deliver(delivery_id)
    except Exception as exc:  # the sweeper delivers it once the lease runs out
        log.warning("callback %d not dispatched now: %s", delivery_id, exc)


# --- sweep ---------------------------------------------------------------------------


# A sweep this much later than its interval (plus slack) means the broker, which carries
# the beat's sweeps, was away: what was sent before may be gone.
OUTAGE_INTERVALS = 3
OUTAGE_SLACK = 5.0
# A task cannot be running past its hard time limit: a run claimed longer ago than this
# lost its worker.
DEAD_AFTER_LIMIT = 30.0


def sweep(svc: Services) -> dict[str, int]:
    """Recover what stopped moving; returns counts of what was done, for logs and tests.

    Queued is not stuck: a stage whose message still waits in its queue (a backlog) is
    left alone. What is resent: a stage whose message is gone (its queue is empty yet the
    stage never started, or the broker was away or restarted), and a stage claimed by a
    worker for longer than a task may run.
    """
    now = utcnow()
    outage = _broker_was_away(svc, now)
    depths = _depths(svc)
    settings = svc.settings
    quiet = timedelta(seconds=min(settings.stuck_after, settings.task_time_limit))
    cutoff = now - (timedelta(seconds=OUTAGE_SLACK) if outage else quiet)
    counts = {
        "requeued": 0,
        "redispatched": 0,
        "concluded": 0,
        "waiting": 0,
        "deliveries": 0,
        "expired": 0,
        "promotions": 0,
        "retro": 0,
    }
    with svc.session() as s:
        rows = list(
            s.execute(
                select(Scan.id, Scan.status, Scan.kind)
                .where(
                    Scan.status.in_((ScanStatus.QUEUED, ScanStatus.SCANNING)),
                    Scan.updated_at < cutoff,
                )
                .order_by(Scan.updated_at)
                .limit(500)
            )
        )
        for scan_id, _, _ in rows:
            # Touch first, so the next sweep waits a full period before looking again.
            s.execute(update(Scan).where(Scan.id == scan_id).values(updated_at=now))
    for scan_id, status, kind in rows:
        urgent, background = kind == ScanKind.PREFLIGHT, kind == ScanKind.RETRO
        try:
            if status == ScanStatus.QUEUED:
                start_queue = "retro" if background else queue_of("intake", urgent)
                if not outage and _waiting(depths, start_queue):
                    counts["waiting"] += 1
                    continue
                if background:
                    svc.jobs.start_retro(scan_id)
                else:
                    svc.jobs.start_scan(scan_id, urgent=urgent)
                counts["requeued"] += 1
            else:
                counts[_recover(svc, scan_id, urgent, depths, outage, background)] += 1
        except Exception as exc:
            log.warning("sweep: scan %s not recovered yet: %s", scan_id, exc)
    for delivery_id in due(svc):
        _dispatch_delivery(svc, delivery_id)
        counts["deliveries"] += 1
    counts["expired"] = expire_preflights(svc)
    counts["promotions"], counts["retro"] = _sweep_cdn(svc)
    return counts


def _broker_was_away(svc: Services, now: datetime) -> bool:
    """Whether the broker was away or restarted since the last sweep (and record this one)."""
    try:
        identity = svc.jobs.broker_identity()
    except Exception:
        identity = None
    gap = OUTAGE_INTERVALS * svc.settings.sweep_interval + OUTAGE_SLACK
    with svc.session() as s:
        insert_if_absent(s, SweeperState, {"id": 1})
        state = s.get_one(SweeperState, 1, with_for_update=True)
        last = aware(state.last_sweep_at)
        away = last is not None and (now - last).total_seconds() > gap
        restarted = identity is not None and state.broker_identity not in (None, identity)
        state.last_sweep_at = now
        if identity is not None:
            state.broker_identity = identity
    if away or restarted:
        why = "restarted" if restarted else f"silent since {iso(last)}"
        log.warning("sweep: the broker was away (%s): resending what was in flight", why)
    return away or restarted


def _depths(svc: Services) -> dict[str, int] | None:
    try:
        return svc.jobs.depths()
    except Exception as exc:
        log.warning("sweep: queue depths unknown: %s", exc)
        return None


def _waiting(depths: dict[str, int] | None, queue: str) -> bool:
    """A message for this queue may still be waiting (a backlog, or we cannot tell)."""
    return depths is None or depths.get(queue, 0) > 0


def _recover(
    svc: Services,
    scan_id: str,
    urgent: bool,
    depths: dict[str, int] | None,
    outage: bool,
    background: bool = False,
) -> str:
    now = utcnow()
    dead = timedelta(seconds=svc.settings.task_time_limit + DEAD_AFTER_LIMIT)
    with svc.session() as s:
        runs = list(
            s.execute(
                select(StageRun.stage, StageRun.status, StageRun.started_at)
                .where(
                    StageRun.scan_id == scan_id,
                    StageRun.status.in_((STAGE_PENDING, STAGE_RUNNING)),
                )
                .order_by(StageRun.id)
            )
        )
    if not runs:
        conclude_scan(svc, scan_id)
        return "concluded"
    lost = []
    for stage, status, started_at in runs:
        if status == STAGE_RUNNING:
            if started_at is not None and now - (aware(started_at) or now) > dead:
                lost.append(stage)
        elif outage or not _waiting(depths, queue_of(stage, urgent, background)):
            lost.append(stage)
    if not lost:
        return "waiting"
    log.warning("sweep: scan %s lost %s, dispatching again", scan_id, lost)
    svc.jobs.run_stages(scan_id, lost, urgent=urgent, background=background)
    return "redispatched"


def _sweep_cdn(svc: Services) -> tuple[int, int]:
    """Promotions and yanks whose storage work stopped, then retro-scans: a rule or
    advisory change opens a plan, and free slots take its next versions."""
    promotions = 0
    for promotion_id in cdn_sync.unsynced(svc):
        try:
            svc.jobs.promote(promotion_id)
            promotions += 1
        except Exception as exc:
            log.warning("sweep: promotion %d not dispatched yet: %s", promotion_id, exc)
    try:
        retro.detect(svc)
        started = retro.tick(svc)
    except Exception as exc:  # the next sweep tries again; scans and callbacks went on
        log.warning("sweep: retro-scans not planned or started: %s", exc)
        started = 0
    return promotions, started


def expire_preflights(svc: Services, limit: int = 200) -> int:
    """Pre-flight reports are the CI user's code: drop them, keep a tombstone row."""
    now = utcnow()
    with svc.session() as s:
        ids = list(
            s.scalars(
                select(Scan.id)
                .where(
                    Scan.kind == ScanKind.PREFLIGHT,
                    Scan.status == ScanStatus.COMPLETED,
                    Scan.expires_at < now,
                )
                .limit(limit)
            )
        )
        if not ids:
            return 0
        keys = list(s.scalars(select(Artifact.blob_key).where(Artifact.scan_id.in_(ids))))
        # Explicit purges of pre-flight data only (decisions stay); nothing cascades.
        s.execute(delete(Artifact).where(Artifact.scan_id.in_(ids)))
        s.execute(delete(FindingRecord).where(FindingRecord.scan_id.in_(ids)))
        s.execute(delete(StageRun).where(StageRun.scan_id.in_(ids)))
        s.execute(
            update(Scan)
            .where(Scan.id.in_(ids))
            .values(status=ScanStatus.EXPIRED, report=None, updated_at=now)
        )
    for key in keys:
        svc.blobs.delete(key)
    return len(ids)
