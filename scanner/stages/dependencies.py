"""Dependency audit: declared and vendored packages against the offline advisory database."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from scanner.advisories.versions import NPM, PYPI, VersionError, fixed_versions, is_affected
from scanner.config import Settings
from scanner.deps.components import STAGE, Component, DependencyScan
from scanner.deps.npm import LOCKFILES, scan_npm
from scanner.deps.python import scan_python
from scanner.deps.typosquat import PopularNames, load_popular
from scanner.deps.vendored import VendoredLibraries
from scanner.findings import Category, Finding, Severity, StageResult, truncate
from scanner.workspace import Workspace

if TYPE_CHECKING:
    # SQLAlchemy (about 0.7 s to import) is needed where the stage runs (a worker
    # process), not where the pipeline is assembled.
    from scanner.advisories.store import AdvisoryStore, KnownVulnerability

_SEVERITY = {
    "low": Severity.LOW,
    "medium": Severity.MEDIUM,
    "high": Severity.HIGH,
    "critical": Severity.CRITICAL,
}
MANIFEST_FILES = ("package.json", *LOCKFILES, "requirements.txt", "pyproject.toml")


class AdvisoryLookup(Protocol):
    def lookup(
        self, ecosystem: str, names: Iterable[str]
    ) -> dict[str, list[KnownVulnerability]]: ...


@lru_cache(maxsize=4)
def _store(url: str, rules_dir: Path) -> AdvisoryStore:
    from scanner.advisories.snapshot import ensure_snapshot
    from scanner.advisories.store import AdvisoryStore
    from scanner.db import make_engine

    store = AdvisoryStore(make_engine(url))
    ensure_snapshot(store, rules_dir)  # the embedded default finds real vulnerabilities at once
    return store


class DependencyStage:
    name: ClassVar[str] = STAGE
    version: ClassVar[int] = 2  # 2: RE2, gaps for unusable detectors
    # CPU-bound: a worker process that can be killed (whole bundle: it joins files up).
    runs_in_process: ClassVar[bool] = True

    def __init__(
        self, advisories: AdvisoryLookup, vendored: VendoredLibraries, popular: PopularNames
    ) -> None:
        self.advisories = advisories
        self.vendored = vendored
        self.popular = popular

    @classmethod
    def from_settings(cls, settings: Settings) -> DependencyStage:
        from scanner.db import database_url

        store = _store(database_url(settings), settings.rules_dir)
        return cls(
            store,
            VendoredLibraries(store.detectors()),
            load_popular(settings.rules_dir / "popular-packages.toml"),
        )

    def run(self, workspace: Workspace) -> StageResult:
        scan = DependencyScan()
        scan_npm(workspace, scan)
        scan_python(workspace, scan)
        vendored, backdoors, gaps = self.vendored.scan_with_gaps(workspace)
        scan.components.extend(h.component for h in vendored)
        result = StageResult(self.name, self.version, findings=scan.findings)
        for gap in gaps:
            result.findings.append(
                Finding(
                    self.name,
                    "dep-detector-unusable",
                    Category.COVERAGE,
                    Severity.LOW,
                    f"{gap.path} may vendor {gap.library}, but a RetireJS pattern for it cannot"
                    " run on the linear-time engine, so its version was not checked",
                    path=gap.path,
                    evidence=truncate(gap.reason),
                )
            )
        for b in backdoors:
            result.findings.append(
                Finding(
                    self.name,
                    f"backdoored:{b.library}",
                    Category.MALWARE,
                    Severity.CRITICAL,
                    f"loads {b.library}, a source known to serve malicious code",
                    path=b.path,
                    evidence=truncate(b.url),
                )
            )
        result.findings.extend(self._typosquats(scan.components, scan.findings))
        result.findings.extend(self._vulnerabilities(scan.components, result))
        result.coverage.scanned = sorted(
            {c.declared_in for c in scan.components}
            | {f.path for f in workspace.files if Path(f.path).name in MANIFEST_FILES}
        )
        result.raw["components"] = [
            {
                "ecosystem": c.ecosystem,
                "name": c.name,
                "version": c.version,
                "declared_in": c.declared_in,
                "dev": c.dev,
                "purl": c.purl,
            }
            for c in scan.components
        ]
        return result

    def _typosquats(
        self, components: list[Component], declared: list[Finding]
    ) -> Iterable[Finding]:
        # The bundle's own package.json install hooks run when its dependencies install.
        own_hooks = any(f.rule_id == "dep-install-script" for f in declared)
        seen = set()
        for c in components:
            if c.ecosystem not in (NPM, PYPI) or (c.ecosystem, c.name) in seen:
                continue
            seen.add((c.ecosystem, c.name))
            target = self.popular.near(c.ecosystem, c.name)
            if target is not None:
                yield Finding(
                    self.name,
                    "dep-typosquat",
                    Category.SUSPICIOUS_DEPENDENCY,
                    Severity.HIGH,
                    f"{c.name} is one typo away from the popular {c.ecosystem} package {target}",
                    path=c.declared_in,
                    evidence=c.name,
                )
                if c.install_script or own_hooks:
                    yield _squat_that_runs_code(self.name, c, target, own_hooks)

    def _vulnerabilities(
        self, components: list[Component], result: StageResult
    ) -> Iterable[Finding]:
        pinned = [c for c in components if c.version]
        matches: dict[Component, list[KnownVulnerability]] = {}
        python = [c for c in pinned if c.ecosystem == PYPI]
        if python:
            matches.update(_pypi_matches(self.advisories, python, result))
        for ecosystem in sorted({c.ecosystem for c in pinned} - {PYPI}):
            group = [c for c in pinned if c.ecosystem == ecosystem]
            known = self.advisories.lookup(ecosystem, (c.name for c in group))
            for c in group:
                try:
                    matches[c] = [
                        v
                        for v in known.get(c.name.lower(), [])
                        if is_affected(ecosystem, c.version or "", v.ranges, v.versions)
                    ]
                except VersionError:
                    result.coverage.skip(c.declared_in, f"{c.name} {c.version}: unreadable version")
                    yield _unreadable(c)
        for component, vulns in matches.items():
            for same in merge_aliases(vulns):
                yield _vulnerability_finding(component, same)


def _squat_that_runs_code(stage: str, c: Component, target: str, own_hooks: bool) -> Finding:
    """A lookalike name is a guess; a lookalike that runs code at install is the attack."""
    how = "its lockfile entry runs an install script" if c.install_script else (
        "the bundle's package.json runs install scripts"
    )  # fmt: skip
    return Finding(
        stage,
        "dep-typosquat-install-script",
        Category.MALWARE,
        Severity.CRITICAL,
        f"{c.name} imitates the popular {c.ecosystem} package {target}, and {how}:"
        " the shape of a typosquatting attack",
        path=c.declared_in,
        evidence=c.name,
    )


def _pypi_matches(
    advisories: AdvisoryLookup, components: list[Component], result: StageResult
) -> dict[Component, list[KnownVulnerability]]:
    """Python packages go through pip-audit's service interface, backed by our database."""
    # pip-audit's package imports requests and more (about 1 s): only for bundles with Python.
    from pip_audit._service.interface import ResolvedDependency

    from scanner.advisories.pip_audit_service import LocalVulnerabilityService
    from scanner.advisories.store import AdvisoryStore

    assert isinstance(advisories, AdvisoryStore), "the pip-audit service needs the SQL store"
    service = LocalVulnerabilityService(advisories)
    specs = []
    for c in components:
        try:
            specs.append(ResolvedDependency(c.name, Version(c.version or "")))
        except InvalidVersion:
            result.coverage.skip(c.declared_in, f"{c.name} {c.version}: not a PEP 440 version")
            result.findings.append(_unreadable(c))
    list(service.query_all(iter(specs)))
    out: dict[Component, list[KnownVulnerability]] = {}
    for c in components:
        key = (
            (canonicalize_name(c.name), str(Version(c.version or "")))
            if _valid(c.version)
            else None
        )
        if key is not None and key in service.matched:
            out[c] = service.matched[key]
    return out


def _valid(version: str | None) -> bool:
    try:
        Version(version or "")
    except InvalidVersion:
        return False
    return True


def _unreadable(c: Component) -> Finding:
    return Finding(
        STAGE,
        "dep-not-audited",
        Category.COVERAGE,
        Severity.MEDIUM,
        f"{c.name} {c.version} has a version that cannot be ordered; it was not checked",
        path=c.declared_in,
    )


def merge_aliases(vulns: list[KnownVulnerability]) -> list[list[KnownVulnerability]]:
    """Group advisories that name the same vulnerability (PYSEC / GHSA / CVE aliases)."""
    groups: list[tuple[set[str], list[KnownVulnerability]]] = []
    for v in vulns:
        ids = {v.advisory_id, *v.aliases}
        joined = [g for g in groups if g[0] & ids]
        merged_ids, merged = set(ids), [v]
        for g in joined:
            merged_ids |= g[0]
            merged.extend(g[1])
            groups.remove(g)
        groups.append((merged_ids, merged))
    return [g[1] for g in groups]


def _vulnerability_finding(c: Component, group: list[KnownVulnerability]) -> Finding:
    ids = sorted(
        {v.advisory_id for v in group} | {a for v in group for a in v.aliases}, key=_id_rank
    )
    labels = [v.severity for v in group if v.severity]
    severity = max((_SEVERITY[s] for s in labels), default=Severity.MEDIUM)
    if c.dev:
        severity = severity.lowered()  # not shipped to users' browsers
    fixed = sorted({f for v in group for f in fixed_versions(v.ranges)})
    what = "vendored library" if c.ecosystem == "retirejs" else f"{c.ecosystem} package"
    message = (
        f"{what} {c.name} {c.version} has a known vulnerability ({', '.join(ids[:4])})"
        + (f"; fixed in {', '.join(fixed[:3])}" if fixed else "; no fixed version")
        + ("" if labels else "; severity not given by the advisory")
        + (" (dev dependency)" if c.dev else "")
    )
    refs = sorted({r for v in group for r in v.references})
    return Finding(
        STAGE,
        f"vuln:{ids[0]}",
        Category.VULNERABLE_DEPENDENCY,
        severity,
        message,
        path=c.declared_in,
        evidence=f"{c.name}@{c.version}",
        details=(
            ("package", c.name),
            ("ecosystem", c.ecosystem),
            ("installed", c.version or ""),
            ("fixed", ", ".join(fixed)),
            ("advisories", ", ".join(ids)),
            ("cvss", next((v.cvss for v in group if v.cvss), "") or ""),
            ("references", " ".join(refs[:5])),
        ),
    )


def _id_rank(advisory_id: str) -> tuple[int, str]:
    order = ("GHSA-", "CVE-", "PYSEC-")
    return next(
        (i for i, p in enumerate(order) if advisory_id.startswith(p)), len(order)
    ), advisory_id
