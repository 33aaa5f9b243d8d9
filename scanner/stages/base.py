"""The stage interface every analysis step implements."""

from __future__ import annotations

from typing import ClassVar, Protocol

from scanner.findings import StageResult
from scanner.workspace import Workspace


class Stage(Protocol):
    """A small class with one method; external tools come in through the constructor."""

    name: ClassVar[str]
    version: ClassVar[int]  # bump when behaviour changes, so stale verdicts can be found

    def run(self, workspace: Workspace) -> StageResult: ...


class StageUnavailableError(RuntimeError):
    """A stage could not be built or reach its tool; the scan records it and fails closed."""
