"""The JSON report contract (docs/report-format.md)."""

from __future__ import annotations

import json
import platform
from typing import Any

from scanner import __version__
from scanner.capabilities import table_of
from scanner.pipeline import ScanResult

SCHEMA_VERSION = 1


def report_dict(result: ScanResult) -> dict[str, Any]:
    tools = {"gatehouse": __version__, "python": platform.python_version(), **result.tool_versions}
    return {
        "schema_version": SCHEMA_VERSION,
        "bundle": {
            "file": result.bundle_name,
            "name": result.manifest_name,
            "version": result.manifest_version,
            "sha256": result.bundle.sha256,
            "size": result.bundle.size,
            "files": len(result.files),
            "tree_sha256": result.tree_sha256,
            "repack_sha256": result.repack_sha256,
        },
        "verdict": result.decision.verdict.label,
        "reasons": [r.to_dict() for r in result.decision.reasons],
        "risk_score": result.decision.risk_score,
        "findings": [f.to_dict() for f in result.findings],
        "stages": [s.stage_dict() for s in result.stages],
        "coverage": {s.name: s.coverage.to_dict() for s in result.stages},
        "capabilities": table_of(result.stages).get("table", []),
        "csp": table_of(result.stages).get("csp"),
        "sri": table_of(result.stages).get("sri", {}),
        "ruleset": result.ruleset,
        "tool_versions": dict(sorted(tools.items())),
    }


def render_json(result: ScanResult) -> str:
    return json.dumps(report_dict(result), indent=2, sort_keys=False) + "\n"
