"""Analyzers for malware families, by behaviour: hidden API names, Windows Script Host
droppers, shellcode and heap spray, and browser miners.

Each looks for what the family has to do to work, not for a sample's text: a landing page
has to reach ``eval``/``document.write`` under a name that does not read as one, a dropper
has to talk to the Windows Script Host, an exploit has to put shellcode in memory, a
miner has to speak a pool protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

from tree_sitter import Node

from scanner.findings import Category, Severity
from scanner.js.engine import Captures, FileContext, Hit, analyzer
from scanner.js.rules import JsRule
from scanner.js.values import FUNCTION_NODES, Value, path_to, string_literal
from scanner.regex import compile_linear

# Names whose only reason to be assembled from pieces at run time is that a reader (or a
# scanner) would stop at them. Terser folds constant concatenations, so real minified
# code never spells these as 'do'+'cument'.
HIDDEN_NAMES = frozenset(
    {
        "eval",
        "Function",
        "execScript",
        "setTimeout",
        "setInterval",
        "write",
        "writeln",
        "document",
        "cookie",
        "createElement",
        "appendChild",
        "insertBefore",
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "fromCharCode",
        "charCodeAt",
        "unescape",
        "escape",
        "decodeURIComponent",
        "atob",
        "btoa",
        "ActiveXObject",
        "XMLHttpRequest",
        "sendBeacon",
        "userAgent",
        "referrer",
        "location",
        "navigator",
        "localStorage",
        "sessionStorage",
        "iframe",
        "script",
        "setAttribute",
        "getElementById",
        "getElementsByTagName",
        "constructor",
        "WebSocket",
        "Image",
        "WScript",
    }
)
# ProgIDs of the Windows Script Host and its file, shell and download objects, and of
# the Windows scripting runtime (``Scripting.*``: droppers test for its Dictionary to tell
# a real Windows host from an emulator): none of them exists in a browser, so a plugin
# naming one is a dropper.
_WSH_PROGID_RE = compile_linear(
    r"wscript\.shell|^scripting\.|adodb\.stream|shell\.application"
    r"|msxml2\.serverxmlhttp|winhttp\.winhttprequest|wscript\.network|schedule\.service"
    r"|^winmgmts:",
    rule="js:families:wsh_progid",
    ignore_case=True,
)
# ActiveX controls exploit kits probe for before choosing an exploit.
_PLUGIN_PROGID_RE = compile_linear(
    r"shockwaveflash|acropdf|pdf\.pdfctrl|agcontrol|quicktime|javawebstart|javaplugin"
    r"|realplayer|wmplayer|kaspersky|tmactmon",
    rule="js:families:plugin_progid",
    ignore_case=True,
)
# What old Ajax and polyfill code creates: XMLHTTP, XML DOM, htmlfile (a clean global).
_LEGACY_PROGID_RE = compile_linear(
    r"^(msxml2|microsoft)\.?(xmlhttp|xmldom|domdocument)|^htmlfile$",
    rule="js:families:legacy_progid",
    ignore_case=True,
)
_UNICODE_ESCAPE_RE = compile_linear(r"%u[0-9a-fA-F]{4}", rule="js:families:percent_u")
# Stratum and the browser-miner protocols on top of it.
_POOL_RE = compile_linear(
    r"stratum\+(tcp|ssl)://|mining\.(subscribe|authorize|submit|notify)"
    r"|\"method\"\s*:\s*\"(login|submit|getjob)\"|cryptonight|randomx|\bcn/r\b",
    rule="js:families:pool",
    ignore_case=True,
)


def _regex_safe(text: str) -> str:
    """RE2 takes UTF-8: a lone surrogate from a ``\\ud800`` escape becomes '?'."""
    return text.encode("utf-8", "replace").decode("utf-8")


_NAME_RE = compile_linear(r"^[A-Za-z_$][A-Za-z0-9_$]*$", rule="js:families:name")
_LITERAL_PIECE_TYPES = ("string", "binary_expression", "parenthesized_expression")


def _split_word(ctx: FileContext, key: Node, name: str) -> bool:
    """``window['parse'+'Int']``: a property name cut mid-word into literal fragments.

    Minifiers fold such constants and nobody writes them by hand, whatever the name; a
    boundary between two letters shows the cut is there only to break up the word.
    """
    if not _NAME_RE.match(_regex_safe(name)) or key.type != "binary_expression":
        return False
    pieces: list[str] = []
    stack = [key]
    while stack:
        n = stack.pop()
        if n.type not in _LITERAL_PIECE_TYPES:
            return False  # a variable part: a computed name, not a cut-up constant
        if n.type == "string":
            pieces.append(string_literal(n))
        else:
            stack.extend(reversed([c for c in n.named_children if c.type != "comment"]))
    pieces = [p for p in pieces if p]
    return len(pieces) >= 2 and any(a[-1].isalnum() and b[0].isalnum() for a, b in pairwise(pieces))


@analyzer("hidden_name")
def hidden_name(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    """A sensitive API name assembled from fragments, decoded, or with a marker removed."""
    node = caps["hit"][0]
    key = caps["key"][0]
    value = ctx.resolver.full(key)
    if value is None or not value.built:
        return
    how = "decodes" if value.decoded else "assembles"
    if _calls_own_function(ctx, node, key, value):
        yield Hit(
            node,
            f"calls its own function {value.text!r} through a page global whose name it"
            f" {how} at run time, so that no call to it appears in the source",
            evidence=ctx.text(node.parent, 200),
            honour_declared=False,
        )
        return
    if value.text not in HIDDEN_NAMES and not (
        node.type == "subscript_expression" and _split_word(ctx, key, value.text)
    ):
        return
    yield Hit(
        node,
        f"{how} the name {value.text!r} at run time so that it never appears in the source",
        evidence=ctx.text(node, 200),
        honour_declared=False,
    )


_GLOBAL_OBJECTS = frozenset({"window", "self", "globalThis", "top", "parent"})
_MAX_KEY_NODES = 200


def _calls_own_function(ctx: FileContext, node: Node, key: Node, value: Value) -> bool:
    """``window[dec(k[1])]()`` (or top-level ``this[...]()``) where the key, decoded or
    computed by a call or a table lookup, names a function this file declares: the call
    graph hidden from a reader. A prefix joined to a word (``window[NS + 'Init']()``) is
    how namespaced callbacks are found, and is not this."""
    parent = node.parent
    owner = node.child_by_field_name("object")
    if (
        node.type != "subscript_expression"
        or parent is None
        or parent.type != "call_expression"
        or parent.child_by_field_name("function") != node
        or owner is None
        or not _NAME_RE.match(_regex_safe(value.text))
        or not (value.decoded or _computed(key))
    ):
        return False
    if owner.type == "this":
        # Found from the top: each step up from a node walks down from the root again.
        path = path_to(ctx.root, node)
        if path is None or any(n.type in FUNCTION_NODES for n in path):
            return False  # a method's own this, or deeper than folding follows
    elif owner.type != "identifier" or ctx.text(owner) not in _GLOBAL_OBJECTS:
        return False
    return ctx.resolver.declares_function(value.text)


def _computed(key: Node) -> bool:
    """A call or a subscript inside the key (a decoder, a string table)."""
    stack, seen = [key], 0
    while stack and seen < _MAX_KEY_NODES:
        current = stack.pop()
        seen += 1
        if current.type in ("call_expression", "subscript_expression"):
            return True
        stack.extend(current.named_children)
    return False


@analyzer("windows_script")
def windows_script(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    """WSH objects: a dropper. Plugin probes: exploit-kit reconnaissance. XMLHTTP: old Ajax."""
    node = caps["hit"][0]
    if "wsh" in caps:  # WScript.*, or a method only the Windows Script Host has
        yield Hit(node, f"uses the Windows Script Host ({ctx.text(node, 80)})")
        return
    value = ctx.resolver.full(caps["progid"][0]) if "progid" in caps else None
    if value is None:
        # Old Ajax code loops over XMLHTTP ProgIDs: a reason to look only with other signs.
        yield Hit(
            node,
            "creates an ActiveX object whose name is computed (ActiveX is not a browser API)",
            Severity.LOW,
            Category.OBFUSCATION,
        )
    elif _WSH_PROGID_RE.search(_regex_safe(value.text)):
        yield Hit(node, f"creates the Windows Script Host object {value.text!r}")
    elif _PLUGIN_PROGID_RE.search(_regex_safe(value.text)):
        yield Hit(
            node,
            f"probes for the browser plug-in {value.text!r} (exploit-kit reconnaissance)",
            Severity.LOW,
            Category.OBFUSCATION,
        )
    elif not _LEGACY_PROGID_RE.search(_regex_safe(value.text)):
        # Polyfills use a few (htmlfile for a global, XMLDOM for XML): recorded, not judged.
        yield Hit(
            node, f"creates the ActiveX object {value.text!r}", Severity.LOW, Category.OBFUSCATION
        )


_HEX_ESCAPE_RE = compile_linear(r"^(\\x[2-7][0-9a-fA-F])+$", rule="js:families:hex_fragment")


@analyzer("escaped_fragment")
def escaped_fragment(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    """A literal written wholly as \\x escapes of printable ASCII: minifiers never do that,
    string-building obfuscators do it for every fragment (counted per file by the rule)."""
    node = caps["hit"][0]
    if node.end_byte - node.start_byte > 400:
        return
    if _HEX_ESCAPE_RE.match(ctx.text(node)[1:-1]):
        yield Hit(node, evidence=f"decodes to {string_literal(node)!r}")


@analyzer("shellcode")
def shellcode(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    """``unescape('%u0c0c%u0c0c...')``: machine code as UTF-16, the heap spray's payload."""
    node = caps["hit"][0]
    value = ctx.resolver.full(caps["arg"][0])
    text = value.text if value is not None else ctx.text(caps["arg"][0], 20000)
    units = len(_UNICODE_ESCAPE_RE.findall(_regex_safe(text)))
    if units >= 8:
        yield Hit(
            node,
            f"decodes {units} %u-escaped code units: shellcode for a heap spray",
            evidence=text[:120],
        )


@analyzer("miner")
def miner(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    """A mining-pool protocol message or endpoint in a string."""
    node = caps["hit"][0]
    if node.end_byte - node.start_byte > 20000:
        return
    text = string_literal(node) if node.type == "string" else ctx.text(node, 2000)
    m = _POOL_RE.search(_regex_safe(text))
    if m is not None:
        yield Hit(
            node,
            f"speaks a mining-pool protocol ({m.group(0)!r})",
            evidence=text[:160],
            honour_declared=False,
        )


_ADDRESS_PATTERN_RE = compile_linear(
    r"bc1|\[13\]|0x\[[a-fA-F0-9-]+\]\{40\}|\{25,3[49]\}|T\[[^\]]+\]\{33\}|\{32,44\}",
    rule="js:families:address_pattern",
)
_SWAP_WRITE_RE = compile_linear(
    r"clipboardData\.setData|clipboard\.writeText|execCommand\(\s*['\"]copy"
    r"|\.value\s*=|\.replace\(",
    rule="js:families:swap_write",
)


@analyzer("address_swapper")
def address_swapper(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    """A wallet-address pattern, and the clipboard (or a field) written in the same code."""
    node = caps["hit"][0]
    pattern = ctx.text(node, 400)
    if not _ADDRESS_PATTERN_RE.search(pattern):
        return
    scope = node.parent
    for _ in range(12):  # the enclosing function, or the file
        if scope is None or scope.type in ("function_declaration", "function_expression",
                                           "arrow_function", "program"):  # fmt: skip
            break
        scope = scope.parent
    body = ctx.text(scope, 50_000) if scope is not None else ""
    if "clipboard" in body.lower() and _SWAP_WRITE_RE.search(body):
        yield Hit(node, evidence=pattern[:160], honour_declared=False)
