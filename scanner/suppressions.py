"""Allowlist entries as the policy applies them: a suppressed finding is reported with the
entry that suppressed it and never counted.

Scope (publisher, plugin) is the service's business: it hands over only the entries that
apply to the bundle's publisher and plugin. Here an entry matches a finding by rule id,
by the rule's current version (a changed rule voids the entry) and, when it is bound, by
the sha256 of the file the finding is in, or for a finding without a file (what the
sandbox observed) by the digest of the observation itself: an entry made for "sent typed
text to stats.example" never silences "sent the session cookie to evil.example". What
fails closed stays closed: coverage gaps and refused archives are never suppressed, and
an unbound entry never suppresses a critical finding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from scanner.findings import Category, Finding, Severity, StageResult
from scanner.rulebook import RuleInfo, rule_version

NEVER_SUPPRESSED = frozenset({Category.COVERAGE, Category.ARCHIVE})


@dataclass(frozen=True)
class Suppression:
    entry: str  # shown in the report: "allowlist:12"
    rule_id: str
    rule_version: str
    # The finding's file's sha256, or for a finding without a file its observation_digest.
    file_sha256: str | None = None


def observation_digest(rule_id: str, message: str) -> str:
    """What binds an entry to a finding without a file: its rule and what it says was
    done (destination and data included; the evidence carries per-run canaries)."""
    return hashlib.sha256(f"{rule_id}\n{message}".encode()).hexdigest()


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
        return finding.severity is not Severity.CRITICAL
    if finding.path is None:
        return observation_digest(finding.rule_id, finding.message) == s.file_sha256
    return file_hashes.get(finding.path) == s.file_sha256


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
