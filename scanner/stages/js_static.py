"""Static JavaScript analysis: every rule runs on one tree-sitter parse per file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import ClassVar

# Imported for their side effect of registering analyzers by name.
import scanner.js.code
import scanner.js.families
import scanner.js.network
import scanner.js.page  # noqa: F401
from scanner.config import Settings
from scanner.findings import Category, Finding, Severity, StageResult
from scanner.js.engine import ANALYZERS, STAGE, analyze_source
from scanner.js.parser import parser_versions
from scanner.js.rules import CompiledRules, compile_rules, load_rules
from scanner.manifest import Capabilities
from scanner.workspace import Workspace


@lru_cache(maxsize=4)
def compiled_rules(directory: Path) -> CompiledRules:
    """Compiled once per process and rules directory."""
    return compile_rules(load_rules(directory, list(ANALYZERS)))


class JsStaticStage:
    name: ClassVar[str] = STAGE
    version: ClassVar[int] = 3  # 2: folding and parse budgets; 3: severity by data flow, families
    # CPU-bound: a worker process that can be killed; shards of files run side by side.
    runs_in_process: ClassVar[bool] = True
    per_file: ClassVar[bool] = True

    def __init__(self, rules: CompiledRules, max_file_bytes: int) -> None:
        self.rules = rules
        self.max_file_bytes = max_file_bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> JsStaticStage:
        return cls(compiled_rules(settings.rules_dir / "js"), settings.js_max_file_bytes)

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
            analysis = analyze_source(
                f.path, workspace.read_bytes(f.path), self.rules, capabilities
            )
            result.findings.extend(analysis.findings)
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


def _gap(path: str, message: str, severity: Severity = Severity.MEDIUM) -> Finding:
    return Finding(STAGE, "js-not-analysed", Category.COVERAGE, severity, message, path=path)
