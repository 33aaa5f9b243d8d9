"""ClamAV over every file through clamd; anything but OK or FOUND fails closed."""

from __future__ import annotations

from typing import ClassVar

from scanner.clamav import ClamdClient, SocketClamdClient
from scanner.config import Settings
from scanner.findings import Category, Finding, Severity, StageResult, StageStatus
from scanner.workspace import Workspace

# With AlertExceedsMax, clamd names content it could not fully scan like this.
LIMIT_PREFIX = "Heuristics.Limits.Exceeded"


class AntivirusStage:
    name: ClassVar[str] = "antivirus"
    version: ClassVar[int] = 1

    def __init__(self, client: ClamdClient) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> AntivirusStage:
        return cls(SocketClamdClient(settings))

    def run(self, workspace: Workspace) -> StageResult:
        # Unreachable clamd raises ClamdUnavailableError: the pipeline records a stage error.
        result = StageResult(
            self.name, self.version, tool_versions={"clamav": self.client.version()}
        )
        errors = []
        for f in workspace.files:
            verdict = self.client.scan_bytes(workspace.read_bytes(f.path))
            if verdict.status == "OK":
                result.coverage.scanned.append(f.path)
            elif (
                verdict.status == "FOUND"
                and verdict.signature
                and verdict.signature.startswith(LIMIT_PREFIX)
            ):
                result.coverage.skip(f.path, f"over a clamd limit ({verdict.signature})")
                result.findings.append(
                    self._gap(f.path, f"clamd could not fully scan {f.path}: {verdict.signature}")
                )
            elif verdict.status == "FOUND":
                result.coverage.scanned.append(f.path)
                result.findings.append(
                    Finding(
                        self.name,
                        f"clamav:{verdict.signature}",
                        Category.MALWARE,
                        Severity.CRITICAL,
                        f"ClamAV detected {verdict.signature}",
                        path=f.path,
                        evidence=verdict.signature,
                    )
                )
            else:
                result.coverage.skip(f.path, f"clamd {verdict.status}: {verdict.signature}")
                result.findings.append(
                    self._gap(f.path, f"clamd did not scan {f.path}: {verdict.signature}")
                )
                errors.append(f"{f.path}: {verdict.status} {verdict.signature}")
        if errors:
            result.status = StageStatus.ERROR
            result.error = "; ".join(errors)[:500]
        return result

    def _gap(self, path: str, message: str) -> Finding:
        return Finding(
            self.name,
            "antivirus-not-scanned",
            Category.COVERAGE,
            Severity.MEDIUM,
            message,
            path=path,
        )
