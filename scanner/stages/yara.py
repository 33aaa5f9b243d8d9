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


def _compile(files: dict[str, str]) -> tuple[Any, dict[str, YaraRuleMeta]]:
    """Compile rule files, one namespace each, and check one rule per file named after it."""
    try:
        compiled = yara.compile(filepaths=files, externals=EXTERNALS)
    except yara.Error as exc:
        raise YaraRuleError(str(exc)) from None
    found: dict[str, list[Any]] = {}
    for rule in compiled:
        found.setdefault(rule.identifier, []).append(rule)
    # One rule per file, named after it: every stem exactly once and nothing else.
    extra = sorted(set(found) - set(files))
    if extra or sum(len(v) for v in found.values()) != len(files):
        names = ", ".join(extra) or "a duplicate"
        raise YaraRuleError(f"each file must hold exactly one rule named after it (found {names})")
    metas = {}
    for rid in files:
        if rid not in found:
            raise YaraRuleError(f"{rid}.yar: must hold exactly one rule named {rid!r}")
        metas[rid] = _meta(rid, found[rid][0].meta)
    return compiled, metas


def _meta(rid: str, meta: dict[str, Any]) -> YaraRuleMeta:
    try:
        return YaraRuleMeta(
            id=rid,
            category=Category(meta["category"]),
            severity=Severity.parse(meta["severity"]),
            state=RuleState(meta.get("state", "enabled")),
            description=str(meta["description"]),
        )
    except (KeyError, ValueError) as exc:
        raise YaraRuleError(f"{rid}.yar: bad or missing meta: {exc}") from None


def read_meta(path: Path) -> YaraRuleMeta:
    """Check a single rule file on its own (for tests and rule authors)."""
    return _compile({path.stem: str(path)})[1][path.stem]


@lru_cache(maxsize=4)
def load_ruleset(directory: Path) -> YaraRuleSet:
    """One compile for the whole set; disabled rules compile but never report."""
    files = {p.stem: str(p) for p in sorted(directory.glob("*.yar"))}
    if not files:
        raise YaraRuleError(f"no YARA rules under {directory}")
    compiled, metas = _compile(files)
    live = {rid: m for rid, m in metas.items() if m.state is not RuleState.DISABLED}
    return YaraRuleSet(compiled, live)


class YaraStage:
    name: ClassVar[str] = "yara"
    version: ClassVar[int] = 1
    # CPU-bound: a worker process that can be killed; shards of files run side by side.
    runs_in_process: ClassVar[bool] = True
    per_file: ClassVar[bool] = True

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
            result.findings.extend(
                self._finding(m, f.path, data) for m in matches if m.rule in self.ruleset.meta
            )
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
