"""What a scan saw, kept for the risk delta: files and their hashes, origins, dependencies.

Collected once when the scan concludes (the bundle is unpacked then anyway), so comparing
two versions later reads two small records instead of unpacking two bundles.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from scanner.findings import Category, StageResult, StageStatus
from scanner.manifest import Manifest
from scanner.runtime import host_origin

FACTS_VERSION = 1


def _origin(url: str, host: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        return None
    origin = f"{parts.scheme}://{parts.netloc.lower()}"
    return None if origin == host else origin


def observed_origins(traces: Iterable[dict[str, Any]]) -> list[str]:
    """Origins the plugin tried to reach in the browser (the host page excluded)."""
    found: set[str] = set()
    for trace in traces:
        host = host_origin(trace)
        for r in trace.get("requests", []):
            if isinstance(r, dict) and r.get("outcome") != "host":
                origin = _origin(str(r.get("url", "")), host)
                if origin:
                    found.add(origin)
        for e in trace.get("events", []):
            if isinstance(e, dict) and e.get("type") in ("request", "element-url"):
                origin = _origin(str(e.get("url", "")), host)
                if origin:
                    found.add(origin)
    return sorted(found)


def collect(
    files: Sequence[tuple[str, str, int]],
    manifest: Manifest | None,
    stages: Sequence[StageResult],
    traces: Iterable[dict[str, Any]],
) -> dict[str, Any]:
    by_name = {s.name: s for s in stages}
    deps = by_name.get("dependencies")
    components = list(deps.raw.get("components", [])) if deps is not None else []
    capability_rows = by_name.get("capabilities")
    table = capability_rows.raw.get("table", []) if capability_rows is not None else []
    used = sorted(
        str(row["capability"])
        for row in table
        if row.get("declared") or row.get("static") or row.get("observed")
    )
    findings = [f for s in stages for f in s.findings]
    return {
        "version": FACTS_VERSION,
        "files": [list(f) for f in sorted(files)],
        "manifest": dict(manifest.raw) if manifest is not None else None,
        "declared_origins": (
            ["*"]
            if manifest is not None and manifest.capabilities.network_any
            else sorted(str(o) for o in manifest.capabilities.network)
            if manifest is not None
            else []
        ),
        "observed_origins": observed_origins(traces),
        "capabilities": used,
        "dependencies": sorted(
            {f"{c['ecosystem']}:{c['name']}@{c.get('version') or '?'}" for c in components}
        ),
        "vendored": {
            str(c["declared_in"]): f"{c['name']}@{c.get('version') or '?'}"
            for c in components
            if c.get("ecosystem") == "retirejs"
        },
        "advisories": sorted(
            {
                f"{f.rule_id.removeprefix('vuln:')} ({dict(f.details).get('package', '?')}"
                f"@{dict(f.details).get('installed', '?')})"
                for f in findings
                if f.category is Category.VULNERABLE_DEPENDENCY
            }
        ),
        "stage_gaps": sorted(
            {s.name for s in stages if s.status is not StageStatus.OK}
            | {s.name for s in stages if s.coverage.not_scanned}
        ),
    }
