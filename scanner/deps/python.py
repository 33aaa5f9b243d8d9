"""Python backend dependencies: requirements files (with -r includes) and PEP 621 pyproject."""

from __future__ import annotations

import tomllib
from pathlib import PurePosixPath

import pip_requirements_parser
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet

from scanner.advisories.versions import PYPI
from scanner.deps.components import Component, DependencyScan
from scanner.workspace import Workspace

DEFAULT_INDEX = "https://pypi.org/simple"
MAX_INCLUDES = 20


def scan_python(workspace: Workspace, scan: DependencyScan) -> None:
    roots = [f.path for f in workspace.files if PurePosixPath(f.path).name == "requirements.txt"]
    seen: set[str] = set()
    for path in roots:
        _requirements(workspace, path, scan, seen)
    for f in workspace.files:
        if PurePosixPath(f.path).name == "pyproject.toml":
            _pyproject(workspace, f.path, scan)


def _requirements(workspace: Workspace, path: str, scan: DependencyScan, seen: set[str]) -> None:
    if path in seen or len(seen) >= MAX_INCLUDES:
        return
    seen.add(path)
    # Parsing only: pip-audit -r would resolve and install, running the bundle's setup code.
    parsed = pip_requirements_parser.RequirementsFile.from_file(
        str(workspace.path_of(path)), include_nested=False
    )
    for line in parsed.invalid_lines:
        scan.gap(path, f"{path}:{line.line_number}: unreadable requirement ({line.error_message})")
    for option in parsed.options:
        _option(workspace, path, option.options, scan, seen)
    unpinned = []
    for req in parsed.requirements:
        where = f"{path}:{req.line_number}"
        if req.link is not None or req.is_editable:
            target = req.link.url if req.link is not None else str(req.req or "")
            scan.suspicious(
                "dep-non-registry-source", path, f"{where} installs from {target}", evidence=target
            )
            continue
        if req.name is None:
            continue
        version = _pinned(req.specifier)
        if version is None:
            unpinned.append(f"{req.name}{req.specifier or ''}")
        scan.components.append(Component(PYPI, req.name, version, path))
    if unpinned:
        _unpinned_gap(scan, path, "requirements", unpinned)


def _unpinned_gap(scan: DependencyScan, path: str, noun: str, unpinned: list[str]) -> None:
    scan.gap(
        path,
        f"{path}: {len(unpinned)} {noun} are not pinned with ==, so the installed version is"
        f" unknown and was not checked: {', '.join(unpinned[:10])}",
    )


def _option(
    workspace: Workspace,
    path: str,
    options: dict[str, object],
    scan: DependencyScan,
    seen: set[str],
) -> None:
    # pip_requirements_parser's names: singular for --index-url, plural for repeatable options.
    for key in ("index_url", "extra_index_urls", "find_links", "trusted_hosts"):
        values = options.get(key)
        for value in values if isinstance(values, list) else [values] if values else []:
            if key == "index_url" and str(value).rstrip("/") == DEFAULT_INDEX:
                continue
            option = key.removesuffix("s").replace("_", "-")
            scan.suspicious(
                "dep-non-default-registry",
                path,
                f"{path} sets --{option} {value}",
                evidence=str(value),
            )
    for key in ("requirements", "constraints"):
        values = options.get(key)
        for include in values if isinstance(values, list) else []:
            target = (PurePosixPath(path).parent / str(include)).as_posix()
            normal = _normalise(target)
            if normal is None or not workspace.has(normal):
                scan.gap(path, f"{path} includes {include}, which is not inside the bundle")
            elif key == "requirements":
                _requirements(workspace, normal, scan, seen)


def _normalise(path: str) -> str | None:
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def _pinned(specifier: SpecifierSet | None) -> str | None:
    specs = list(specifier or [])
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def _pyproject(workspace: Workspace, path: str, scan: DependencyScan) -> None:
    try:
        data = tomllib.loads(workspace.read_text(path))
    except tomllib.TOMLDecodeError as exc:
        scan.gap(path, f"{path} is not valid TOML ({exc}); its dependencies were not audited")
        return
    project = data.get("project") or {}
    declared = list(project.get("dependencies") or [])
    for extra in (project.get("optional-dependencies") or {}).values():
        declared.extend(extra)
    unpinned = []
    for text in declared:
        try:
            req = Requirement(str(text))
        except InvalidRequirement as exc:
            scan.gap(path, f"{path}: unreadable dependency {text!r} ({exc})")
            continue
        if req.url:
            scan.suspicious(
                "dep-non-registry-source",
                path,
                f"{req.name} installs from {req.url}",
                evidence=req.url,
            )
            continue
        version = _pinned(req.specifier)
        if version is None:
            unpinned.append(str(req))
        scan.components.append(Component(PYPI, req.name, version, path))
    if unpinned:
        _unpinned_gap(scan, path, "dependencies", unpinned)
