"""Known libraries and licences: which published files the bundle carries, whether any
was changed, and whether the plugin's and its parts' licences fit the policy."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from scanner.advisories.versions import NPM
from scanner.config import Settings
from scanner.deps.components import Component
from scanner.findings import LIBRARY_DETAIL, Category, Finding, Severity, StageResult, truncate
from scanner.libraries import library_index
from scanner.libraries.index import LibraryIndex
from scanner.libraries.licensing import LicenceCheck, bundle_parts
from scanner.libraries.matcher import Copy, CopyKind, Edit, EditKind, recognise
from scanner.libraries.retire import ReleaseCheck
from scanner.licences import LicencePolicy
from scanner.workspace import Workspace

STAGE = "libraries"
MAX_EDITS_REPORTED = 10


@lru_cache(maxsize=4)
def licence_policy(path: Path) -> LicencePolicy:
    return LicencePolicy.load(path)


class LibrariesStage:
    name: ClassVar[str] = STAGE
    version: ClassVar[int] = 1
    # CPU-bound (hashing every JS file): a worker process; whole bundle (the licences
    # join the manifest, the lockfile and the copies found).
    runs_in_process: ClassVar[bool] = True

    def __init__(
        self,
        index: LibraryIndex,
        licences: LicencePolicy,
        max_file_bytes: int,
        releases: ReleaseCheck | None = None,
    ) -> None:
        self.index = index
        self.licences = licences
        self.max_file_bytes = max_file_bytes
        self.releases = releases if releases is not None else ReleaseCheck(None)

    @classmethod
    def from_settings(cls, settings: Settings) -> LibrariesStage:
        # An unreadable index or policy makes the stage unavailable: recorded as an error.
        return cls(
            library_index(settings),
            licence_policy(settings.rules_dir / "licences.toml"),
            settings.js_max_file_bytes,
            ReleaseCheck.from_rules(settings.rules_dir),
        )

    def run(self, workspace: Workspace) -> StageResult:
        result = StageResult(self.name, self.version)
        result.tool_versions["library-index"] = f"{len(self.index)} files"
        found: list[tuple[str, Copy]] = []
        for f in workspace.javascript_files():
            if f.size > self.max_file_bytes:
                continue  # js-static reports it as not analysed
            data = workspace.read_bytes(f.path)
            copies = recognise(data, self.index)
            self.releases.settle(f.path, data, copies)
            found.extend((f.path, c) for c in copies)
            for c in copies:
                result.findings.extend(_copy_findings(f.path, data, c))
            result.coverage.scanned.append(f.path)
        result.raw["copies"] = [_copy_raw(path, c) for path, c in found]
        # The SBOM lists what the bundle carries: recognised copies are npm packages.
        result.raw["components"] = [
            _component(path, c) for path, c in found if c.kind is not CopyKind.OTHER_RELEASE
        ]
        check = LicenceCheck(self.licences, self.index)
        result.findings.extend(check.run(workspace, bundle_parts(found)))
        result.raw["licences"] = check.raw
        return result


def _copy_findings(path: str, data: bytes, c: Copy) -> list[Finding]:
    entry = c.entry
    where = f"{c.label} ({entry.path}, {entry.licence or 'no licence'})"
    details: tuple[tuple[str, str], ...] = (
        (LIBRARY_DETAIL, c.label),
        ("published_path", entry.path),
        ("copy", c.kind.value),
    )
    first, last = _line(data, c.start), _line(data, max(c.start, c.end - 1))
    if c.kind is CopyKind.MODIFIED:
        return [_edit_finding(path, data, c, e, where) for e in c.edits[:MAX_EDITS_REPORTED]]
    if c.kind is CopyKind.OTHER_RELEASE:
        message = (
            f"lines {first}-{last} resemble {where} with {len(c.edits)} differences: another"
            " release or a fork, analysed as the plugin's own code"
        )
        return [_info(path, "library-similar", message, first, details)]
    whole = c.kind is CopyKind.PRISTINE
    extent = "whole and unchanged" if whole else "unchanged, edges not verified"
    message = f"lines {first}-{last} are {where}, {extent}"
    return [_info(path, "library-recognised", message, first, details)]


def _info(
    path: str, rule: str, message: str, line: int, details: tuple[tuple[str, str], ...]
) -> Finding:
    return Finding(
        STAGE, rule, Category.SUPPLY_CHAIN, Severity.INFO, message, path, line, details=details
    )


def _edit_finding(path: str, data: bytes, c: Copy, e: Edit, where: str) -> Finding:
    line = _line(data, e.start)
    size = e.end - e.start
    if e.kind is EditKind.INSERTION:
        what = f"{size} bytes inserted at byte {e.pristine_offset} of the published file"
    elif e.kind is EditKind.DELETION:
        what = f"{e.pristine_length} published bytes removed at byte {e.pristine_offset}"
    else:
        what = (
            f"{e.pristine_length} bytes of the published file at byte {e.pristine_offset}"
            f" replaced by {size} bytes"
        )
    exact = "" if e.exact else " (the change lies within this span)"
    return Finding(
        STAGE,
        "library-modified",
        Category.SUPPLY_CHAIN,
        Severity.CRITICAL if e.exact else Severity.HIGH,
        f"a modified copy of {where}: {what}, bytes {e.start}-{e.end} here{exact}",
        path,
        line,
        evidence=truncate(data[e.start : e.end].decode("utf-8", "replace"), 400) or None,
        details=(
            ("modified_library", c.label),
            ("published_path", c.entry.path),
            ("edit", e.kind.value),
            ("bundle_span", f"{e.start}-{e.end}"),
            ("published_span", f"{e.pristine_offset}-{e.pristine_offset + e.pristine_length}"),
            ("exact", str(e.exact).lower()),
        ),
    )


def _copy_raw(path: str, c: Copy) -> dict[str, Any]:
    return {
        "path": path,
        "library": c.label,
        "name": c.entry.name,
        "versions": sorted({v for e in [c.entry, *c.alternatives] for v in e.versions}),
        "published_path": c.entry.path,
        "licence": c.entry.licence,
        "kind": c.kind.value,
        "start": c.start,
        "end": c.end,
        "verified_bytes": c.verified,
        "edits": [
            {
                "kind": e.kind.value,
                "start": e.start,
                "end": e.end,
                "published_offset": e.pristine_offset,
                "published_length": e.pristine_length,
                "exact": e.exact,
            }
            for e in c.edits
        ],
    }


def _component(path: str, c: Copy) -> dict[str, Any]:
    comp = Component(NPM, c.entry.name, c.entry.versions[0], path)
    return {
        "ecosystem": comp.ecosystem,
        "name": comp.name,
        "version": comp.version,
        "declared_in": f"{path} (a {c.kind.value} copy of {c.entry.path})",
        "dev": False,
        "purl": comp.purl,
    }


def _line(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1
