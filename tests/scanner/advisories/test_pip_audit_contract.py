"""The contract with pip-audit's private ``pip_audit._service`` interface, which
scanner/advisories/pip_audit_service.py implements: pinned to the versions it was
written against, and exercised through pip-audit's own Auditor (issue 15)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.version import Version
from pip_audit._audit import Auditor
from pip_audit._dependency_source.interface import DependencySource
from pip_audit._service.interface import (
    Dependency,
    ResolvedDependency,
    SkippedDependency,
    VulnerabilityResult,
    VulnerabilityService,
)

from scanner.advisories.pip_audit_service import LocalVulnerabilityService
from scanner.advisories.snapshot import ensure_snapshot
from scanner.advisories.store import AdvisoryStore
from scanner.db import make_engine
from tests.paths import PROJECT_ROOT


def test_the_installed_pip_audit_is_inside_the_pinned_range() -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    (pin,) = [
        Requirement(r) for r in project["project"]["dependencies"] if r.startswith("pip-audit")
    ]
    installed = Version(importlib.metadata.version("pip-audit"))
    assert installed in pin.specifier
    # A private module: the range must stop before the next minor release.
    assert not pin.specifier.contains("2.11.0") and pin.specifier.contains("2.10.1")


def test_the_private_interface_still_has_the_shape_we_use() -> None:
    assert {"query", "query_all"} <= set(dir(VulnerabilityService))
    assert list(inspect.signature(VulnerabilityService.query).parameters) == ["self", "spec"]
    result_fields = [f.name for f in dataclasses.fields(VulnerabilityResult)]
    assert result_fields[:4] == ["id", "description", "fix_versions", "aliases"]
    resolved = ResolvedDependency(name="Some_Package", version=Version("1.0"))
    assert resolved.canonical_name == "some-package"


class _Pinned(DependencySource):
    def __init__(self, deps: list[Dependency]) -> None:
        self.deps = deps

    def collect(self) -> Iterator[Dependency]:
        yield from self.deps

    def fix(self, fix_version: Any) -> None:
        raise NotImplementedError


def test_pip_audits_own_auditor_runs_on_the_local_database(tmp_path: Path) -> None:
    store = AdvisoryStore(make_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    ensure_snapshot(store, PROJECT_ROOT / "rules")
    source = _Pinned(
        [
            ResolvedDependency(name="urllib3", version=Version("1.24.1")),
            ResolvedDependency(name="urllib3", version=Version("2.2.3")),
            SkippedDependency(name="local-thing", skip_reason="not on PyPI"),
        ]
    )
    results = {
        (dep.canonical_name, str(getattr(dep, "version", "-"))): vulns
        for dep, vulns in Auditor(LocalVulnerabilityService(store)).audit(source)
    }
    old = results[("urllib3", "1.24.1")]
    assert old and all(isinstance(v, VulnerabilityResult) for v in old)
    assert all(v.fix_versions and isinstance(v.fix_versions[0], Version) for v in old)
    assert results[("urllib3", "2.2.3")] == []
    assert results[("local-thing", "-")] == []
