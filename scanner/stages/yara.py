"""YARA over every file: one rule per file under rules/yara/, compiled once per process."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import yara

from scanner.config import Settings
from scanner.findings import Category, Finding, RuleState, Severity, StageResult, truncate
from scanner.workspace import Workspace

MATCH_TIMEOUT_S = 30
EXTERNALS = {"filename": "", "extension": ""}


class YaraRuleError(ValueError):
    """A rule file breaks the one-rule-per-file contract or lacks metadata."""


@dataclass(frozen=True)
class YaraRuleMeta:
    id: str
    category: Category
    severity: Severity
    state: RuleState
    description: str


@dataclass(frozen=True)
class YaraRuleSet:
    rules: Any  # yara.Rules
    meta: dict[str, YaraRuleMeta]


def read_meta(path: Path) -> YaraRuleMeta:
    """Compile one file alone to check it holds exactly one rule named after the file."""
    try:
        compiled = yara.compile(filepath=str(path), externals=EXTERNALS)
    except yara.Error as exc:
        raise YaraRuleError(f"{path.name}: {exc}") from None
    found = list(compiled)
    if len(found) != 1 or found[0].identifier != path.stem:
        raise YaraRuleError(f"{path.name}: must hold exactly one rule named {path.stem!r}")
    meta = found[0].meta
    try:
        return YaraRuleMeta(
            id=path.stem,
            category=Category(meta["category"]),
            severity=Severity.parse(meta["severity"]),
            state=RuleState(meta.get("state", "enabled")),
            description=str(meta["description"]),
        )
    except (KeyError, ValueError) as exc:
        raise YaraRuleError(f"{path.name}: bad or missing meta: {exc}") from None


@lru_cache(maxsize=4)
def load_ruleset(directory: Path) -> YaraRuleSet:
    metas = {p.stem: read_meta(p) for p in sorted(directory.glob("*.yar"))}
    live = {
        rid: str(directory / f"{rid}.yar")
        for rid, m in metas.items()
        if m.state is not RuleState.DISABLED
    }
    if not live:
        raise YaraRuleError(f"no enabled YARA rules under {directory}")
    compiled = yara.compile(filepaths=live, externals=EXTERNALS)
    return YaraRuleSet(compiled, {rid: metas[rid] for rid in live})


class YaraStage:
    name: ClassVar[str] = "yara"
    version: ClassVar[int] = 1

    def __init__(self, ruleset: YaraRuleSet) -> None:
        self.ruleset = ruleset

    @classmethod
    def from_settings(cls, settings: Settings) -> YaraStage:
        return cls(load_ruleset(settings.rules_dir / "yara"))

    def run(self, workspace: Workspace) -> StageResult:
        result = StageResult(self.name, self.version, tool_versions={"yara": yara.__version__})
        for f in workspace.files:
            data = workspace.read_bytes(f.path)
            name = PurePosixPath(f.path).name
            externals = {
                "filename": name,
                "extension": PurePosixPath(name).suffix.lower().lstrip("."),
            }
            try:
                matches = self.ruleset.rules.match(
                    data=data, externals=externals, timeout=MATCH_TIMEOUT_S
                )
            except yara.TimeoutError:
                result.coverage.skip(f.path, "YARA timed out")
                result.findings.append(
                    Finding(
                        self.name,
                        "yara-not-scanned",
                        Category.COVERAGE,
                        Severity.MEDIUM,
                        f"YARA timed out on {f.path}",
                        path=f.path,
                    )
                )
                continue
            result.coverage.scanned.append(f.path)
            result.findings.extend(self._finding(m, f.path, data) for m in matches)
        return result

    def _finding(self, match: Any, path: str, data: bytes) -> Finding:
        meta = self.ruleset.meta[match.rule]
        offset, sample = _first_instance(match)
        return Finding(
            stage=self.name,
            rule_id=meta.id,
            category=meta.category,
            severity=meta.severity,
            message=meta.description,
            path=path,
            line=data.count(b"\n", 0, offset) + 1 if offset is not None else None,
            evidence=truncate(sample) if sample else None,
            state=meta.state,
        )


def _first_instance(match: Any) -> tuple[int | None, str]:
    for s in match.strings:
        for inst in s.instances:
            return int(inst.offset), bytes(inst.matched_data[:120]).decode("utf-8", "replace")
    return None, ""
