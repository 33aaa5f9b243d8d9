"""A bundle never configures its own scanner: directives inside it are ignored and reported."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import ClassVar

from scanner.config import Settings
from scanner.findings import Category, Finding, Severity, StageResult, truncate
from scanner.regex import compile_linear
from scanner.workspace import Workspace

# Files that configure security scanners, ours or others'.
SCANNER_CONFIG_NAMES = frozenset(
    {
        ".gatehouseignore",
        ".gatehouse.toml",
        ".gatehouse.yml",
        ".gatehouse.yaml",
        "gatehouse.toml",
        ".bandit",
        ".semgrepignore",
        ".guarddog.yml",
        ".guarddogignore",
        ".yaraignore",
        ".clamignore",
        ".trivyignore",
        ".snyk",
    }
)
# Literal-first patterns (no case folding, no leading class): RE2 searches for the literal.
_PRAGMA_RES = (
    compile_linear(rb"atehouse[-_: ]*(?:ignore|disable|allow|skip)", rule="directives:pragma"),
    compile_linear(rb"#\s*nosec\b", rule="directives:nosec"),
)


class DirectivesStage:
    name: ClassVar[str] = "directives"
    version: ClassVar[int] = 2  # 2: RE2, linear time
    # CPU-bound: a worker process that can be killed; shards of files run side by side.
    runs_in_process: ClassVar[bool] = True
    per_file: ClassVar[bool] = True

    @classmethod
    def from_settings(cls, settings: Settings) -> DirectivesStage:
        return cls()

    def run(self, workspace: Workspace) -> StageResult:
        result = StageResult(self.name, self.version)
        for f in workspace.files:
            if PurePosixPath(f.path).name.lower() in SCANNER_CONFIG_NAMES:
                result.findings.append(
                    Finding(
                        self.name,
                        "scanner-config-in-bundle",
                        Category.OBFUSCATION,
                        Severity.MEDIUM,
                        "the bundle carries a scanner configuration file; it was ignored",
                        path=f.path,
                    )
                )
            if not workspace.is_text(f.path):
                continue
            result.coverage.scanned.append(f.path)
            data = workspace.read_bytes(f.path)
            hits = sorted(
                (m for r in _PRAGMA_RES for m in r.finditer(data)), key=lambda m: m.start()
            )
            for m in hits[:5]:
                nosec = m.group(0).startswith(b"#")
                result.findings.append(
                    Finding(
                        self.name,
                        "scanner-pragma-in-bundle",
                        Category.OBFUSCATION,
                        Severity.INFO if nosec else Severity.LOW,
                        "an inline scanner directive; it was ignored",
                        path=f.path,
                        line=data.count(b"\n", 0, m.start()) + 1,
                        evidence=truncate(
                            data[max(0, m.start() - 40) : m.end() + 40].decode("utf-8", "replace")
                        ),
                    )
                )
        return result
