"""Analyzers for code made at run time and for code written to hide what it does."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from collections.abc import Iterable

from tree_sitter import Node

from scanner.findings import Category, Severity
from scanner.js.engine import Captures, FileContext, Hit, analyzer
from scanner.js.rules import JsRule
from scanner.js.values import string_literal
from scanner.regex import compile_linear

# The portable way to find the global object; every bundler emits it.
_GLOBAL_THIS_RE = compile_linear(r"^\s*return\s+this\s*;?\s*$", rule="js:code:global_this")
_DECODER_CALL_RE = compile_linear(
    r"\b(atob|unescape|decodeURIComponent|fromCharCode|b64decode)\s*\(|Buffer\.from\(",
    rule="js:code:decoder_call",
)
_REMOTE_CODE_RE = compile_linear(
    r"responseText|\.text\(\)|\.response\b|event\.data|\.data\b", rule="js:code:remote_code"
)
_JS_TOKENS_RE = compile_linear(
    rb"\b(function|eval|fetch|document\.|window\.|XMLHttpRequest|return|var |const |let )",
    rule="js:code:js_tokens",
)
_BASE64_RE = compile_linear(r"^[A-Za-z0-9+/=_-]+$", rule="js:code:base64")
_ESCAPED_PRINTABLE_RE = compile_linear(
    r"\\x[2-7][0-9a-fA-F]|\\u00[2-7][0-9a-fA-F]", rule="js:code:escaped_printable"
)
_RISKY_DECODED_RE = compile_linear(
    r"https?:|eval|fetch|cookie|script|XMLHttpRequest",
    rule="js:code:risky_decoded",
    ignore_case=True,
)
ENCODED_PAYLOAD = "js-encoded-payload"


def _encoded_companion(node: Node, how: str) -> Hit:
    return Hit(
        node,
        f"hides code in {how}",
        Severity.HIGH,
        Category.OBFUSCATION,
        rule_id=ENCODED_PAYLOAD,
        honour_declared=False,
    )


@analyzer("dynamic_code")
def dynamic_code(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    """eval / Function / string timers, judged by where the code string comes from."""
    hit = caps["hit"][0]
    code = caps["code"][0]
    value = ctx.resolver.value(code)
    is_timer = "timer" in rule.id
    if is_timer and value is None and code.type not in ("string", "template_string"):
        return  # a function passed to setTimeout is ordinary code
    if value is not None and value.complete:
        if _GLOBAL_THIS_RE.match(value.text):
            return
        if value.decoded:
            yield Hit(
                hit,
                "runs code decoded from an encoded literal",
                Severity.CRITICAL,
                payload=value.text,
                honour_declared=False,
            )
            yield _encoded_companion(hit, "an encoded string that is then run")
        else:
            yield Hit(hit, "runs a constant string as code", Severity.LOW, payload=value.text)
        return
    source = ctx.text(code, 2000)
    if _DECODER_CALL_RE.search(source):
        yield Hit(hit, "runs code produced by a decoder", Severity.HIGH, honour_declared=False)
        yield _encoded_companion(hit, "decoded data that is then run")
    elif _REMOTE_CODE_RE.search(source):
        yield Hit(
            hit,
            "runs code received at run time (a network response or message)",
            Severity.CRITICAL,
            honour_declared=False,
        )
    else:
        yield Hit(hit)


@analyzer("packed")
def packed(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    params = re.sub(r"\s", "", ctx.text(caps["params"][0]))
    if params.startswith("(p,a,c,k,e,"):
        yield Hit(caps["hit"][0])


@analyzer("escaped_string")
def escaped_string(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    """Printable ASCII written as \\x escapes: no reason but to hide a word like 'fetch'."""
    node = caps["hit"][0]
    raw = ctx.text(node, 20000)
    escaped = len(_ESCAPED_PRINTABLE_RE.findall(raw))
    if escaped >= 8 and escaped * 4 >= 0.5 * len(raw):
        decoded = string_literal(node)
        yield Hit(node, evidence=f"decodes to {decoded[:120]!r}")


@analyzer("char_codes")
def char_codes(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    node = caps["hit"][0]
    args = caps["args"][0]
    numbers = [a for a in args.named_children if a.type == "number"]
    if len(numbers) < 6:
        return
    value = ctx.resolver.full(node)
    text = value.text if value else ""
    risky = _RISKY_DECODED_RE.search(text)
    yield Hit(
        node, severity=Severity.HIGH if risky else None, evidence=f"decodes to {text[:120]!r}"
    )


def shannon_entropy(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


@analyzer("long_string")
def long_string(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    """Long literals: base64 that decodes to JavaScript is a stashed payload; blobs are not."""
    node = caps["hit"][0]
    if node.end_byte - node.start_byte < 400:
        return
    text = string_literal(node)
    compact = re.sub(r"\s", "", text)
    # isascii first: base64 is ASCII, and a lone surrogate (\ud800) cannot go to RE2.
    if len(compact) >= 400 and compact.isascii() and _BASE64_RE.match(compact):
        head = _b64_head(compact)
        if head is not None and _looks_like_js(head):
            full = _b64_full(compact)
            yield Hit(
                node,
                "a base64 string that decodes to JavaScript",
                Severity.HIGH,
                payload=full,
                evidence=f"decodes to {head[:120].decode('latin-1')!r}",
                honour_declared=False,
            )
        return  # images, fonts, wasm: legitimate blobs
    if len(text) >= 1000 and shannon_entropy(text) >= 5.5:
        yield Hit(node, "a long high-entropy string (encrypted or packed data)", Severity.LOW)


def _b64_head(compact: str) -> bytes | None:
    chunk = compact[:4096]
    chunk = chunk[: len(chunk) - len(chunk) % 4]
    try:
        return base64.b64decode(chunk.replace("-", "+").replace("_", "/"), validate=False)
    except (binascii.Error, ValueError):
        return None


def _b64_full(compact: str) -> str | None:
    try:
        data = base64.b64decode(compact.replace("-", "+").replace("_", "/") + "==", validate=False)
    except (binascii.Error, ValueError):
        return None
    return data.decode("utf-8", "replace")


def _looks_like_js(data: bytes) -> bool:
    if not data:
        return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in data)
    return printable / len(data) > 0.95 and len(_JS_TOKENS_RE.findall(data)) >= 2
