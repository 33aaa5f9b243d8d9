"""JS rules as data: one TOML file per rule under rules/js/, file stem = rule id."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tree_sitter import Query

from scanner.findings import Category, RuleState, Severity
from scanner.js.parser import compile_query
from scanner.manifest import CAPABILITY_KEYS
from scanner.regex import Regex, RegexRefusedError, compile_linear


class RuleError(ValueError):
    """A rule file is malformed; the rule set cannot be loaded."""


@dataclass(frozen=True)
class JsRule:
    id: str
    title: str
    message: str
    category: Category
    severity: Severity
    state: RuleState
    query: str
    analyzer: str = "report"
    # The declared capability that makes this behaviour expected rather than a finding.
    capability: str | None = None
    # Report one finding per file with a count instead of one per occurrence.
    once_per_file: bool = False
    # With once_per_file: fewer occurrences than this are not reported.
    min_count: int = 1
    # Literals every match contains; the query runs only around their occurrences.
    atoms: tuple[str, ...] = ()
    # Or a regex (over bytes) whose matches mark where the query must run.
    atom_regex: str | None = None
    # Or: runs of at least this many bytes without whitespace or quotes (long literals).
    atom_min_token: int | None = None


@dataclass(frozen=True)
class CompiledRule:
    rule: JsRule
    atoms: tuple[bytes, ...]
    atom_regex: Regex[bytes] | None
    atom_min_token: int | None

    @cached_property
    def query(self) -> Query:
        """Compiled on first use: most bundles never contain most rules' atoms."""
        try:
            return compile_query(self.rule.query)
        except Exception as exc:
            raise RuleError(f"{self.rule.id}: query does not compile: {exc}") from None


@dataclass(frozen=True)
class CompiledRules:
    rules: tuple[CompiledRule, ...]


def load_rules(directory: Path, analyzers: Sequence[str]) -> list[JsRule]:
    rules = []
    for path in sorted(directory.glob("*.toml")):
        rules.append(_parse_rule(path, set(analyzers)))
    if not rules:
        raise RuleError(f"no JS rules found under {directory}")
    return rules


def _parse_rule(path: Path, analyzers: set[str]) -> JsRule:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RuleError(f"{path.name}: {exc}") from None
    try:
        rule = JsRule(
            id=data["id"],
            title=data["title"],
            message=data["message"],
            category=Category(data["category"]),
            severity=Severity.parse(data["severity"]),
            state=RuleState(data.get("state", "enabled")),
            query=data["query"],
            analyzer=data.get("analyzer", "report"),
            capability=data.get("capability"),
            once_per_file=bool(data.get("once_per_file", False)),
            min_count=int(data.get("min_count", 1)),
            atoms=tuple(data.get("atoms", ())),
            atom_regex=data.get("atom_regex"),
            atom_min_token=data.get("atom_min_token"),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise RuleError(f"{path.name}: bad or missing field: {exc}") from None
    if rule.id != path.stem:
        raise RuleError(f"{path.name}: id {rule.id!r} must equal the file name")
    if rule.analyzer not in analyzers:
        raise RuleError(f"{path.name}: unknown analyzer {rule.analyzer!r}")
    if rule.capability is not None and rule.capability not in CAPABILITY_KEYS:
        raise RuleError(f"{path.name}: unknown capability {rule.capability!r}")
    if not rule.atoms and not rule.atom_regex and not rule.atom_min_token:
        raise RuleError(f"{path.name}: needs atoms, atom_regex or atom_min_token")
    if rule.atom_regex is not None:
        try:
            _atom_regex(rule)
        except RegexRefusedError as exc:
            raise RuleError(f"{path.name}: atom_regex: {exc}") from None
    if "@hit" not in rule.query:
        raise RuleError(f"{path.name}: the query must capture the reported node as @hit")
    return rule


def compile_rules(rules: Sequence[JsRule]) -> CompiledRules:
    """Compile each live rule's query and atoms once per process."""
    compiled = []
    for rule in rules:
        if rule.state is RuleState.DISABLED:
            continue
        regex = _atom_regex(rule) if rule.atom_regex else None
        atoms = tuple(a.encode() for a in rule.atoms)
        compiled.append(CompiledRule(rule, atoms, regex, rule.atom_min_token))
    return CompiledRules(tuple(compiled))


def _atom_regex(rule: JsRule) -> Regex[bytes]:
    """Linear time: an atom regex runs over the whole file before any query does."""
    assert rule.atom_regex is not None
    return compile_linear(rule.atom_regex.encode(), rule=f"js:{rule.id}:atom_regex")
