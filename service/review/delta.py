"""The risk delta: what changed since the last approved version of the same plugin.

Pure: two scans' facts and findings in, the difference out. Findings are matched by rule
and normalised location (path with build hashes and version numbers blurred, evidence
with short mangled identifiers and numbers blurred) and counted as a multiset, occurrence
counts included, so moving code around is not new but one more use of the same thing is.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HASHLIKE_RE = re.compile(r"(?<![0-9a-z])[0-9a-f]{8,}(?![0-9a-z])", re.I)
VERSIONLIKE_RE = re.compile(r"\d+(?:\.\d+)+")
SHORT_IDENT_RE = re.compile(r"(?<![\w$])[A-Za-z_$][\w$]?(?![\w$])")
NUMBER_RE = re.compile(r"\d+")
OCCURRENCES_RE = re.compile(r"\((\d+) occurrences")


def normalise_path(path: str | None) -> str:
    if not path:
        return ""
    return VERSIONLIKE_RE.sub("#", HASHLIKE_RE.sub("#", path))


def normalise_evidence(evidence: str | None) -> str:
    if not evidence:
        return ""
    flat = " ".join(evidence.split())
    return NUMBER_RE.sub("0", SHORT_IDENT_RE.sub("_", flat))


def finding_key(f: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    # Severity and category belong to the key: the same code found again by a rule now
    # rated critical malware (or reached by a worse data flow) is new, not routine.
    return (
        str(f.get("rule_id")),
        normalise_path(f.get("path")),
        normalise_evidence(f.get("evidence")),
        str(f.get("severity")),
        str(f.get("category")),
    )


def multiplicity(f: Mapping[str, Any]) -> int:
    found = OCCURRENCES_RE.search(str(f.get("message", "")))
    return int(found.group(1)) if found else 1


@dataclass(frozen=True)
class FileChange:
    path: str
    status: str  # added | removed | changed
    vendored: str | None = None  # the known library this file is


@dataclass
class Delta:
    first_version: bool
    previous_submission: str | None = None
    previous_version: str | None = None
    previous_scan: str | None = None
    files: list[FileChange] = field(default_factory=list)
    unchanged_files: int = 0
    new_findings: list[dict[str, Any]] = field(default_factory=list)
    resolved_findings: int = 0
    new_capabilities: list[str] = field(default_factory=list)
    new_origins: list[str] = field(default_factory=list)
    new_dependencies: list[str] = field(default_factory=list)
    removed_dependencies: list[str] = field(default_factory=list)
    new_advisories: list[str] = field(default_factory=list)
    # Facts were not collected for one of the scans (an older scan): files are unknown.
    facts_missing: bool = False
    # Files with the same bytes as a yanked promotion's (filled by the caller, which can
    # see the CDN's records): never routine.
    yanked_files: list[str] = field(default_factory=list)

    @property
    def routine(self) -> bool:
        """Nothing new that a reviewer must weigh: no finding, capability, origin,
        dependency or advisory (file changes alone do not make an update risky)."""
        return not (
            self.first_version
            or self.facts_missing
            or self.new_findings
            or self.new_capabilities
            or self.new_origins
            or self.new_dependencies
            or self.new_advisories
            or self.yanked_files
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_version": self.first_version,
            "routine": self.routine,
            "previous": None
            if self.first_version
            else {
                "submission_id": self.previous_submission,
                "version": self.previous_version,
                "scan_id": self.previous_scan,
            },
            "facts_missing": self.facts_missing,
            "files": [
                {"path": c.path, "status": c.status, "vendored": c.vendored} for c in self.files
            ],
            "unchanged_files": self.unchanged_files,
            "new_findings": self.new_findings,
            "resolved_findings": self.resolved_findings,
            "new_capabilities": self.new_capabilities,
            "new_origins": self.new_origins,
            "new_dependencies": self.new_dependencies,
            "removed_dependencies": self.removed_dependencies,
            "new_advisories": self.new_advisories,
            "yanked_files": self.yanked_files,
        }


def new_findings(
    current: Sequence[Mapping[str, Any]], previous: Iterable[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """Findings of ``current`` beyond what ``previous`` had, and how many went away."""
    before: Counter[tuple[str, str, str, str, str]] = Counter()
    for f in previous:
        before[finding_key(f)] += multiplicity(f)
    remaining = Counter(before)
    fresh = []
    for f in current:
        key = finding_key(f)
        n = multiplicity(f)
        if remaining[key] >= n:
            remaining[key] -= n
        else:
            remaining[key] = 0
            fresh.append(dict(f))
    return fresh, sum(remaining.values())


def file_changes(
    current: Sequence[Sequence[Any]], previous: Sequence[Sequence[Any]], vendored: Mapping[str, str]
) -> tuple[list[FileChange], int]:
    now = {str(p): str(h) for p, h, *_ in current}
    then = {str(p): str(h) for p, h, *_ in previous}
    changes = []
    for path in sorted(now.keys() | then.keys()):
        if path not in then:
            changes.append(FileChange(path, "added", vendored.get(path)))
        elif path not in now:
            changes.append(FileChange(path, "removed", vendored.get(path)))
        elif now[path] != then[path]:
            changes.append(FileChange(path, "changed", vendored.get(path)))
    unchanged = sum(1 for p in now if then.get(p) == now[p])
    return changes, unchanged


def compute(
    facts: Mapping[str, Any] | None,
    findings: Sequence[Mapping[str, Any]],
    previous: Mapping[str, Any] | None,
) -> Delta:
    """``previous`` is None for a first version, else a mapping with ``submission_id``,
    ``version``, ``scan_id``, ``facts`` (or None) and ``findings``."""
    if previous is None:
        return Delta(first_version=True)
    fresh, resolved = new_findings(findings, previous["findings"])
    delta = Delta(
        first_version=False,
        previous_submission=previous["submission_id"],
        previous_version=previous["version"],
        previous_scan=previous["scan_id"],
        new_findings=fresh,
        resolved_findings=resolved,
    )
    before = previous.get("facts")
    if facts is None or before is None:
        delta.facts_missing = True
        return delta
    delta.files, delta.unchanged_files = file_changes(
        facts["files"], before["files"], {**before.get("vendored", {}), **facts.get("vendored", {})}
    )

    def added(key: str) -> list[str]:
        return sorted(set(facts.get(key, [])) - set(before.get(key, [])))

    delta.new_capabilities = added("capabilities")
    origins_now = set(facts.get("declared_origins", [])) | set(facts.get("observed_origins", []))
    origins_then = set(before.get("declared_origins", [])) | set(before.get("observed_origins", []))
    delta.new_origins = sorted(origins_now - origins_then)
    delta.new_dependencies = added("dependencies")
    delta.removed_dependencies = sorted(
        set(before.get("dependencies", [])) - set(facts.get("dependencies", []))
    )
    delta.new_advisories = added("advisories")
    return delta
