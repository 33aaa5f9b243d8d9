"""pip-audit's VulnerabilityService interface, answered from the local advisory database.

With it, pip-audit's own machinery (and anything built on the interface) audits Python
dependencies offline, without resolving or installing anything.
"""

from __future__ import annotations

from collections.abc import Iterator

from packaging.version import Version
from pip_audit._service.interface import (
    Dependency,
    ResolvedDependency,
    VulnerabilityResult,
    VulnerabilityService,
)

from scanner.advisories.store import AdvisoryStore, KnownVulnerability
from scanner.advisories.versions import PYPI, VersionError, fixed_versions, is_affected


class LocalVulnerabilityService(VulnerabilityService):  # type: ignore[misc]
    def __init__(self, store: AdvisoryStore) -> None:
        self.store = store
        # Keep the database's records so callers can report severity and references too.
        self.matched: dict[tuple[str, str], list[KnownVulnerability]] = {}

    def query(self, spec: Dependency) -> tuple[Dependency, list[VulnerabilityResult]]:
        return next(self.query_all(iter([spec])))

    def query_all(
        self, specs: Iterator[Dependency]
    ) -> Iterator[tuple[Dependency, list[VulnerabilityResult]]]:
        every = list(specs)
        resolved = [s for s in every if isinstance(s, ResolvedDependency)]
        known = self.store.lookup(PYPI, (s.canonical_name for s in resolved))
        for spec in every:
            if not isinstance(spec, ResolvedDependency):
                # Skipped dependencies are answered with no results, as pip-audit's own
                # services do; dropping them made the Auditor lose them altogether.
                yield spec, []
                continue
            hits = []
            for vuln in known.get(spec.canonical_name, []):
                try:
                    if is_affected(PYPI, str(spec.version), vuln.ranges, vuln.versions):
                        hits.append(vuln)
                except VersionError:
                    continue
            self.matched[(spec.canonical_name, str(spec.version))] = hits
            yield spec, [_result(v) for v in hits]


def _result(v: KnownVulnerability) -> VulnerabilityResult:
    fixes = []
    for text in fixed_versions(v.ranges):
        try:
            fixes.append(Version(text))
        except ValueError:
            continue
    return VulnerabilityResult(
        id=v.advisory_id, description="", fix_versions=sorted(fixes), aliases=set(v.aliases)
    )
