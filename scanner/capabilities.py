"""Capability check: declared (manifest) / static (js-static) / observed (runtime), with CSP.

A stage of its own that runs after the others, because its inputs are their results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from scanner.csp import asset_integrity, build_csp
from scanner.findings import Category, Finding, RuleState, Severity, StageResult, StageStatus
from scanner.manifest import CAPABILITY_NAMES
from scanner.workspace import Workspace


class CapabilityCheck:
    name: ClassVar[str] = "capabilities"
    version: ClassVar[int] = 1

    def run(self, workspace: Workspace, results: Sequence[StageResult]) -> StageResult:
        result = StageResult(self.name, self.version)
        manifest = workspace.manifest.manifest
        if manifest is None:
            result.status, result.error = StageStatus.SKIPPED, "no valid manifest"
            return result
        by_stage = {r.name: r for r in results}
        # Each JS rule names the capability its matches exercise (rules/js/*.toml).
        static = {
            dict(f.details)["capability"]
            for f in _findings(by_stage, "js-static")
            # A recognised library's own code is not the plugin's use of a capability.
            if "capability" in dict(f.details) and f.state is RuleState.ENABLED and not f.library
        }
        runtime = by_stage.get("runtime")
        ran = runtime is not None and runtime.status is StageStatus.OK
        observed = set(runtime.raw.get("observed_capabilities", [])) if runtime else set()
        rows = []
        for cap in CAPABILITY_NAMES:
            declared = manifest.capabilities.declares(cap)
            used = cap in static or cap in observed
            verdict = "ok" if declared == used else ("undeclared" if used else "unused")
            rows.append(
                {
                    "capability": cap,
                    "declared": declared,
                    "static": cap in static,
                    "observed": (cap in observed) if ran else None,
                    "verdict": verdict,
                }
            )
            if verdict == "unused" and ran:
                result.findings.append(
                    Finding(
                        self.name,
                        "capability-unused",
                        Category.OVERBROAD_CAPABILITY,
                        Severity.LOW,
                        f"declares {cap} but neither the code nor its run uses it",
                        path="plugin.json",
                    )
                )
        # The runtime stage derived both to detonate under them; hash the assets once.
        made = runtime.raw if runtime is not None and "csp" in runtime.raw else {}
        integrity = made.get("sri") or asset_integrity(workspace)
        csp = made.get("csp") or build_csp(manifest, integrity)
        result.raw.update({"table": rows, "csp": csp, "sri": integrity})
        return result


def _findings(by_stage: dict[str, StageResult], name: str) -> list[Finding]:
    stage = by_stage.get(name)
    return stage.findings if stage is not None else []


def table_of(results: Sequence[StageResult]) -> dict[str, Any]:
    check = next((r for r in results if r.name == CapabilityCheck.name), None)
    return dict(check.raw) if check is not None else {}
