"""Run every JS rule over one parsed file (only around its atoms) and turn hits into findings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from tree_sitter import Node, QueryCursor

from scanner.findings import Category, Finding, RuleState, Severity, truncate
from scanner.js.parser import ParseBudgetError, parse_bounded
from scanner.js.rules import CompiledRule, CompiledRules, JsRule
from scanner.js.values import FoldBudget, Resolver, SourceBindings
from scanner.manifest import Capabilities

STAGE = "js-static"
MAX_PER_RULE_PER_FILE = 25
MAX_PAYLOAD_DEPTH = 3
MAX_MATCHES_PER_FILE = 200_000
# A ranged query costs about as much as walking this many bytes of tree (measured: 20-50 us
# per range against 0.2 us per byte for a full walk); past that many ranges, walk it all.
RANGE_COST_BYTES = 128
MIN_RANGES = 4000
RANGE_MERGE_GAP = 256


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
    # Analyzers that judge a whole file note here that they have (once per file).
    judged: set[str] = field(default_factory=set)

    def text(self, node: Node | None, limit: int | None = None) -> str:
        if node is None:
            return ""
        raw = self.source[
            node.start_byte : node.end_byte
            if limit is None
            else min(node.end_byte, node.start_byte + limit)
        ]
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


@dataclass
class FileAnalysis:
    findings: list[Finding] = field(default_factory=list)
    has_syntax_errors: bool = False
    parsed: bool = True


def analyze_source(
    path: str,
    source: bytes,
    rules: CompiledRules,
    capabilities: Capabilities,
    depth: int = 0,
    budget: FoldBudget | None = None,
) -> FileAnalysis:
    """Every rule over one file; decoded payloads share the file's folding budget."""
    budget = budget or FoldBudget()
    try:
        root = parse_bounded(source).root_node
    except ParseBudgetError as exc:
        return FileAnalysis(findings=[_parse_refused(path, depth, str(exc))], parsed=False)
    ctx = FileContext(
        path, source, root, Resolver(SourceBindings(source, root), budget), capabilities, depth
    )
    collected: dict[str, list[tuple[JsRule, Hit]]] = {}
    for compiled in rules.rules:
        rule = compiled.rule
        for captures in _matches(compiled, source, root):
            for hit in ANALYZERS[rule.analyzer](ctx, rule, captures):
                collected.setdefault(hit.rule_id or rule.id, []).append((rule, hit))
    out = FileAnalysis(has_syntax_errors=root.has_error)
    for hits in collected.values():
        out.findings.extend(_to_findings(ctx, hits, rules))
    if depth == 0 and budget.stopped is not None:
        out.findings.append(_folding_note(path, budget.stopped))
    return out


def _parse_refused(path: str, depth: int, why: str) -> Finding:
    what = "code decoded from it" if depth else path
    return Finding(
        stage=STAGE,
        rule_id="js-not-analysed",
        category=Category.COVERAGE,
        severity=Severity.MEDIUM,
        message=f"{what} was not analysed: {why} (too many tokens for its size)",
        path=path,
    )


def _folding_note(path: str, why: str) -> Finding:
    """Folding stopped early: strings built at run time there were not all seen."""
    return Finding(
        stage=STAGE,
        rule_id="js-folding-limited",
        category=Category.COVERAGE,
        severity=Severity.LOW,
        message=f"{path}: constant folding stopped ({why}); strings the code builds at run"
        " time were not all followed",
        path=path,
    )


def atom_ranges(source: bytes, rule: CompiledRule) -> list[tuple[int, int]] | None:
    """Merged byte ranges around the rule's atoms; None when so many that a full walk is cheaper."""
    limit = max(MIN_RANGES, len(source) // RANGE_COST_BYTES)
    spans: list[tuple[int, int]] = []
    for atom in rule.atoms:
        start = source.find(atom)
        while start != -1:
            spans.append((start, start + len(atom)))
            if len(spans) > limit:
                return None
            start = source.find(atom, start + 1)
    if rule.atom_regex is not None:
        for m in rule.atom_regex.finditer(source):
            spans.append(m.span())
            if len(spans) > limit:
                return None
    if rule.atom_min_token is not None:
        spans.extend(long_tokens(source, rule.atom_min_token))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start - merged[-1][1] <= RANGE_MERGE_GAP:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


_TOKEN_BREAKS = bytes.maketrans(b"'\"`", b"   ")


def long_tokens(source: bytes, min_len: int) -> list[tuple[int, int]]:
    """Spans of runs without whitespace or quotes, in linear time (split runs in C)."""
    spans = []
    pos = 0
    for token in source.translate(_TOKEN_BREAKS).split():
        if len(token) >= min_len:
            start = source.find(token, pos)
            spans.append((start, start + len(token)))
            pos = start + len(token)
    return spans


def _matches(compiled: CompiledRule, source: bytes, root: Node) -> Iterator[Captures]:
    """The rule's matches, each once, from a walk of only the ranges its atoms allow."""
    ranges = atom_ranges(source, compiled)
    if ranges == []:
        return
    cursor = QueryCursor(compiled.query, match_limit=MAX_MATCHES_PER_FILE)
    if ranges is None:
        for _, captures in cursor.matches(root):
            yield captures
        return
    seen: set[tuple[int, int, int]] = set()
    for start, end in ranges:
        cursor.set_byte_range(start, end)
        for pattern, captures in cursor.matches(root):
            hit = captures["hit"][0]
            key = (pattern, hit.start_byte, hit.end_byte)
            if key not in seen:
                seen.add(key)
                yield captures


def _to_findings(
    ctx: FileContext, hits: list[tuple[JsRule, Hit]], rules: CompiledRules
) -> list[Finding]:
    rule = hits[0][0]
    if rule.once_per_file and not hits[0][1].rule_id:
        if len(hits) < rule.min_count:
            return []
        first = _finding(ctx, rule, hits[0][1])
        note = f" ({len(hits)} occurrences in this file)" if len(hits) > 1 else ""
        # One finding stands for every hit: its span covers them all.
        span = (
            (min(h.node.start_byte for _, h in hits), max(h.node.end_byte for _, h in hits))
            if ctx.depth == 0
            else None
        )
        return [replace(first, message=first.message + note, span=span)]
    out = []
    for r, hit in hits[:MAX_PER_RULE_PER_FILE]:
        out.append(_finding(ctx, r, hit))
        if hit.payload is not None and ctx.depth < MAX_PAYLOAD_DEPTH:
            out.extend(_payload_findings(ctx, hit, rules))
    if len(hits) > MAX_PER_RULE_PER_FILE:
        last = out[-1]
        # Stands for hits elsewhere in the file: no span, so never attributed.
        out.append(
            replace(
                last,
                message=f"{len(hits) - MAX_PER_RULE_PER_FILE} more like this in the file",
                span=None,
            )
        )
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
        span=(hit.node.start_byte, hit.node.end_byte) if ctx.depth == 0 else None,
        # Which capability this use exercises: the capability table's static column.
        details=(("capability", rule.capability),) if rule.capability and not hit.rule_id else (),
    )


def _payload_findings(ctx: FileContext, hit: Hit, rules: CompiledRules) -> list[Finding]:
    """Analyse the code an eval would run, and report it at the eval's line."""
    assert hit.payload is not None
    budget = ctx.resolver.budget
    if not budget.spend(len(hit.payload)):
        return []  # the budget's note says what was left
    inner = analyze_source(
        ctx.path,
        hit.payload.encode("utf-8", "surrogatepass"),
        rules,
        ctx.capabilities,
        ctx.depth + 1,
        budget,
    )
    line = hit.node.start_point[0] + 1
    return [
        replace(
            f,
            message=f"in code decoded at line {line}: {f.message}",
            line=line if ctx.depth == 0 else None,
            span=None,
        )
        for f in inner.findings
    ]
