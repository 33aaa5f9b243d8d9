"""ScanResults built by hand, so reporters are tested on exactly the fields they print."""

from __future__ import annotations

from collections.abc import Sequence

from scanner.findings import Finding, StageResult, StageStatus
from scanner.intake import BundleInfo, UnpackedFile
from scanner.pipeline import ScanResult
from scanner.policy import Policy, decide
from tests.paths import PROJECT_ROOT


def scan_result(
    findings: Sequence[Finding],
    *,
    bundle_name: str = "demo.zip",
    manifest_name: str | None = "demo",
    stages: Sequence[StageResult] = (),
) -> ScanResult:
    by_stage: dict[str, StageResult] = {}
    for f in findings:
        by_stage.setdefault(f.stage, StageResult(f.stage, 1)).findings.append(f)
    results = [*by_stage.values(), *stages]
    policy = Policy.load(PROJECT_ROOT / "rules" / "policy.toml")
    return ScanResult(
        bundle_name=bundle_name,
        bundle=BundleInfo(sha256="ab" * 32, size=1234),
        files=(UnpackedFile("dist/bundle.js", 10, "cd" * 32),),
        stages=results,
        decision=decide(list(findings), results, policy),
        ruleset="sha256:" + "0" * 64,
        manifest_name=manifest_name,
        manifest_version="1.0.0" if manifest_name else None,
    )


def failed_stage(name: str, error: str) -> StageResult:
    return StageResult(name, 1, StageStatus.ERROR, error=error)
