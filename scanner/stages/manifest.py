"""Turn manifest validation problems into findings."""

from __future__ import annotations

from typing import ClassVar

from scanner.config import Settings
from scanner.findings import Finding, StageResult
from scanner.manifest import MANIFEST_NAME
from scanner.workspace import Workspace


class ManifestStage:
    name: ClassVar[str] = "manifest"
    version: ClassVar[int] = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> ManifestStage:
        return cls()

    def run(self, workspace: Workspace) -> StageResult:
        result = StageResult(self.name, self.version)
        load = workspace.manifest
        for p in load.problems:
            result.findings.append(
                Finding(
                    self.name,
                    p.rule_id,
                    p.category,
                    p.severity,
                    p.message,
                    path=MANIFEST_NAME,
                    evidence=p.field,
                )
            )
        if workspace.has(MANIFEST_NAME):
            result.coverage.scanned.append(MANIFEST_NAME)
        if load.manifest is not None:
            result.raw["capabilities"] = load.manifest.raw.get("capabilities", {})
        return result
