"""Data planted in the page for another script: the carrier half of a split loader.

Exploit kits and loaders split their stage 2 across scripts so that no one of them reads
as code: one script leaves an encoded blob or a set of keys in page globals, another
(served elsewhere, or injected later) decodes and runs it. A plugin has no business
leaving constants in the page that its own code never reads; a plugin whose only work is
doing so is a carrier, whatever the data looks like.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from tree_sitter import Node

from scanner.findings import Severity
from scanner.js.code import shannon_entropy
from scanner.js.engine import Captures, FileContext, Hit, analyzer
from scanner.js.rules import JsRule
from scanner.js.values import string_literal
from scanner.regex import compile_linear

DECLARATIONS = ("variable_declaration", "lexical_declaration")
MODULE_STATEMENTS = ("import_statement", "export_statement")
# Whose properties are page globals when assigned at the top of a classic script.
GLOBAL_OBJECTS = frozenset({"window", "self", "globalThis", "this", "top", "parent"})
CONSTANT_TYPES = ("number", "string", "true", "false", "null", "undefined")
# Past this many constant names a file is a data table (generated code), not a carrier:
# checking each name against the file costs its size.
MAX_CANDIDATES = 64
# A file that is nothing but this many unread constants (and one statement besides, its
# export) does no work of its own.
MIN_PLANTED = 3
# An opaque string this long that nothing reads is a payload, whatever else the file does.
MIN_OPAQUE_CHARS = 512
MIN_OPAQUE_ENTROPY = 4.5
# Encoded code is letters and punctuation shuffled; tables of words are not.
MIN_OPAQUE_SYMBOLS = 0.1
MAX_NON_ASCII = 0.05
MAX_CONSTANT_DEPTH = 16
_WHITESPACE_RE = compile_linear(r"\s", rule="js:carriers:whitespace")
# Images, fonts and wasm travel as base64; a blob of those is not judged here.
_BASE64_RE = compile_linear(r"[A-Za-z0-9+/=_-]+", rule="js:carriers:base64")


@analyzer("planted_data")
def planted_data(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    """Constants left in page globals that the file never reads (judged once per file)."""
    program = caps["hit"][0]
    if program.type != "program" or rule.id in ctx.judged:
        return
    ctx.judged.add(rule.id)
    statements = [c for c in program.named_children if c.type not in ("comment", "empty_statement")]
    if any(s.type in MODULE_STATEMENTS for s in statements):
        return  # a module's top-level names are its own, not the page's
    planted: list[tuple[str, Node]] = []
    others = checked = 0
    for statement in statements:
        found = list(_constants(statement)) if _is_assignment(statement) else []
        checked += len(found)
        if not found or checked > MAX_CANDIDATES:
            others += 1
        elif all(_unread(ctx, name) for name, _ in found):
            planted.extend(found)
        else:
            others += 1
    for name, value in planted:
        if value.type in ("string", "template_string") and _opaque(string_literal(value)):
            yield Hit(
                value,
                f"leaves an opaque encoded string in the page global {name!r} that this bundle"
                " never reads: a payload for another script to decode (a split loader)",
                Severity.HIGH,
                evidence=ctx.text(value, 160),
                honour_declared=False,
            )
    if len(planted) >= MIN_PLANTED and others <= 1:
        names = ", ".join(name for name, _ in planted[:8])
        first = planted[0][1]
        yield Hit(
            first.parent or first,
            f"does nothing but leave {len(planted)} constants in page globals it never reads"
            f" ({names}): data for another script on the page",
            Severity.MEDIUM,
            evidence=ctx.text(first.parent, 160),
            honour_declared=False,
        )


def _is_assignment(statement: Node) -> bool:
    return statement.type in DECLARATIONS or statement.type == "expression_statement"


def _constants(statement: Node) -> Iterator[tuple[str, Node]]:
    """(name, value) for each page global the statement sets to a constant; stops at the
    first part that is not one (the caller then counts the statement as work)."""
    if statement.type in DECLARATIONS:
        for declarator in statement.named_children:
            if declarator.type == "comment":
                continue
            name = declarator.child_by_field_name("name")
            value = declarator.child_by_field_name("value")
            if declarator.type != "variable_declarator" or name is None or value is None:
                return
            if name.type != "identifier" or not _constant(value):
                return
            yield _text(name), value
        return
    expression = statement.named_children[0] if statement.named_children else None
    if expression is None or expression.type != "assignment_expression":
        return
    left = expression.child_by_field_name("left")
    value = expression.child_by_field_name("right")
    if left is None or value is None or left.type != "member_expression" or not _constant(value):
        return
    owner = left.child_by_field_name("object")
    prop = left.child_by_field_name("property")
    if owner is None or prop is None or _text(owner) not in GLOBAL_OBJECTS:
        return
    yield _text(prop), value


def _constant(value: Node, depth: int = 0) -> bool:
    if depth > MAX_CONSTANT_DEPTH:
        return False  # hostile nesting: not data a carrier needs
    if value.type in CONSTANT_TYPES:
        return True
    if value.type == "unary_expression" and value.named_child_count == 1:
        return _constant(value.named_children[0], depth + 1)
    if value.type == "template_string":
        return not any(c.type == "template_substitution" for c in value.named_children)
    if value.type == "array":
        return all(_constant(c, depth + 1) for c in value.named_children if c.type != "comment")
    return False


def _unread(ctx: FileContext, name: str) -> bool:
    """Spelled once in the file, so never read here. A substring count over-counts (the
    name inside another word or string), which only ever keeps a name from counting."""
    return ctx.source.count(name.encode("utf-8")) == 1


def _opaque(text: str) -> bool:
    """Not prose, markup, JSON, a data URI, a base64 blob or a table of words in any
    script: no whitespace, almost all ASCII, many symbols among the letters."""
    if len(text) < MIN_OPAQUE_CHARS or text.startswith("data:"):
        return False
    if sum(1 for c in text if not c.isascii()) > MAX_NON_ASCII * len(text):
        return False
    # RE2 takes UTF-8: a lone surrogate from a \ud800 escape becomes '?'.
    safe = text.encode("utf-8", "replace").decode("utf-8")
    if _WHITESPACE_RE.search(safe) or _BASE64_RE.fullmatch(safe):
        return False
    symbols = sum(1 for c in text if not c.isalnum())
    if symbols < MIN_OPAQUE_SYMBOLS * len(text) or shannon_entropy(text) < MIN_OPAQUE_ENTROPY:
        return False
    try:
        json.loads(text)
    except ValueError:
        return True
    return False  # data in JSON is data, whoever reads it


def _text(node: Node) -> str:
    return node.text.decode("utf-8", "replace") if node.text else ""
