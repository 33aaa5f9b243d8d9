"""What dependency discovery produces: components, and findings about how they are declared."""

from __future__ import annotations

from dataclasses import dataclass, field

from scanner.findings import Category, Finding, Severity, truncate

STAGE = "dependencies"


@dataclass(frozen=True)
class Component:
    ecosystem: str  # npm | PyPI | retirejs (a library found inside the bundle's code)
    name: str
    version: str | None  # None when the declaration does not pin one
    declared_in: str
    dev: bool = False
    source: str | None = None  # resolved URL, git or path
    # The lockfile says installing it runs code (npm's hasInstallScript).
    install_script: bool = False

    @property
    def purl(self) -> str:
        kind = {"npm": "npm", "PyPI": "pypi"}.get(self.ecosystem, "generic")
        name = self.name.replace("@", "%40") if kind == "npm" else self.name
        return f"pkg:{kind}/{name}" + (f"@{self.version}" if self.version else "")


@dataclass
class DependencyScan:
    components: list[Component] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def gap(self, path: str, message: str) -> None:
        self.findings.append(
            Finding(
                STAGE, "dep-not-audited", Category.COVERAGE, Severity.MEDIUM, message, path=path
            )
        )

    def suspicious(
        self,
        rule_id: str,
        path: str,
        message: str,
        *,
        evidence: str | None = None,
        severity: Severity = Severity.MEDIUM,
    ) -> None:
        self.findings.append(
            Finding(
                STAGE,
                rule_id,
                Category.SUSPICIOUS_DEPENDENCY,
                severity,
                message,
                path=path,
                evidence=truncate(evidence) if evidence else None,
            )
        )
