"""CycloneDX SBOM of a scanned bundle: every component found, with its vulnerabilities."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentScope, ComponentType
from cyclonedx.model.vulnerability import (
    BomTarget,
    Vulnerability,
    VulnerabilityRating,
    VulnerabilityScoreSource,
    VulnerabilitySeverity,
)
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from scanner import __version__
from scanner.advisories.feeds import cvss3_base_score
from scanner.findings import Category, Finding
from scanner.pipeline import ScanResult

_SEVERITY = {
    "critical": VulnerabilitySeverity.CRITICAL,
    "high": VulnerabilitySeverity.HIGH,
    "medium": VulnerabilitySeverity.MEDIUM,
    "low": VulnerabilitySeverity.LOW,
    "info": VulnerabilitySeverity.INFO,
}


# The CVSS version a vector names, as CycloneDX's rating method.
_METHODS = {
    "CVSS:3.0/": VulnerabilityScoreSource.CVSS_V3,
    "CVSS:3.1/": VulnerabilityScoreSource.CVSS_V3_1,
    "CVSS:4.0/": VulnerabilityScoreSource.CVSS_V4,
}


def build_sbom(result: ScanResult) -> str:
    bom = Bom()
    # Who made this document: consumers weigh an SBOM by the tool that wrote it.
    bom.metadata.tools.components.add(
        Component(
            type=ComponentType.APPLICATION,
            name="gatehouse",
            version=__version__,
            bom_ref=f"tool:gatehouse@{__version__}",
        )
    )
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
    seen: set[str] = set()
    for f in result.findings:
        if f.category is not Category.VULNERABLE_DEPENDENCY:
            continue
        details = dict(f.details)
        eco = details.get("ecosystem", "")
        ref = refs.get((eco, details.get("package", "").lower(), details.get("installed", "")))
        fixed = details.get("fixed")
        vuln_id = f.rule_id.removeprefix("vuln:")
        # Stable across runs (the library's default is a random UUID): the same advisory
        # on the same component is the same reference in every SBOM, and appears once.
        vuln_ref = f"vuln:{vuln_id}:{ref or f.evidence or f.path or 'bundle'}"
        if vuln_ref in seen:
            continue
        seen.add(vuln_ref)
        bom.vulnerabilities.add(
            Vulnerability(
                bom_ref=vuln_ref,
                id=vuln_id,
                description=f.message,
                ratings=[_rating(f, details.get("cvss") or None)],
                recommendation=f"upgrade to {fixed}" if fixed else None,
                affects=[BomTarget(ref=ref)] if ref else None,
            )
        )
    return str(JsonV1Dot6(bom).output_as_string(indent=2)) + "\n"


def _rating(f: Finding, vector: str | None) -> VulnerabilityRating:
    """The severity, with the CVSS vector, its method and base score when there is one."""
    severity = _SEVERITY[f.severity.label]
    if not vector:
        return VulnerabilityRating(severity=severity, method=VulnerabilityScoreSource.OTHER)
    method = next(
        (m for prefix, m in _METHODS.items() if vector.startswith(prefix)),
        VulnerabilityScoreSource.OTHER,
    )
    score = cvss3_base_score(vector) if method is not VulnerabilityScoreSource.CVSS_V4 else None
    return VulnerabilityRating(
        severity=severity,
        method=method,
        vector=vector,
        score=Decimal(str(score)) if score is not None else None,
    )


def _components(result: ScanResult) -> list[dict[str, Any]]:
    return [c for s in result.stages for c in s.raw.get("components", [])]
