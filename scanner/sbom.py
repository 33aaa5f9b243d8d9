"""CycloneDX SBOM of a scanned bundle: every component found, with its vulnerabilities."""

from __future__ import annotations

from typing import Any

from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentScope, ComponentType
from cyclonedx.model.vulnerability import (
    BomTarget,
    Vulnerability,
    VulnerabilityRating,
    VulnerabilitySeverity,
)
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from scanner.findings import Category
from scanner.pipeline import ScanResult

_SEVERITY = {
    "critical": VulnerabilitySeverity.CRITICAL,
    "high": VulnerabilitySeverity.HIGH,
    "medium": VulnerabilitySeverity.MEDIUM,
    "low": VulnerabilitySeverity.LOW,
    "info": VulnerabilitySeverity.INFO,
}


def build_sbom(result: ScanResult) -> str:
    bom = Bom()
    root = bom.metadata.component = Component(
        name=result.manifest_name or result.bundle_name,
        version=result.manifest_version,
        type=ComponentType.APPLICATION,
        bom_ref=f"bundle:{result.bundle.sha256}",
    )
    refs: dict[tuple[str, str, str], str] = {}
    for raw in _components(result):
        key = (raw["ecosystem"], raw["name"].lower(), raw["version"] or "")
        if key in refs:
            continue
        purl = PackageURL.from_string(raw["purl"]) if raw["ecosystem"] in ("npm", "PyPI") else None
        ref = raw["purl"] if purl else f"vendored:{raw['name']}@{raw['version']}"
        refs[key] = ref
        bom.components.add(
            Component(
                name=raw["name"],
                version=raw["version"],
                purl=purl,
                bom_ref=ref,
                scope=ComponentScope.EXCLUDED if raw["dev"] else ComponentScope.REQUIRED,
                description=f"declared in {raw['declared_in']}",
            )
        )
    # Everything found is a dependency of the bundle (lockfiles do not say who needs whom).
    bom.register_dependency(root, list(bom.components))
    for f in result.findings:
        if f.category is not Category.VULNERABLE_DEPENDENCY:
            continue
        details = dict(f.details)
        eco = details.get("ecosystem", "")
        ref = refs.get((eco, details.get("package", "").lower(), details.get("installed", "")))
        fixed = details.get("fixed")
        bom.vulnerabilities.add(
            Vulnerability(
                id=f.rule_id.removeprefix("vuln:"),
                description=f.message,
                ratings=[
                    VulnerabilityRating(
                        severity=_SEVERITY[f.severity.label], vector=details.get("cvss") or None
                    )
                ],
                recommendation=f"upgrade to {fixed}" if fixed else None,
                affects=[BomTarget(ref=ref)] if ref else None,
            )
        )
    return str(JsonV1Dot6(bom).output_as_string(indent=2)) + "\n"


def _components(result: ScanResult) -> list[dict[str, Any]]:
    return [c for s in result.stages for c in s.raw.get("components", [])]
