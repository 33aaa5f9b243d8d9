"""Static JavaScript analysis: every rule runs on one tree-sitter parse per file."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

# Imported for their side effect of registering analyzers by name.
import scanner.js.carriers
import scanner.js.code
import scanner.js.families
import scanner.js.network
import scanner.js.page
import scanner.js.recon  # noqa: F401
from scanner.config import Settings
from scanner.findings import Category, Finding, Severity, StageResult
from scanner.js.engine import ANALYZERS, STAGE, FileAnalysis, analyze_source
from scanner.js.parser import parser_versions
from scanner.js.rules import CompiledRules, compile_rules, load_rules
from scanner.libraries import library_index
from scanner.libraries.attribution import Attributor, blank
from scanner.libraries.index import LibraryIndex, LibraryIndexError
from scanner.libraries.matcher import recognise
from scanner.manifest import Capabilities
from scanner.workspace import Workspace

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def compiled_rules(directory: Path) -> CompiledRules:
    """Compiled once per process and rules directory."""
    return compile_rules(load_rules(directory, list(ANALYZERS)))


class JsStaticStage:
    name: ClassVar[str] = STAGE
    # 2: folding and parse budgets; 3: recognised library code skipped or attributed;
    # 4: severity by data flow, families; 5: carriers, reassigned names, subscripts
    version: ClassVar[int] = 5
    # CPU-bound: a worker process that can be killed; shards of files run side by side.
    runs_in_process: ClassVar[bool] = True
    per_file: ClassVar[bool] = True

    def __init__(
        self, rules: CompiledRules, max_file_bytes: int, libraries: LibraryIndex | None = None
    ) -> None:
        self.rules = rules
        self.max_file_bytes = max_file_bytes
        self.libraries = libraries if libraries is not None else LibraryIndex()

    @classmethod
    def from_settings(cls, settings: Settings) -> JsStaticStage:
        try:
            libraries = library_index(settings)
        except (LibraryIndexError, OSError) as exc:
            # Without the index every byte is analysed: slower, never less safe. The
            # libraries stage fails on the same index and says so.
            log.warning("library index unavailable, analysing every library: %s", exc)
            libraries = LibraryIndex()
        return cls(compiled_rules(settings.rules_dir / "js"), settings.js_max_file_bytes, libraries)

    def run(self, workspace: Workspace) -> StageResult:
        result = StageResult(self.name, self.version, tool_versions=parser_versions())
        manifest = workspace.manifest.manifest
        # Without a valid manifest nothing is declared, so nothing is excused.
        capabilities = manifest.capabilities if manifest else Capabilities()
        for f in workspace.javascript_files():
            if f.size > self.max_file_bytes:
                result.coverage.skip(f.path, f"larger than {self.max_file_bytes} bytes")
                result.findings.append(
                    _gap(f.path, f"{f.path} is too large to parse ({f.size} bytes)")
                )
                continue
            analysis = self._analyze(f.path, workspace.read_bytes(f.path), capabilities, result)
            if not analysis.parsed:
                result.coverage.skip(f.path, "the syntax tree outgrew its memory budget")
                continue
            result.coverage.scanned.append(f.path)
            if analysis.has_syntax_errors:
                result.findings.append(
                    _gap(
                        f.path,
                        f"{f.path} has syntax the parser could not read; "
                        "parts of it were not analysed",
                        Severity.LOW,
                    )
                )
        return result

    def _analyze(
        self, path: str, source: bytes, capabilities: Capabilities, result: StageResult
    ) -> FileAnalysis:
        """Analyse one file; whole unchanged published files in it are not: their behaviour
        is the library's, and parsing them is most of the cost of a typical bundle."""
        copies = recognise(source, self.libraries)
        blanked, skipped = blank(source, copies)
        analysis = analyze_source(path, blanked, self.rules, capabilities)
        if skipped and analysis.has_syntax_errors:
            # The code around a copy did not stand without it: analyse everything.
            skipped = []
            analysis = analyze_source(path, source, self.rules, capabilities)
        if skipped:
            result.raw.setdefault("libraries_skipped", {})[path] = [
                {"library": c.label, "start": c.start, "end": c.end} for c in skipped
            ]
        analysis.findings = Attributor(copies).attribute(analysis.findings)
        result.findings.extend(analysis.findings)
        return analysis


def _gap(path: str, message: str, severity: Severity = Severity.MEDIUM) -> Finding:
    return Finding(STAGE, "js-not-analysed", Category.COVERAGE, severity, message, path=path)
