"""Stage results to database rows and back, so a scan can be concluded from its records."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from scanner.findings import (
    Category,
    Coverage,
    Finding,
    RuleState,
    Severity,
    SkippedFile,
    StageResult,
    StageStatus,
)
from service.models import FindingRecord, StageRun


def finding_row(f: Finding, scan_id: str, stage_run_id: int) -> FindingRecord:
    return FindingRecord(
        scan_id=scan_id,
        stage_run_id=stage_run_id,
        stage=f.stage,
        rule_id=f.rule_id,
        category=f.category.value,
        severity=int(f.severity),
        message=f.message,
        path=f.path,
        line=f.line,
        evidence=f.evidence,
        state=f.state.value,
        details=[list(pair) for pair in f.details],
    )


def finding_of(row: FindingRecord) -> Finding:
    return Finding(
        row.stage,
        row.rule_id,
        Category(row.category),
        Severity(row.severity),
        row.message,
        path=row.path,
        line=row.line,
        evidence=row.evidence,
        state=RuleState(row.state),
        details=tuple((str(k), str(v)) for k, v in (row.details or [])),
    )


def fill_stage_run(run: StageRun, result: StageResult) -> None:
    """Copy a result's outcome onto its row (findings and artifacts are rows of their own)."""
    run.version = result.version
    run.status = result.status.value
    run.duration_ms = result.duration_ms
    run.error = result.error
    run.coverage = result.coverage.to_dict()
    run.tool_versions = dict(result.tool_versions)
    run.raw = _jsonable(result.raw)


def result_of(run: StageRun, findings: list[FindingRecord]) -> StageResult:
    coverage = Coverage()
    if run.coverage:
        coverage.scanned = list(run.coverage.get("scanned", []))
        coverage.not_scanned = [
            SkippedFile(s["path"], s["reason"]) for s in run.coverage.get("not_scanned", [])
        ]
    return StageResult(
        run.stage,
        run.version,
        StageStatus(run.status),
        findings=[finding_of(f) for f in findings],
        coverage=coverage,
        duration_ms=run.duration_ms or 0.0,
        error=run.error,
        tool_versions=dict(run.tool_versions or {}),
        raw=dict(run.raw or {}),
    )


def record_findings(session: Session, run: StageRun, findings: list[Finding]) -> None:
    session.add_all(finding_row(f, run.scan_id, run.id) for f in findings)


def _jsonable(value: Any) -> Any:
    """Raw tool output may hold sets and tuples; JSON columns want lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
