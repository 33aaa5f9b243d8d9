"""A report for people reading a terminal; every bundle-controlled field is escaped."""

from __future__ import annotations

from scanner.findings import RuleState
from scanner.pipeline import ScanResult
from scanner.reports.terminal import terminal_safe as safe


def render_text(result: ScanResult) -> str:
    d = result.decision
    name = (
        f"{safe(result.manifest_name)}@{safe(result.manifest_version)}"
        if result.manifest_name
        else safe(result.bundle_name)
    )
    lines = [
        f"{name}  sha256:{result.bundle.sha256[:16]}…  "
        f"{result.bundle.size} bytes, {len(result.files)} files",
        f"verdict: {d.verdict.label.upper()}   risk score {d.risk_score}/100",
        "",
        "why:",
        *(f"  [{r.action.label}] {safe(r.text)}" for r in d.reasons),
        "",
        "findings:" if result.findings else "findings: none",
    ]
    for f in result.findings:
        where = f"{f.path}:{f.line}" if f.path and f.line else (f.path or "-")
        flag = " (evaluation rule)" if f.state is RuleState.EVALUATION else ""
        lines.append(f"  {f.severity.label:8} {f.category.value:22} {safe(f.rule_id)}{flag}")
        lines.append(f"           {safe(f.message)}")
        evidence = f"  evidence: {safe(f.evidence)}" if f.evidence else ""
        lines.append(f"           at {safe(where)}{evidence}")
    lines += ["", "stages:"]
    for s in result.stages:
        extra = f"  {safe(s.error)}" if s.error else ""
        gaps = (
            f"  ({len(s.coverage.not_scanned)} files not scanned)" if s.coverage.not_scanned else ""
        )
        lines.append(f"  {s.name:14} {s.status.value:8} {s.duration_ms:8.1f} ms{gaps}{extra}")
    lines.append(f"\nruleset {result.ruleset}")
    return "\n".join(lines) + "\n"
