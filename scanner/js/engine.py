"""Run the combined rule query over one file and turn analyzer hits into findings."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from tree_sitter import Node, Query, QueryCursor

from scanner.findings import Category, Finding, RuleState, Severity, truncate
from scanner.js.parser import compile_query, parse
from scanner.js.rules import CompiledRules, JsRule
from scanner.js.values import Resolver, collect_bindings
from scanner.manifest import Capabilities

STAGE = "js-static"
MAX_PER_RULE_PER_FILE = 25
MAX_PAYLOAD_DEPTH = 3
MAX_MATCHES_PER_FILE = 200_000


@dataclass(frozen=True)
class Hit:
    """What an analyzer reports; unset fields fall back to the rule's."""

    node: Node
    message: str | None = None
    severity: Severity | None = None
    category: Category | None = None
    # A companion finding under its own id (e.g. the obfuscation behind an eval).
    rule_id: str | None = None
    evidence: str | None = None
    # Decoded source to analyse in turn (what an eval of an encoded literal would run).
    payload: str | None = None
    # False when a declared capability does not excuse this (hidden code, sensitive data).
    honour_declared: bool = True


@dataclass
class FileContext:
    path: str
    source: bytes
    root: Node
    resolver: Resolver
    capabilities: Capabilities
    depth: int = 0

    def text(self, node: Node | None, limit: int | None = None) -> str:
        if node is None:
            return ""
        raw = self.source[node.start_byte : node.end_byte if limit is None else min(node.end_byte, node.start_byte + limit)]
        return raw.decode("utf-8", "replace")


Captures = dict[str, list[Node]]
Analyzer = Callable[[FileContext, JsRule, Captures], Iterable[Hit]]
ANALYZERS: dict[str, Analyzer] = {}


def analyzer(name: str) -> Callable[[Analyzer], Analyzer]:
    def register(fn: Analyzer) -> Analyzer:
        ANALYZERS[name] = fn
        return fn

    return register


@analyzer("report")
def _report(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    yield Hit(caps["hit"][0])


@lru_cache(maxsize=1)
def _binding_query() -> Query:
    return compile_query(
        """
        (variable_declarator name: (identifier) @name
          value: [(string) (template_string) (binary_expression) (array) (call_expression)
                  (parenthesized_expression) (identifier) (number)] @value)
        (assignment_expression left: (identifier) @name right: (_) @value)
        """
    )


@dataclass
class FileAnalysis:
    findings: list[Finding] = field(default_factory=list)
    has_syntax_errors: bool = False


def analyze_source(
    path: str, source: bytes, rules: CompiledRules, capabilities: Capabilities, depth: int = 0
) -> FileAnalysis:
    tree = parse(source)
    root = tree.root_node
    pairs = [
        (m[1]["name"][0], m[1]["value"][0]) for m in QueryCursor(_binding_query()).matches(root)
    ]
    ctx = FileContext(path, source, root, Resolver(collect_bindings(root, pairs)), capabilities, depth)
    collected: dict[str, list[tuple[JsRule, Hit]]] = {}
    cursor = QueryCursor(rules.query, match_limit=MAX_MATCHES_PER_FILE)
    for pattern, captures in cursor.matches(root):
        rule = rules.rules[rules.owner[pattern]]
        for hit in ANALYZERS[rule.analyzer](ctx, rule, captures):
            collected.setdefault(hit.rule_id or rule.id, []).append((rule, hit))
    out = FileAnalysis(has_syntax_errors=root.has_error)
    for hits in collected.values():
        out.findings.extend(_to_findings(ctx, hits, rules))
    return out


def _to_findings(ctx: FileContext, hits: list[tuple[JsRule, Hit]], rules: CompiledRules) -> list[Finding]:
    rule = hits[0][0]
    if rule.once_per_file and not hits[0][1].rule_id:
        if len(hits) < rule.min_count:
            return []
        first = _finding(ctx, rule, hits[0][1])
        note = f" ({len(hits)} occurrences in this file)" if len(hits) > 1 else ""
        return [_replace_message(first, first.message + note)]
    out = []
    for r, hit in hits[:MAX_PER_RULE_PER_FILE]:
        out.append(_finding(ctx, r, hit))
        if hit.payload is not None and ctx.depth < MAX_PAYLOAD_DEPTH:
            out.extend(_payload_findings(ctx, hit, rules))
    if len(hits) > MAX_PER_RULE_PER_FILE:
        last = out[-1]
        out.append(_replace_message(last, f"{len(hits) - MAX_PER_RULE_PER_FILE} more like this in the file"))
    return out


def _finding(ctx: FileContext, rule: JsRule, hit: Hit) -> Finding:
    severity = hit.severity if hit.severity is not None else rule.severity
    message = hit.message or rule.message
    if (
        hit.honour_declared
        and rule.capability is not None
        and not hit.rule_id
        and ctx.capabilities.declares(rule.capability)
    ):
        # Declared behaviour is expected: recorded for the capability table, never decisive.
        severity = Severity.INFO
        message += f" (expected: the manifest declares {rule.capability})"
    return Finding(
        stage=STAGE,
        rule_id=hit.rule_id or rule.id,
        category=hit.category or rule.category,
        severity=severity,
        message=message,
        path=ctx.path,
        line=hit.node.start_point[0] + 1 if ctx.depth == 0 else None,
        evidence=hit.evidence or truncate(ctx.text(hit.node, 400)),
        state=rule.state if rule.state is RuleState.EVALUATION else RuleState.ENABLED,
    )


def _payload_findings(ctx: FileContext, hit: Hit, rules: CompiledRules) -> list[Finding]:
    """Analyse the code an eval would run, and report it at the eval's line."""
    assert hit.payload is not None
    inner = analyze_source(ctx.path, hit.payload.encode("utf-8", "surrogatepass"), rules, ctx.capabilities, ctx.depth + 1)
    line = hit.node.start_point[0] + 1
    return [
        Finding(
            stage=f.stage, rule_id=f.rule_id, category=f.category, severity=f.severity,
            message=f"in code decoded at line {line}: {f.message}", path=ctx.path,
            line=line if ctx.depth == 0 else None, evidence=f.evidence, state=f.state,
        )
        for f in inner.findings
    ]


def _replace_message(f: Finding, message: str) -> Finding:
    from dataclasses import replace

    return replace(f, message=message)
