"""Analyzers for what leaves the page: requests, script loads, navigation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from tree_sitter import Node, Query, QueryCursor

from scanner.findings import Category, Severity
from scanner.js.engine import Captures, FileContext, Hit, analyzer
from scanner.js.parser import compile_query
from scanner.js.rules import JsRule
from scanner.js.values import Value
from scanner.regex import compile_linear

_URL_RE = compile_linear(
    r"^\s*(?:(?P<scheme>[a-z][a-z0-9+.-]*):)?//(?P<host>[^/?#\\\s]*)(?P<rest>.*)$",
    rule="js:network:url",
    ignore_case=True,
    dot_all=True,
)
_LOCAL_SCHEMES = ("data:", "blob:", "about:", "javascript:", "mailto:", "tel:")
HTTP_METHODS = frozenset(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
# Reads that make a request carrying them sensitive whatever its target.
SENSITIVE_RE = compile_linear(
    r"document\s*\.\s*cookie|localStorage|sessionStorage|getToken|password|\.value\b|FormData|"
    r"\bkey(?:Code|s)?\b|clipboard",
    rule="js:network:sensitive",
    ignore_case=True,
)
GLOBAL_OBJECTS = frozenset({"window", "self", "globalThis", "top", "parent", "frames"})


@dataclass(frozen=True)
class Target:
    """Where a URL points: a remote origin, the host page itself, or unknown."""

    kind: str  # "remote" | "local" | "unknown"
    origin: str = ""


def target_of(value: Value | None) -> Target:
    if value is None:
        return Target("unknown")
    text = value.text.strip()
    if text.lower().startswith(_LOCAL_SCHEMES):
        return Target("local")
    m = _URL_RE.match(text)
    if m is None:
        if (
            value.complete
            or text.startswith(("/", "./", "../", "?", "#"))
            or (text and ":" not in text)
        ):
            return Target("local")  # relative to the host page
        return Target("unknown")
    host = m.group("host")
    # With only a prefix known, the host is only certain once something follows it.
    if not host or (not value.complete and not m.group("rest")):
        return Target("unknown")
    scheme = (m.group("scheme") or "https").lower()
    return Target("remote", f"{scheme}://{host.lower()}")


def _has_dynamic_body(ctx: FileContext, options: Node | None) -> bool:
    """Whether a fetch/beacon carries data that is not a constant."""
    if options is None:
        return False
    if options.type == "object":
        for pair in options.named_children:
            key = pair.child_by_field_name("key")
            if pair.type == "pair" and key is not None and ctx.text(key).strip("'\"") == "body":
                return ctx.resolver.full(pair.child_by_field_name("value")) is None
        return False
    return ctx.resolver.full(options) is None


def _request_hits(
    ctx: FileContext,
    hit: Node,
    what: str,
    url: Node | None,
    carries: bool,
    *,
    generic: bool = False,
) -> Iterable[Hit]:
    """``generic`` sinks (a ``.src`` property) only count with a known remote target."""
    value = ctx.resolver.value(url)
    target = target_of(value)
    if target.kind == "local":
        return
    if target.kind == "unknown":
        if not generic and not ctx.capabilities.declares("network"):
            yield Hit(
                hit,
                f"{what} to a computed URL, and the manifest declares no network access",
                # Evidence of a capability, not of intent: the runtime sees where it goes.
                Severity.LOW,
                Category.UNDECLARED_CAPABILITY,
                honour_declared=False,
            )
        return
    if ctx.capabilities.allows_origin(target.origin + "/"):
        return
    dynamic_url = value is not None and not value.complete
    if carries or dynamic_url:
        sensitive = SENSITIVE_RE.search(ctx.text(hit, 4000))
        detail = f", including {sensitive.group(0)}" if sensitive else ""
        yield Hit(
            hit,
            f"{what} sends data to {target.origin}, "
            f"an origin the manifest does not declare{detail}",
            Severity.CRITICAL if sensitive else Severity.HIGH,
            Category.EXFILTRATION,
            honour_declared=False,
        )
    else:
        yield Hit(
            hit,
            f"{what} contacts {target.origin}, an origin the manifest does not declare",
            Severity.LOW,
            Category.UNDECLARED_CAPABILITY,
            honour_declared=False,
        )


@analyzer("network_request")
def network_request(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    hit = caps["hit"][0]
    fn = ctx.text(caps["fn"][0])
    url = caps["url"][0]
    if fn == "open":
        method = ctx.resolver.full(caps.get("method", [None])[0])
        obj = ctx.text(caps.get("obj", [None])[0])
        if obj in GLOBAL_OBJECTS or (
            method is not None and method.text.upper() not in HTTP_METHODS
        ):
            return  # window.open: navigation, not a request
    options = caps.get("data", [None])[0]
    carries = fn in ("sendBeacon", "WebSocket") or _has_dynamic_body(ctx, options)
    what = {"open": "XMLHttpRequest", "src": "a src attribute", "action": "a form action"}.get(
        fn, fn
    )
    yield from _request_hits(ctx, hit, what, url, carries, generic=fn in ("src", "action"))


@lru_cache(maxsize=1)
def _src_query() -> Query:
    return compile_query(
        """
        (assignment_expression
          left: (member_expression
            object: (identifier) @obj property: (property_identifier) @prop)
          right: (_) @value (#eq? @prop "src"))
        (call_expression
          function: (member_expression
            object: (identifier) @obj property: (property_identifier) @prop)
          arguments: (arguments . (string) @attr . (_) @value)
          (#eq? @prop "setAttribute") (#match? @attr "^.src.$"))
        """
    )


def _bound_name(ctx: FileContext, node: Node) -> str | None:
    parent = node.parent
    if parent is None:
        return None
    if parent.type == "variable_declarator":
        return ctx.text(parent.child_by_field_name("name"))
    if parent.type == "assignment_expression":
        left = parent.child_by_field_name("left")
        return ctx.text(left) if left is not None and left.type == "identifier" else None
    return None


def _scope(node: Node) -> Node:
    scope = node
    while scope.parent is not None and scope.type not in ("statement_block", "program"):
        scope = scope.parent
    return scope


@analyzer("element_injection")
def element_injection(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    """createElement('script'|'iframe') whose src is set in the same block."""
    hit = caps["hit"][0]
    tag_value = ctx.resolver.full(caps["tag"][0])
    tag = tag_value.text.lower() if tag_value else ""
    if tag not in ("script", "iframe", "frame", "object", "embed"):
        return
    name = _bound_name(ctx, hit)
    sources = []
    if name:
        for _, m in QueryCursor(_src_query()).matches(_scope(hit)):
            if ctx.text(m["obj"][0]) == name:
                sources.append(m["value"][0])
    for src in sources[:5]:
        target = target_of(ctx.resolver.value(src))
        if target.kind == "local" or (
            target.kind == "remote" and ctx.capabilities.allows_origin(target.origin + "/")
        ):
            continue
        where = target.origin if target.kind == "remote" else "a computed URL"
        if tag == "script":
            sev = Severity.HIGH if target.kind == "remote" else Severity.LOW
            yield Hit(
                hit,
                f"loads a script from {where} at run time",
                sev,
                Category.DYNAMIC_CODE,
                honour_declared=False,
            )
        else:
            yield Hit(
                hit,
                f"embeds a {tag} from {where}, not a declared origin",
                Severity.MEDIUM if target.kind == "remote" else Severity.LOW,
                Category.UNDECLARED_CAPABILITY,
                honour_declared=False,
            )


@analyzer("dynamic_import")
def dynamic_import(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    hit = caps["hit"][0]
    target = target_of(ctx.resolver.value(caps["url"][0]))
    if target.kind == "local":
        return
    if target.kind == "remote" and ctx.capabilities.allows_origin(target.origin + "/"):
        return
    where = target.origin if target.kind == "remote" else "a computed URL"
    # Bundlers load their own chunks with import(computed): only a known remote host counts.
    sev = Severity.HIGH if target.kind == "remote" else Severity.LOW
    yield Hit(hit, f"imports code from {where} at run time", sev, honour_declared=False)


_CLOAK_RE = compile_linear(
    r"userAgent|referrer|document\.cookie|getHours|getDay|getTimezoneOffset|platform"
    r"|navigator\.language|webdriver|localStorage",
    rule="js:network:cloak",
)
_CONDITIONS = ("if_statement", "ternary_expression", "binary_expression", "while_statement")


def _cloaking_condition(ctx: FileContext, node: Node) -> str | None:
    """What the visitor is tested on before the redirect: device, referrer, time, cookie."""
    ancestor = node.parent
    for _ in range(10):
        if ancestor is None:
            return None
        if ancestor.type in _CONDITIONS:
            cond = ancestor.child_by_field_name("condition") or ancestor.child_by_field_name("left")
            if cond is not None and cond != node:
                m = _CLOAK_RE.search(ctx.text(cond, 2000))
                if m is not None:
                    return f"the visitor's {m.group(0)} passes a test"
        ancestor = ancestor.parent
    return None


@analyzer("navigation")
def navigation(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    hit = caps["hit"][0]
    url = caps.get("url", [None])[0]
    value = ctx.resolver.value(url) if url is not None else None
    target = target_of(value) if url is not None else Target("unknown")
    if target.kind == "remote" and not ctx.capabilities.allows_origin(target.origin + "/"):
        # A fixed link (a library's "about" page) is a link; a URL with run-time data in
        # it is how a redirect carries the user's page, cookies or referrer away.
        carries = value is not None and not value.complete
        cloak = _cloaking_condition(ctx, hit)
        if cloak is not None:
            yield Hit(
                hit,
                f"sends the user to {target.origin} only when {cloak}: the cloaking of an"
                " injected redirect",
                Severity.HIGH,
                Category.MALWARE,
                honour_declared=False,
            )
            return
        yield Hit(
            hit,
            f"sends the user to {target.origin}, an origin the manifest does not declare"
            + (", with data added at run time" if carries else ""),
            Severity.HIGH if carries else Severity.LOW,
        )
    else:
        yield Hit(hit)
