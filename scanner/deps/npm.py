"""npm dependencies: package-lock.json v1/v2/v3, else package.json ranges; install scripts."""

from __future__ import annotations

import json
import re
from typing import Any

from scanner.advisories.versions import NPM, NpmVersion, VersionError
from scanner.deps.components import Component, DependencyScan
from scanner.findings import Severity
from scanner.workspace import Workspace

LOCKFILES = ("npm-shrinkwrap.json", "package-lock.json")
OTHER_LOCKFILES = ("yarn.lock", "pnpm-lock.yaml", "bun.lockb")
DEFAULT_REGISTRIES = ("https://registry.npmjs.org/", "https://registry.yarnpkg.com/")
LIFECYCLE_SCRIPTS = (
    "preinstall",
    "install",
    "postinstall",
    "prepare",
    "prepublish",
    "preuninstall",
)
DEP_FIELDS = ("dependencies", "optionalDependencies", "peerDependencies", "devDependencies")
# Commands an install script has no business running.
_RISKY_SCRIPT_RE = re.compile(
    r"curl|wget|\bnc\b|bash -c|sh -c|powershell|base64|eval|node -e|python -c|/dev/tcp|\bhttps?://",
    re.I,
)
_NON_REGISTRY_SPEC_RE = re.compile(
    r"^(?:git\+|git:|github:|gitlab:|bitbucket:|https?:|file:|link:|[\w.-]+/[\w.-]+(?:#.*)?$)"
)


def scan_npm(workspace: Workspace, scan: DependencyScan) -> None:
    manifest = (
        _load_json(workspace, "package.json", scan) if workspace.has("package.json") else None
    )
    if manifest is not None:
        _lifecycle_scripts(manifest, scan)
    lock_path = next((p for p in LOCKFILES if workspace.has(p)), None)
    lock = _load_json(workspace, lock_path, scan) if lock_path else None
    if lock is not None and lock_path is not None:
        _from_lockfile(lock, lock_path, scan)
    if manifest is not None:
        _from_manifest(manifest, scan, locked=lock is not None, workspace=workspace)


def _load_json(workspace: Workspace, path: str, scan: DependencyScan) -> dict[str, Any] | None:
    try:
        data = json.loads(workspace.read_bytes(path))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        scan.gap(path, f"{path} is not valid JSON ({exc}); its dependencies were not audited")
        return None
    if not isinstance(data, dict):
        scan.gap(path, f"{path} is not a JSON object; its dependencies were not audited")
        return None
    return data


def _lifecycle_scripts(manifest: dict[str, Any], scan: DependencyScan) -> None:
    scripts = manifest.get("scripts") or {}
    if not isinstance(scripts, dict):
        return
    for hook in LIFECYCLE_SCRIPTS:
        command = scripts.get(hook)
        if isinstance(command, str) and command.strip():
            risky = bool(_RISKY_SCRIPT_RE.search(command))
            scan.suspicious(
                "dep-install-script",
                "package.json",
                f"package.json runs a `{hook}` script at install time"
                + (" that downloads or evaluates code" if risky else ""),
                evidence=command,
                severity=Severity.HIGH if risky else Severity.MEDIUM,
            )


def _from_lockfile(lock: dict[str, Any], path: str, scan: DependencyScan) -> None:
    packages = lock.get("packages")
    if isinstance(packages, dict) and lock.get("lockfileVersion", 1) >= 2:
        for key, entry in packages.items():
            if not key or not isinstance(entry, dict) or "node_modules/" not in key:
                continue
            name = entry.get("name") or key.rsplit("node_modules/", 1)[1]
            _add_locked(scan, path, str(name), entry)
    else:
        _walk_v1(lock.get("dependencies") or {}, path, scan, depth=0)


def _walk_v1(deps: dict[str, Any], path: str, scan: DependencyScan, depth: int) -> None:
    if depth > 64:
        return
    for name, entry in deps.items():
        if isinstance(entry, dict):
            _add_locked(scan, path, name, entry)
            _walk_v1(entry.get("dependencies") or {}, path, scan, depth + 1)


def _add_locked(scan: DependencyScan, path: str, name: str, entry: dict[str, Any]) -> None:
    version = str(entry.get("version") or "")
    resolved = str(entry.get("resolved") or "")
    dev = bool(entry.get("dev"))
    if entry.get("link"):
        scan.suspicious(
            "dep-local-path",
            path,
            f"{name} is linked from a local path",
            evidence=resolved or version,
            severity=Severity.LOW,
        )
        return
    if _NON_REGISTRY_SPEC_RE.match(version) and not _is_semver(version):
        scan.suspicious(
            "dep-non-registry-source", path, f"{name} is installed from {version}", evidence=version
        )
        scan.components.append(Component(NPM, name, None, path, dev=dev, source=version))
        return
    if resolved and not resolved.startswith(DEFAULT_REGISTRIES):
        scan.suspicious(
            "dep-non-registry-source",
            path,
            f"{name} is downloaded from {resolved.split('/')[2] if '//' in resolved else resolved}",
            evidence=resolved,
        )
    scan.components.append(
        Component(
            NPM,
            name,
            version or None,
            path,
            dev=dev,
            source=resolved or None,
            install_script=bool(entry.get("hasInstallScript")),
        )
    )


def _from_manifest(
    manifest: dict[str, Any], scan: DependencyScan, locked: bool, workspace: Workspace
) -> None:
    unpinned = []
    for fieldname in DEP_FIELDS:
        deps = manifest.get(fieldname) or {}
        if not isinstance(deps, dict):
            continue
        for name, spec in deps.items():
            spec = str(spec)
            if _NON_REGISTRY_SPEC_RE.match(spec) and not _is_semver(spec):
                scan.suspicious(
                    "dep-non-registry-source",
                    "package.json",
                    f"{name} is declared as {spec}",
                    evidence=spec,
                )
            elif not locked:
                if _is_semver(spec):
                    scan.components.append(
                        Component(
                            NPM,
                            name,
                            spec.lstrip("=v"),
                            "package.json",
                            dev=fieldname == "devDependencies",
                        )
                    )
                else:
                    unpinned.append(f"{name}@{spec}")
                    scan.components.append(
                        Component(
                            NPM, name, None, "package.json", dev=fieldname == "devDependencies"
                        )
                    )
    if unpinned:
        other = [p for p in OTHER_LOCKFILES if workspace.has(p)]
        why = f" ({', '.join(other)} is not read)" if other else ""
        scan.gap(
            "package.json",
            f"no package-lock.json{why}: {len(unpinned)} npm dependencies are ranges, not "
            f"pinned versions, and were not checked for vulnerabilities: "
            + ", ".join(unpinned[:10]),
        )


def _is_semver(spec: str) -> bool:
    if not re.fullmatch(
        r"=?v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?", spec.strip()
    ):
        return False
    try:
        NpmVersion.parse(spec.lstrip("=v"))
    except VersionError:
        return False
    return True
