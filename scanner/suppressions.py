"""Allowlist entries as the policy applies them: a suppressed finding is reported with the
entry that suppressed it and never counted.

Scope (publisher, plugin) is the service's business: it hands over only the entries that
apply to the bundle's publisher and plugin. Here an entry matches a finding by rule id,
by the rule's current version (a changed rule voids the entry) and, when it names one, by
the sha256 of the file the finding is in. What fails closed stays closed: coverage gaps
and refused archives are never suppressed, and a finding without a file never matches
an entry bound to a file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from scanner.findings import Category, Finding, StageResult
from scanner.rulebook import RuleInfo, rule_version

NEVER_SUPPRESSED = frozenset({Category.COVERAGE, Category.ARCHIVE})


@dataclass(frozen=True)
class Suppression:
    entry: str  # shown in the report: "allowlist:12"
    rule_id: str
    rule_version: str
    file_sha256: str | None = None


def matches(
    s: Suppression,
    finding: Finding,
    version: str,
    file_hashes: Mapping[str, str],
) -> bool:
    if finding.rule_id != s.rule_id or version != s.rule_version:
        return False
    if finding.category in NEVER_SUPPRESSED:
        return False
    if s.file_sha256 is None:
        return True
    return finding.path is not None and file_hashes.get(finding.path) == s.file_sha256


def apply_suppressions(
    results: Sequence[StageResult],
    suppressions: Sequence[Suppression],
    file_hashes: Mapping[str, str],
    book: dict[str, RuleInfo],
) -> list[StageResult]:
    """The results with every matching finding marked ``suppressed_by`` its entry."""
    out = []
    for result in results:
        marked = []
        for f in result.findings:
            version = rule_version(f.rule_id, f.stage, result.version, book)
            entry = next((s for s in suppressions if matches(s, f, version, file_hashes)), None)
            marked.append(replace(f, suppressed_by=entry.entry) if entry else f)
        out.append(replace(result, findings=marked))
    return out
