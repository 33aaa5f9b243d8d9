"""ClamAV over every file through clamd; anything but OK or FOUND fails closed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import ClassVar, TypeVar

from scanner.clamav import ClamdClient, ClamdUnavailableError, ClamdVerdict, SocketClamdClient
from scanner.config import Settings
from scanner.findings import Category, Finding, Severity, StageResult, StageStatus
from scanner.workspace import Workspace

# With AlertExceedsMax, clamd names content it could not fully scan like this.
LIMIT_PREFIX = "Heuristics.Limits.Exceeded"
# Pauses before retrying an unreachable clamd: a supervised clamd that died is back within
# seconds, and a scan should not go to review for that.
RETRY_PAUSES = (0.5, 2.0, 5.0)
T = TypeVar("T")
log = logging.getLogger(__name__)


class AntivirusStage:
    name: ClassVar[str] = "antivirus"
    version: ClassVar[int] = 1

    def __init__(
        self,
        client: ClamdClient,
        pauses: tuple[float, ...] = RETRY_PAUSES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.pauses = pauses
        self.sleep = sleep

    def _retrying(self, call: Callable[[], T]) -> T:
        """A transient failure (clamd unreachable) is retried; the last one is raised, and
        the pipeline records the stage as an error (fail closed)."""
        for pause in self.pauses:
            try:
                return call()
            except ClamdUnavailableError as exc:
                log.warning("clamd unreachable, retrying in %g s: %s", pause, exc)
                self.sleep(pause)
        return call()

    @classmethod
    def from_settings(cls, settings: Settings) -> AntivirusStage:
        return cls(SocketClamdClient(settings))

    def run(self, workspace: Workspace) -> StageResult:
        # Unreachable clamd raises ClamdUnavailableError: the pipeline records a stage error.
        result = StageResult(
            self.name, self.version, tool_versions={"clamav": self._retrying(self.client.version)}
        )
        errors = []
        for f in workspace.files:
            verdict = self._scan(workspace.read_bytes(f.path))
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

    def _scan(self, data: bytes) -> ClamdVerdict:
        return self._retrying(lambda: self.client.scan_bytes(data))

    def _gap(self, path: str, message: str) -> Finding:
        return Finding(
            self.name,
            "antivirus-not-scanned",
            Category.COVERAGE,
            Severity.MEDIUM,
            message,
            path=path,
        )
