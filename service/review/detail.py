"""Everything the submission page and its API show, gathered in one read.

Values are passed through as data (never as markup): the templates escape them and the
API serialises them. Nothing here trusts a bundle-controlled string to be well formed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner.findings import Severity
from scanner.rulebook import load_rulebook
from scanner.ruleset import ruleset_hash
from service.blobs import BlobNotFoundError
from service.cdn.paths import file_key, manifest_key, version_prefix
from service.cdn.purge import url_of
from service.models import (
    Artifact,
    Decision,
    FindingRecord,
    Promotion,
    Publisher,
    ReviewItem,
    Scan,
    Submission,
    User,
    aware,
    iso,
)
from service.review import autoapprove, claims
from service.review.comparison import delta_for, facts_of
from service.review.decisions import latest_scan
from service.review.marks import latest_marks
from service.services import Services

TRACE_GROUPS = {
    "request": "requests",
    "csp-violation": "csp",
    "page-listener": "listeners",
    "dom-outside": "dom",
    "document-write": "dom",
    "create-element": "dom",
}
MAX_TRACE_EVENTS = 2000


@dataclass
class Detail:
    submission: dict[str, Any]
    scan: dict[str, Any] | None
    findings_by_stage: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    finding_count: int = 0
    capabilities: list[dict[str, Any]] = field(default_factory=list)
    csp: str | None = None
    sri: dict[str, str] = field(default_factory=dict)
    dependencies: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    coverage_gaps: list[dict[str, str]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    traces: dict[str, dict[str, Any]] = field(default_factory=dict)
    delta: dict[str, Any] | None = None
    claim: dict[str, Any] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    auto_approval: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)
    # plugin.json as the bundle declared it (every value is the publisher's text).
    manifest: dict[str, Any] | None = None
    # Where the version is on the CDN (or why not), and what a retro-scan made of it.
    promotion: dict[str, Any] | None = None
    retro: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "submission": self.submission,
            "scan": self.scan,
            "findings": [
                f
                for cats in self.findings_by_stage.values()
                for rows in cats.values()
                for f in rows
            ],
            "capabilities": self.capabilities,
            "csp": self.csp,
            "sri": self.sri,
            "dependencies": self.dependencies,
            "stages": self.stages,
            "coverage_gaps": self.coverage_gaps,
            "artifacts": self.artifacts,
            "delta": self.delta,
            "claim": self.claim,
            "decisions": self.decisions,
            "history": self.history,
            "auto_approval": self.auto_approval,
            "manifest": self.manifest,
            "promotion": self.promotion,
            "retro": self.retro,
        }


def _finding_key(f: dict[str, Any]) -> tuple[Any, ...]:
    return (f.get("stage"), f.get("rule_id"), f.get("path"), f.get("line"), f.get("message"))


def load(svc: Services, s: Session, submission_id: str, viewer_id: int | None) -> Detail | None:
    sub = s.get(Submission, submission_id)
    if sub is None:
        return None
    publisher = s.get_one(Publisher, sub.publisher_id)
    scan = latest_scan(s, sub.id)
    detail = Detail(
        submission={
            "id": sub.id,
            "plugin": sub.plugin_name,
            "version": sub.plugin_version,
            "publisher": publisher.external_id,
            "publisher_trust": publisher.trust,
            "status": sub.status,
            "verdict": sub.verdict,
            "sha256": sub.bundle_sha256,
            "submitted_at": iso(sub.created_at),
        },
        scan=None,
    )
    detail.history = [
        {
            "from": e.from_status,
            "to": e.to_status,
            "at": iso(e.at),
            "actor": e.actor,
            "reason": e.reason,
        }
        for e in sub.events
    ]
    detail.decisions = _decisions(s, sub.id)
    item = s.get(ReviewItem, sub.id)
    if item is not None:
        st = claims.state(s, item)
        detail.claim = {
            "holder": st.holder,
            "until": iso(st.until),
            "mine": st.holder_id is not None and st.holder_id == viewer_id,
        }
        detail.submission["due_at"] = iso(item.due_at)
        detail.submission["due_overridden"] = item.due_overridden
        if item.retro_state is not None:
            detail.retro = {
                "state": item.retro_state,
                "at": iso(item.retro_at),
                "scan_id": item.retro_scan_id,
                "delta": item.retro_delta,
            }
    detail.promotion = _promotion(svc, s, sub.id)
    if scan is None:
        return detail
    report = scan.report or {}
    current_rules = ruleset_hash(svc.settings.rules_dir)
    detail.scan = {
        "id": scan.id,
        "status": scan.status,
        "verdict": scan.verdict,
        "risk_score": scan.risk_score,
        "ruleset": scan.ruleset,
        "stale": scan.ruleset is not None and scan.ruleset != current_rules,
        "bundle_sha256": scan.bundle_sha256,
        "finished_at": iso(scan.finished_at),
        "reasons": report.get("reasons", []),
        "error": scan.error,
    }
    if scan.status != "completed":
        return detail
    facts = facts_of(s, scan.id)
    detail.files = {str(p): str(h) for p, h, *_ in (facts or {}).get("files", [])}
    manifest = (facts or {}).get("manifest")
    detail.manifest = manifest if isinstance(manifest, dict) else None
    _fill_findings(svc, s, detail, scan, report)
    detail.capabilities = list(report.get("capabilities", []))
    detail.csp = report.get("csp")
    detail.sri = dict(report.get("sri", {}))
    detail.stages = list(report.get("stages", []))
    detail.coverage_gaps = [
        {"stage": stage, "path": gap.get("path", ""), "reason": gap.get("reason", "")}
        for stage, cov in report.get("coverage", {}).items()
        for gap in cov.get("not_scanned", [])
    ]
    detail.dependencies = _dependencies(s, scan, report)
    detail.artifacts = _artifacts(s, scan.id)
    detail.traces = _traces(svc, s, scan.id)
    detail.delta = delta_for(s, sub, scan, facts, report).to_dict()
    if item is not None and sub.status == "awaiting_review":
        detail.auto_approval = autoapprove.evaluate_submission(
            s, sub, scan, facts, report
        ).to_dict()
    return detail


def _promotion(svc: Services, s: Session, submission_id: str) -> dict[str, Any] | None:
    p = s.scalar(select(Promotion).where(Promotion.submission_id == submission_id))
    if p is None:
        return None
    settings = svc.settings
    return {
        "state": p.state,
        "in_sync": p.store_synced,
        "published_at": iso(p.published_at),
        "yanked_at": iso(p.yanked_at),
        "yank_reason": p.yank_reason,
        "yanked_by": p.yanked_by,
        "error": p.error,
        "hits": p.hits,
        "files": len([f for f in (p.files or []) if "integrity" in f]),
        "base_url": url_of(settings, version_prefix(p.plugin_name, p.plugin_version)) + "/",
        "manifest_url": url_of(settings, manifest_key(p.plugin_name, p.plugin_version)),
        "entry_url": url_of(settings, file_key(p.plugin_name, p.plugin_version, p.entry))
        if p.entry
        else None,
    }


def _fill_findings(
    svc: Services, s: Session, detail: Detail, scan: Scan, report: dict[str, Any]
) -> None:
    book = load_rulebook(svc.settings.rules_dir)
    suppressed = {_finding_key(f): f.get("suppressed_by") for f in report.get("findings", [])}
    rows = list(
        s.scalars(
            select(FindingRecord)
            .where(FindingRecord.scan_id == scan.id)
            .order_by(FindingRecord.severity.desc(), FindingRecord.id)
        )
    )
    marks = latest_marks(s, [r.id for r in rows])
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        info = book.get(r.rule_id)
        f = {
            "id": r.id,
            "rule_id": r.rule_id,
            "stage": r.stage,
            "category": r.category,
            "severity": Severity(r.severity).label,
            "message": r.message,
            "path": r.path,
            "line": r.line,
            "evidence": r.evidence,
            "state": r.state,
            "details": dict((str(k), str(v)) for k, v in (r.details or [])),
            "explanation": info.explanation if info else None,
            "rule_title": info.title if info else None,
            "mark": marks.get(r.id),
            "file_sha256": detail.files.get(r.path or ""),
        }
        f["suppressed_by"] = suppressed.get(_finding_key(f))
        grouped[r.stage][r.category].append(f)
    detail.findings_by_stage = {k: dict(v) for k, v in grouped.items()}
    detail.finding_count = len(rows)


def _dependencies(s: Session, scan: Scan, report: dict[str, Any]) -> list[dict[str, Any]]:
    from service.models import StageRun

    run = s.scalar(
        select(StageRun).where(StageRun.scan_id == scan.id, StageRun.stage == "dependencies")
    )
    components = list((run.raw or {}).get("components", [])) if run is not None else []
    advisories: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for f in report.get("findings", []):
        if f.get("category") != "vulnerable-dependency":
            continue
        d = f.get("details") or {}
        advisories[(str(d.get("package", "")).lower(), str(d.get("installed", "")))].append(
            {
                "id": str(f.get("rule_id", "")).removeprefix("vuln:"),
                "severity": f.get("severity"),
                "fixed": d.get("fixed"),
                "message": f.get("message"),
            }
        )
    out = []
    for c in components:
        key = (str(c.get("name", "")).lower(), str(c.get("version") or ""))
        out.append({**c, "advisories": advisories.get(key, [])})
    out.sort(key=lambda c: (-len(c["advisories"]), str(c.get("name"))))
    return out


def _artifacts(s: Session, scan_id: str) -> list[dict[str, Any]]:
    return [
        {"name": a.name, "media_type": a.media_type, "size": a.size}
        for a in s.scalars(
            select(Artifact).where(Artifact.scan_id == scan_id).order_by(Artifact.name)
        )
    ]


def _traces(svc: Services, s: Session, scan_id: str) -> dict[str, dict[str, Any]]:
    """The runtime traces per role, as a timeline grouped the way a reviewer reads them."""
    out: dict[str, dict[str, Any]] = {}
    rows = s.execute(
        select(Artifact.name, Artifact.blob_key).where(
            Artifact.scan_id == scan_id, Artifact.name.like("runtime-trace-%.json")
        )
    )
    for name, key in rows:
        role = name.removeprefix("runtime-trace-").removesuffix(".json")
        try:
            data = json.loads(svc.blobs.get_bytes(key))
        except (BlobNotFoundError, ValueError):
            out[role] = {"error": "the trace could not be read", "events": [], "requests": []}
            continue
        if not isinstance(data, dict):
            continue
        events = [e for e in data.get("events", []) if isinstance(e, dict)][:MAX_TRACE_EVENTS]
        times = [float(e["t"]) for e in events if isinstance(e.get("t"), int | float)]
        start = min(times, default=0.0)
        timeline = []
        for e in events:
            t = e.get("t")
            facts = {
                str(k): str(v)[:500]
                for k, v in e.items()
                if k not in ("type", "t", "frame") and v not in (None, "")
            }
            timeline.append(
                {
                    "ms": int(t - start) if isinstance(t, int | float) else None,
                    "type": str(e.get("type", "?")),
                    "group": TRACE_GROUPS.get(str(e.get("type")), "api"),
                    "facts": facts,
                }
            )
        requests = [
            {
                "method": str(r.get("method", "")),
                "url": str(r.get("url", "")),
                "outcome": str(r.get("outcome", "")),
                "body": str(r.get("body", ""))[:2000],
                "headers": {str(k): str(v) for k, v in (r.get("headers") or {}).items()}
                if isinstance(r.get("headers"), dict)
                else {},
            }
            for r in data.get("requests", [])
            if isinstance(r, dict)
        ]
        out[role] = {
            "events": timeline,
            "requests": requests,
            "console_errors": [str(c)[:500] for c in data.get("console_errors", [])][:100],
            "mount_error": data.get("mount_error"),
            "error": data.get("error"),
        }
    return out


def _decisions(s: Session, submission_id: str) -> list[dict[str, Any]]:
    rows = s.execute(
        select(Decision, User.name)
        .outerjoin(User, User.id == Decision.user_id)
        .where(Decision.submission_id == submission_id)
        .order_by(Decision.id)
    )
    return [
        {
            "id": d.id,
            "kind": d.kind,
            "action": d.action,
            "verdict": d.verdict,
            "actor": name or d.actor,
            "at": iso(aware(d.at)),
            "reasons": d.reasons,
            "message": d.message,
            "scan_id": d.scan_id,
            "bundle_sha256": d.bundle_sha256,
            "ruleset": d.ruleset,
        }
        for d, name in rows
    ]
