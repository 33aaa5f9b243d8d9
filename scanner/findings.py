"""What a stage reports: findings, their severity and category, and the stage result."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

# The details key naming the library a finding's code belongs to.
LIBRARY_DETAIL = "library"


class Severity(enum.IntEnum):
    """Ordered so that ``max()`` over findings gives the worst one."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r}") from None

    def lowered(self) -> Severity:
        return Severity(max(self - 1, Severity.INFO))


class Category(enum.StrEnum):
    """The closed list of finding categories of the report contract."""

    MALWARE = "malware"
    EXFILTRATION = "exfiltration"
    CREDENTIAL_ACCESS = "credential-access"
    OBFUSCATION = "obfuscation"
    DYNAMIC_CODE = "dynamic-code"
    CRYPTOMINING = "cryptomining"
    UNDECLARED_CAPABILITY = "undeclared-capability"
    OVERBROAD_CAPABILITY = "overbroad-capability"
    DOM_ESCAPE = "dom-escape"
    VULNERABLE_DEPENDENCY = "vulnerable-dependency"
    SUSPICIOUS_DEPENDENCY = "suspicious-dependency"
    BACKEND_CODE = "backend-code"
    SECRETS = "secrets"
    ARCHIVE = "archive"
    MANIFEST = "manifest"
    COVERAGE = "coverage"
    LICENSE = "license"
    # A published library changed inside the bundle: how injected-library attacks ship.
    SUPPLY_CHAIN = "supply-chain"


class RuleState(enum.StrEnum):
    """Evaluation rules record findings but never change a verdict."""

    ENABLED = "enabled"
    EVALUATION = "evaluation"
    DISABLED = "disabled"


class StageStatus(enum.StrEnum):
    OK = "ok"
    ERROR = "error"
    SKIPPED = "skipped"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Finding:
    """One observation by one stage about one place in the bundle."""

    stage: str
    rule_id: str
    category: Category
    severity: Severity
    message: str
    path: str | None = None
    line: int | None = None
    evidence: str | None = None
    state: RuleState = RuleState.ENABLED
    details: tuple[tuple[str, str], ...] = ()
    # The allowlist entry that suppressed this finding ("allowlist:12"): still reported,
    # never counted by the policy.
    suppressed_by: str | None = None
    # Byte span of the evidence in its file, while the stage still holds the file: lets
    # findings in recognised library code be attributed (never persisted).
    span: tuple[int, int] | None = field(default=None, compare=False, repr=False)

    @property
    def library(self) -> str | None:
        """The published library this finding's code belongs to ("name@version"): shown,
        never counted against the plugin."""
        return dict(self.details).get(LIBRARY_DETAIL)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rule_id": self.rule_id,
            "stage": self.stage,
            "category": self.category.value,
            "severity": self.severity.label,
            "message": self.message,
            "path": self.path,
            "line": self.line,
            "evidence": self.evidence,
            "state": self.state.value,
        }
        if self.details:
            data["details"] = dict(self.details)
        if self.suppressed_by:
            data["suppressed_by"] = self.suppressed_by
        if self.library:
            data["library"] = self.library
        return data


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass
class Coverage:
    """Which files a stage looked at, and which in-scope files it could not."""

    scanned: list[str] = field(default_factory=list)
    not_scanned: list[SkippedFile] = field(default_factory=list)

    def skip(self, path: str, reason: str) -> None:
        self.not_scanned.append(SkippedFile(path, reason))

    def to_dict(self) -> dict[str, Any]:
        return {
            "scanned": sorted(self.scanned),
            "not_scanned": [{"path": s.path, "reason": s.reason} for s in self.not_scanned],
        }


@dataclass
class StageResult:
    """What one run of one stage produced."""

    name: str
    version: int
    status: StageStatus = StageStatus.OK
    findings: list[Finding] = field(default_factory=list)
    coverage: Coverage = field(default_factory=Coverage)
    duration_ms: float = 0.0
    error: str | None = None
    tool_versions: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    # Files for reviewers (trace JSON, screenshots), by name; kept with the scan.
    artifacts: dict[str, bytes] = field(default_factory=dict)

    def stage_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "status": self.status.value,
            "duration_ms": round(self.duration_ms, 1),
            "error": self.error,
        }


def truncate(text: str, limit: int = 200) -> str:
    """Evidence is for people: keep it short, on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
