"""Licence compliance of a bundle: the manifest's ``license`` and the licences of what it
carries (locked npm dependencies, recognised library copies) against rules/licences.toml."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from scanner.findings import Category, Finding, Severity, truncate
from scanner.libraries.index import LibraryIndex
from scanner.libraries.matcher import Copy
from scanner.licences import Judgement, LicenceError, LicencePolicy, Standing, judge_text
from scanner.manifest import MANIFEST_NAME
from scanner.workspace import Workspace

STAGE = "libraries"
LOCKFILES = ("npm-shrinkwrap.json", "package-lock.json")
MAX_LISTED = 12


@dataclass(frozen=True)
class Part:
    """Something the plugin distributes, with the licence its metadata gives."""

    name: str
    version: str | None
    licence: str | None
    source: str  # where the fact comes from: the lockfile's path, or "bundled copy in <path>"


def bundle_parts(found: Iterable[tuple[str, Copy]]) -> list[Part]:
    parts = {}
    for path, c in found:
        parts[(c.entry.name, c.entry.versions[0])] = Part(
            c.entry.name, c.entry.versions[0], c.entry.licence, f"bundled copy in {path}"
        )
    return list(parts.values())


@dataclass
class LicenceCheck:
    policy: LicencePolicy
    index: LibraryIndex
    raw: dict[str, Any] = field(default_factory=dict)

    def run(self, workspace: Workspace, copies: list[Part]) -> list[Finding]:
        findings: list[Finding] = []
        own = self._manifest(workspace, findings)
        proprietary = own is None and _declared(workspace) is not None
        parts = [*_locked(workspace, self.index), *copies]
        unknown: list[str] = []
        for part in parts:
            self._part(part, proprietary, unknown, findings)
        if unknown:
            listed = ", ".join(unknown[:MAX_LISTED]) + (" …" if len(unknown) > MAX_LISTED else "")
            findings.append(
                _finding(
                    "licence-dependency-unknown",
                    Severity.MEDIUM,
                    f"{len(unknown)} of the bundle's parts have no licence the policy knows,"
                    f" so a person must check them: {listed}",
                    None,
                )
            )
        self.raw.update(
            {
                "plugin": _declared(workspace),
                "proprietary": proprietary,
                "parts": [p.__dict__ for p in parts],
                "unknown": unknown,
            }
        )
        return findings

    def _manifest(self, workspace: Workspace, findings: list[Finding]) -> Judgement | None:
        """The plugin's own licence; None when missing, unreadable or proprietary."""
        if workspace.manifest.manifest is None:
            return None  # the manifest stage reports why
        text = _declared(workspace)
        if text is None:
            findings.append(
                _finding(
                    "licence-missing",
                    Severity.MEDIUM,
                    "plugin.json declares no license: give an SPDX expression, or UNLICENSED"
                    " for a proprietary plugin",
                    MANIFEST_NAME,
                )
            )
            return None
        if self.policy.is_proprietary(text):
            return None
        try:
            verdict = judge_text(text, self.policy)
        except LicenceError as exc:
            findings.append(
                _finding(
                    "licence-invalid",
                    Severity.MEDIUM,
                    f"plugin.json license {text!r} is not an SPDX expression ({exc})",
                    MANIFEST_NAME,
                )
            )
            return None
        findings.extend(self._standing(verdict, f"the plugin's license {text!r}", MANIFEST_NAME))
        return verdict

    def _part(
        self, part: Part, proprietary: bool, unknown: list[str], findings: list[Finding]
    ) -> None:
        label = f"{part.name}@{part.version}" if part.version else part.name
        if not part.licence:
            unknown.append(f"{label} (no licence in {part.source})")
            return
        try:
            verdict = judge_text(part.licence, self.policy)
        except LicenceError:
            unknown.append(f"{label} ({part.licence!r} is not an SPDX expression)")
            return
        where = f"{label} ({part.source}) is under {part.licence}"
        if verdict.standing is Standing.UNKNOWN:
            unknown.append(f"{label} ({verdict.describe()} is not in the licence policy)")
        elif verdict.standing is Standing.COPYLEFT and proprietary:
            findings.append(
                _finding(
                    "licence-copyleft-in-proprietary",
                    Severity.HIGH,
                    f"the plugin is proprietary (UNLICENSED) but {where}, a copyleft licence",
                    _path_of(part),
                )
            )
        else:
            findings.extend(self._standing(verdict, where, _path_of(part)))

    def _standing(self, verdict: Judgement, what: str, path: str | None) -> list[Finding]:
        if verdict.standing is Standing.DENIED:
            return [
                _finding(
                    "licence-denied",
                    Severity.HIGH,
                    f"{what}: {verdict.describe()} is denied by the licence policy",
                    path,
                )
            ]
        if verdict.standing is Standing.UNKNOWN and path == MANIFEST_NAME:
            return [
                _finding(
                    "licence-unknown",
                    Severity.MEDIUM,
                    f"{what}: {verdict.describe()} is not in the licence policy, so a person"
                    " must check it",
                    path,
                )
            ]
        return []


def _declared(workspace: Workspace) -> str | None:
    manifest = workspace.manifest.manifest
    value = manifest.raw.get("license") if manifest is not None else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def _path_of(part: Part) -> str | None:
    return part.source.removeprefix("bundled copy in ") if part.source else None


def _locked(workspace: Workspace, index: LibraryIndex) -> list[Part]:
    """Runtime (non-dev) packages of an npm lockfile with the licence it records, else the
    one the library index knows for that name and version."""
    path = next((p for p in LOCKFILES if workspace.has(p)), None)
    if path is None:
        return []
    try:
        lock = json.loads(workspace.read_bytes(path))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return []  # the dependency stage reports an unreadable lockfile
    known = index.licences()
    out = []
    for name, entry in _entries(lock):
        if entry.get("dev") or entry.get("devOptional"):
            continue
        version = str(entry.get("version") or "") or None
        licence = entry.get("license")
        if not isinstance(licence, str) or not licence.strip():
            licence = known.get((name, version or ""))
        out.append(Part(name, version, licence, path))
    return out


def _entries(lock: Any) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(lock, dict):
        return []
    packages = lock.get("packages")
    if isinstance(packages, dict):
        return [
            (str(e.get("name") or k.rsplit("node_modules/", 1)[1]), e)
            for k, e in packages.items()
            if "node_modules/" in k and isinstance(e, dict)
        ]
    out: list[tuple[str, dict[str, Any]]] = []
    stack = [(lock.get("dependencies"), 0)]
    while stack:
        deps, depth = stack.pop()
        if not isinstance(deps, dict) or depth > 64:
            continue
        for name, entry in deps.items():
            if isinstance(entry, dict):
                out.append((str(name), entry))
                stack.append((entry.get("dependencies"), depth + 1))
    return out


def _finding(rule: str, severity: Severity, message: str, path: str | None) -> Finding:
    return Finding(STAGE, rule, Category.LICENSE, severity, truncate(message, 600), path=path)
