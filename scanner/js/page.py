"""Analyzers for reaching beyond the plugin's container into the host page."""

from __future__ import annotations

import re
from collections.abc import Iterable

from tree_sitter import Node

from scanner.findings import Category, Severity
from scanner.js.engine import Captures, FileContext, Hit, analyzer
from scanner.js.rules import JsRule
from scanner.js.values import FUNCTION_NODES
from scanner.regex import compile_linear

PAGE_TARGETS = frozenset(
    {
        "document",
        "window",
        "self",
        "top",
        "parent",
        "globalThis",
        "document.body",
        "document.documentElement",
        "window.document",
        "document.forms",
    }
)
# Events that carry what the user types or submits.
INPUT_EVENTS = frozenset(
    {
        "keydown",
        "keyup",
        "keypress",
        "input",
        "beforeinput",
        "change",
        "submit",
        "paste",
        "copy",
        "cut",
        "compositionend",
        "focusin",
        "formdata",
    }
)
_PASSWORD_RE = compile_linear(r"password|passwd|pwd", rule="js:page:password", ignore_case=True)
_PAYMENT_RE = compile_linear(
    r"card|\bcc[-_]|cvv|cvc|expir|iban", rule="js:page:payment", ignore_case=True
)
_FORM_SELECTOR_RE = compile_linear(
    r"(^|[\s,>+~(])(form|input|textarea|select)\b|\[\s*(name|type)\s*[~|^$*]?=",
    rule="js:page:form_selector",
    ignore_case=True,
)
# Host primitives whose replacement lets a plugin see or change all page traffic or input.
_OVERRIDE_RE = compile_linear(
    r"^(?:(?:window|self|globalThis|top)\.)?(?:fetch|XMLHttpRequest|WebSocket|EventSource)$"
    r"|^(?:XMLHttpRequest|EventTarget|HTMLFormElement|HTMLInputElement|Element|Node|Document"
    r"|WebSocket|Storage|History|Response|Request)\.prototype\.\w+$"
    r"|^navigator\.(?:sendBeacon|clipboard|credentials|serviceWorker)$"
    r"|^(?:window|document)\.(?:addEventListener|dispatchEvent|write|open|cookie|onerror)$",
    rule="js:page:override",
)


# Methods that pick one named cookie out of the string: what cookie helpers do.
_COOKIE_PARSERS = frozenset(
    {"match", "split", "indexOf", "search", "includes", "replace", "length"}
)


# Where a cookie value goes that makes the read a theft: a request, or an encoding on the
# way to one.
_COOKIE_SINK_CALLS = frozenset(
    {"fetch", "sendBeacon", "send", "open", "btoa", "encodeURIComponent", "escape",
     "WebSocket", "postMessage", "Image"}
)  # fmt: skip
_EXPRESSION_PARENTS = frozenset(
    {"member_expression", "call_expression", "binary_expression", "template_substitution",
     "template_string", "parenthesized_expression", "arguments", "pair", "object", "array",
     "subscript_expression", "new_expression", "ternary_expression", "spread_element"}
)  # fmt: skip


def _callee(ctx: FileContext, call: Node) -> str:
    fn = call.child_by_field_name("function") or call.child_by_field_name("constructor")
    return ctx.text(fn, 200).rsplit(".", 1)[-1] if fn is not None else ""


def _sink_around(ctx: FileContext, node: Node) -> str | None:
    """The request or encoder whose arguments hold ``node``, climbing its expression."""
    current = node
    while current.parent is not None and current.parent.type in _EXPRESSION_PARENTS:
        current = current.parent
        if current.type in ("call_expression", "new_expression"):
            name = _callee(ctx, current)
            if name in _COOKIE_SINK_CALLS and current != node.parent:
                return name
    parent = current.parent
    if parent is not None and parent.type == "assignment_expression":
        left = ctx.text(parent.child_by_field_name("left"), 200)
        if left.endswith((".src", ".href", ".action")):
            return left.rsplit(".", 1)[-1]
    return None


def _bound_name(node: Node, ctx: FileContext) -> tuple[str, Node] | None:
    """The variable the read's expression is stored in, with its enclosing function."""
    current = node
    while current.parent is not None and current.parent.type in _EXPRESSION_PARENTS:
        current = current.parent
    parent = current.parent
    name = None
    if parent is not None and parent.type == "variable_declarator":
        name = ctx.text(parent.child_by_field_name("name"))
    elif parent is not None and parent.type == "assignment_expression":
        left = parent.child_by_field_name("left")
        if left is not None and left.type == "identifier":
            name = ctx.text(left)
    if not name:
        return None
    scope = parent
    while scope is not None and scope.type not in FUNCTION_NODES and scope.type != "program":
        scope = scope.parent
    return (name, scope) if scope is not None else None


MAX_FLOW_NODES = 20_000


def _flows_to_sink(ctx: FileContext, node: Node) -> str | None:
    sink = _sink_around(ctx, node)
    if sink is not None:
        return sink
    bound = _bound_name(node, ctx)
    if bound is None:
        return None
    name, scope = bound
    # The variable as an argument of a request or an encoder in the same function.
    stack, seen = [scope], 0
    while stack and seen < MAX_FLOW_NODES:
        current = stack.pop()
        seen += 1
        if current.type in ("call_expression", "new_expression"):
            callee = _callee(ctx, current)
            args = current.child_by_field_name("arguments")
            if callee in _COOKIE_SINK_CALLS and args is not None and _uses(ctx, args, name):
                return callee
        stack.extend(current.named_children)
    return None


def _uses(ctx: FileContext, node: Node, name: str) -> bool:
    stack, seen = [node], 0
    while stack and seen < 2000:
        current = stack.pop()
        seen += 1
        if current.type == "identifier" and ctx.text(current) == name:
            return True
        if current.type not in FUNCTION_NODES:
            stack.extend(current.named_children)
    return False


@analyzer("cookie_access")
def cookie_access(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    """Severity follows where the cookie goes: into a request or an encoder is theft; a
    helper parsing out one named value (an XSRF token) is a reason to look, not to reject."""
    node = caps["hit"][0]
    parent = node.parent
    if parent is None:
        yield Hit(node)
        return
    if parent.type == "assignment_expression" and parent.child_by_field_name("left") == node:
        yield Hit(
            node, "writes cookies of the host page", Severity.MEDIUM, Category.UNDECLARED_CAPABILITY
        )
        return
    prop = parent.child_by_field_name("property") if parent.type == "member_expression" else None
    parsed = prop is not None and ctx.text(prop) in _COOKIE_PARSERS
    # One named value parsed out (an XSRF token for a same-origin header) is how helpers
    # use cookies; the whole string carried off is how stealers do.
    sink = _sink_around(ctx, node) if parsed else _flows_to_sink(ctx, node)
    if sink is not None:
        yield Hit(
            node,
            f"reads the host page's cookies and passes them to {sink}(): cookie theft",
            Severity.CRITICAL,
            Category.EXFILTRATION,
            honour_declared=False,
        )
        return
    if parsed:
        yield Hit(
            node,
            "parses the host page's cookies for a named value (no request or encoding of it"
            " in sight)",
            Severity.LOW,
        )
    else:
        yield Hit(
            node,
            "reads the host page's whole cookie string (no request or encoding of it in sight)",
            Severity.MEDIUM,
        )


@analyzer("page_listener")
def page_listener(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    node = caps["hit"][0]
    target = re.sub(r"\s", "", ctx.text(caps["target"][0]))
    if target not in PAGE_TARGETS:
        return
    event = ctx.resolver.full(caps["event"][0]) if "event" in caps else None
    name = (
        event.text.lower()
        if event
        else ctx.text(caps.get("prop", [node])[0]).lower().removeprefix("on")
    )
    if name not in INPUT_EVENTS:
        return
    handler = _handler(node)
    body = ctx.text(handler, 20000) if handler is not None else ""
    if _KEY_READ_RE.search(body) and _SINK_RE.search(body):
        # The keylogger's shape: every key or field value of the page, then a request.
        yield Hit(
            node,
            f"records {name} input from the whole page ({target}) and sends it: a keylogger",
            Severity.CRITICAL,
            Category.CREDENTIAL_ACCESS,
            honour_declared=False,
        )
        return
    yield Hit(node, f"listens to {name} events on the whole page ({target}), outside its container")


_KEY_READ_RE = compile_linear(
    r"\.(key|keyCode|which|charCode|code|value|clipboardData)\b", rule="js:page:key_read"
)


def _handler(node: Node) -> Node | None:
    """The listener function: addEventListener's second argument, or the assigned value."""
    if node.type == "assignment_expression":
        return node.child_by_field_name("right")
    args = node.child_by_field_name("arguments")
    named = args.named_children if args is not None else []
    return named[1] if len(named) > 1 else None


@analyzer("host_query")
def host_query(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    node = caps["hit"][0]
    value = ctx.resolver.full(caps["selector"][0])
    if value is None:
        return
    selector = value.text
    if _PASSWORD_RE.search(selector):
        yield Hit(
            node,
            f"looks up password fields of the host page ({selector!r})",
            Severity.HIGH,
            Category.CREDENTIAL_ACCESS,
            honour_declared=False,
        )
    elif _PAYMENT_RE.search(selector):
        yield Hit(
            node,
            f"looks up payment fields of the host page ({selector!r})",
            Severity.HIGH,
            Category.CREDENTIAL_ACCESS,
            honour_declared=False,
        )
    elif _FORM_SELECTOR_RE.search(selector):
        yield Hit(node, f"reaches into the host page's forms ({selector!r})")


def _guarded(ctx: FileContext, node: Node, prop: str) -> bool:
    """A polyfill only fills a gap: its assignment sits under a test of the same name."""
    parent = node.parent
    right = parent.child_by_field_name("right") if parent is not None else None
    if (
        right is not None
        and right.type == "binary_expression"
        and prop in ctx.text(right.child_by_field_name("left"))
    ):
        return True
    ancestor = node.parent
    for _ in range(8):
        if ancestor is None:
            return False
        if ancestor.type in ("if_statement", "ternary_expression", "binary_expression"):
            cond = ancestor.child_by_field_name("condition") or ancestor.child_by_field_name("left")
            if cond is not None and cond != node and prop in ctx.text(cond, 2000):
                return True
        ancestor = ancestor.parent
    return False


_SINK_RE = compile_linear(
    r"\bfetch\s*\(|sendBeacon|XMLHttpRequest|new\s+Image\b|WebSocket|\.src\s*=|document\.cookie",
    rule="js:page:wrapper_sink",
)
_SCOPES = frozenset(
    {"program", "function_declaration", "function_expression", "arrow_function",
     "method_definition", "generator_function_declaration", "class_body", "statement_block"}
)  # fmt: skip
_OWN_DEFINITION_TYPES = frozenset(
    {"function_expression", "arrow_function", "class", "function", "call_expression", "object"}
)


def _defines(scope: Node, name: str, ctx: FileContext) -> bool:
    """Does this scope itself declare ``name`` as a function, class or its own value?"""
    body = scope.child_by_field_name("body") if scope.type != "program" else scope
    for stmt in body.named_children if body is not None else []:
        if stmt.type in ("function_declaration", "class_declaration"):
            if ctx.text(stmt.child_by_field_name("name")) == name:
                return True
        elif stmt.type in ("variable_declaration", "lexical_declaration"):
            for decl in stmt.named_children:
                value = decl.child_by_field_name("value")
                if (
                    ctx.text(decl.child_by_field_name("name")) == name
                    and value is not None
                    # `var Storage = window.Storage` is still the browser's.
                    and value.type in _OWN_DEFINITION_TYPES
                ):
                    return True
    return False


def _local_name(ctx: FileContext, node: Node, name: str) -> bool:
    """True when ``name`` at ``node`` resolves to the bundle's own binding, not a global."""
    scope = node.parent
    for _ in range(200):
        if scope is None:
            return False
        if scope.type in _SCOPES and _defines(scope, name, ctx):
            return True
        scope = scope.parent
    return False


def _replacement(caps: Captures) -> Node | None:
    if "prop" in caps:  # Object.defineProperty(target, prop, descriptor)
        args = caps["prop"][0].parent
        named = args.named_children if args is not None else []
        return named[2] if len(named) > 2 else None
    return caps["hit"][0].child_by_field_name("right")


@analyzer("override")
def override(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    """A replaced page primitive: intent is in what the replacement does with what it sees."""
    node = caps["hit"][0]
    target = re.sub(r"\s", "", ctx.text(caps["target"][0], 300))
    if "prop" in caps:  # Object.defineProperty(target, 'prop', ...)
        prop_value = ctx.resolver.full(caps["prop"][0])
        if prop_value is None:
            return
        target = f"{target}.{prop_value.text}"
    elif target == "document.cookie":
        return  # setting a cookie is the cookie rule's business, not a replaced accessor
    if not _OVERRIDE_RE.match(target):
        return
    root = target.removeprefix("window.").removeprefix("self.").split(".", 1)[0]
    if _local_name(ctx, node, root):
        return  # the bundle's own class or function of that name (echarts' Storage)
    prop = target.rsplit(".", 1)[-1]
    if _guarded(ctx, caps["target"][0], prop):
        yield Hit(node, f"polyfills {target} where it is missing", Severity.INFO)
        return
    replacement = _replacement(caps)
    body = ctx.text(replacement, 20000) if replacement is not None else ""
    if _SINK_RE.search(body):
        yield Hit(
            node,
            f"replaces {target} for the whole page with code that sends data or reads cookies",
            honour_declared=False,
        )
    else:
        # Polyfills, async-context and error-monitoring libraries wrap primitives and
        # forward: a reason to look at run time, where sending would show.
        yield Hit(
            node,
            f"wraps {target} for the whole page (the replacement makes no request itself)",
            Severity.LOW,
        )


@analyzer("page_write")
def page_write(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    node = caps["hit"][0]
    where = ctx.text(caps["target"][0])
    method = ctx.text(caps["method"][0])
    if where.endswith("head") and method in ("appendChild", "append", "insertBefore", "prepend"):
        yield Hit(node, "adds elements to the page head (usually styles)", Severity.LOW)
    else:
        yield Hit(node, f"changes the page outside its container ({where}.{method})")


@analyzer("clipboard")
def clipboard(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    node = caps["hit"][0]
    method = ctx.text(caps["method"][0]).strip("'\"")
    if method in ("readText", "read", "paste"):
        yield Hit(node, "reads the user's clipboard", Severity.HIGH, Category.CREDENTIAL_ACCESS)
    elif method in ("writeText", "write", "copy", "cut"):
        yield Hit(node, "writes to the user's clipboard")


@analyzer("workers")
def workers(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    node = caps["hit"][0]
    kind = ctx.text(caps["kind"][0])
    if kind == "register":
        yield Hit(
            node,
            "registers a service worker, which outlives the page and sees its traffic",
            Severity.HIGH,
        )
    else:
        yield Hit(node, f"starts a {kind}")
