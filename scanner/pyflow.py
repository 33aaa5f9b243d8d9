"""Data flow in a Python backend: secrets of the host (environment, credential files)
reaching the network, however the modules and functions are named.

Bandit matches names; an exfiltrating backend writes ``getattr(__import__('o'+'s'),
'environ')`` and sends it with ``urllib``. Here names are resolved first (imports, aliases,
``__import__``/``importlib.import_module``/``getattr`` with folded string arguments,
``''.join``, ``bytes.fromhex``, ``base64.b64decode``, ``chr``), then values are followed
through assignments within each function (and the module), and a secret that reaches a
request, a socket or an encoder on its way there is a finding.
"""

from __future__ import annotations

import ast
import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass, field

from scanner.findings import Category, Finding, Severity, truncate

STAGE = "python-static"
MAX_SOURCE = 2_000_000
MAX_FOLD = 10_000
SOURCES = ("os.environ", "os.environb", "posix.environ", "nt.environ")
_SECRET_FILE_HINTS = (".ssh", ".aws", "id_rsa", "passwd", "shadow", ".netrc", ".env", "token")
# The last name of a call that puts data on the wire (or in a request object).
SINKS = frozenset(
    {"urlopen", "Request", "post", "put", "patch", "request", "send", "sendall", "sendto",
     "create_connection", "sendmail", "get"}
)  # fmt: skip
_NETWORK_MODULES = ("urllib", "requests", "http", "socket", "httpx", "aiohttp", "smtplib")


@dataclass
class _Scope:
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> qualified name
    strings: dict[str, str] = field(default_factory=dict)  # name -> folded constant
    tainted: set[str] = field(default_factory=set)
    reflective: bool = False


def secret_flows(path: str, source: str) -> list[Finding]:
    """Findings for host secrets that flow to the network in one Python file."""
    if len(source) > MAX_SOURCE:
        return []
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return []  # bandit reports the file it cannot parse
    module = _Scope()
    _imports(tree, module)
    out: list[Finding] = []
    for body in _bodies(tree):
        scope = _Scope(dict(module.aliases), dict(module.strings), set(module.tainted))
        out.extend(_flows(path, body, scope))
        if isinstance(body, ast.Module):
            module.strings.update(scope.strings)
            module.tainted |= scope.tainted
    seen: set[int | None] = set()
    unique = []
    for f in out:
        if f.line not in seen:
            seen.add(f.line)
            unique.append(f)
    return unique


def _bodies(tree: ast.Module) -> Iterator[ast.AST]:
    yield tree
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield node


def _imports(tree: ast.Module, scope: _Scope) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                scope.aliases[a.asname or a.name.split(".")[0]] = (
                    a.name if a.asname else a.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                scope.aliases[a.asname or a.name] = f"{node.module}.{a.name}"


def _own_nodes(body: ast.AST) -> Iterator[ast.AST]:
    """The nodes of one function (or the module) without those of nested functions."""
    stack = list(ast.iter_child_nodes(body))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))


def _flows(path: str, body: ast.AST, scope: _Scope) -> list[Finding]:
    nodes = sorted(
        (n for n in _own_nodes(body) if hasattr(n, "lineno")),
        key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)),
    )
    # Two passes: a value assigned after its first use in a loop still flows.
    for _ in range(2):
        for node in nodes:
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
                _assign(node, scope)
    # One finding per function: building the request and sending it are one flow.
    for node in nodes:
        if isinstance(node, ast.Call) and _sink(node, scope) and _carries_secret(node, scope):
            return [_finding(path, node, scope)]
    return []


def _targets(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Assign):
        raw = node.targets
    elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
        raw = [node.target]
    else:
        raw = []
    names = []
    for t in raw:
        for n in ast.walk(t):
            if isinstance(n, ast.Name):
                names.append(n.id)
    return names


def _assign(node: ast.AST, scope: _Scope) -> None:
    value = getattr(node, "value", None)
    if value is None:
        return
    names = _targets(node)
    text = _fold(value, scope)
    qual = _qual(value, scope)
    for name in names:
        if text is not None and not isinstance(node, ast.AugAssign):
            scope.strings[name] = text
        if qual is not None and not isinstance(node, ast.AugAssign):
            scope.aliases[name] = qual
        if _carries_secret(value, scope):
            scope.tainted.add(name)


def _carries_secret(node: ast.AST, scope: _Scope) -> bool:
    """The whole environment, a credential file, or a name holding one of them.

    One named variable (``os.environ['API_KEY']`` sent to its API) is how a backend uses
    its own configuration; dumping every variable is how a stealer collects the host's.
    """
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Name) and n.id in scope.tainted:
            return True
        if isinstance(n, ast.Subscript) and _is_environ(_qual(n.value, scope)):
            stack.append(n.slice)
            continue  # one variable by name
        if isinstance(n, ast.Call):
            fn = _qual(n.func, scope) or ""
            if fn in ("os.getenv", "os.environ.get", "os.environb.get"):
                continue
            if _reads_secret_file(n, scope):
                return True
        if isinstance(n, ast.Name | ast.Attribute | ast.Call) and _is_environ(_qual(n, scope)):
            return True
        stack.extend(ast.iter_child_nodes(n))
    return False


def _is_environ(qual: str | None) -> bool:
    if qual is None:
        return False
    return qual in SOURCES or any(
        qual == f"{s}.{m}" for s in SOURCES for m in ("copy", "items", "values", "keys")
    )


def _reads_secret_file(call: ast.Call, scope: _Scope) -> bool:
    if _qual(call.func, scope) not in ("open", "io.open", "builtins.open") or not call.args:
        return False
    name = _fold(call.args[0], scope) or ""
    return any(hint in name for hint in _SECRET_FILE_HINTS)


def _sink(call: ast.Call, scope: _Scope) -> bool:
    qual = _qual(call.func, scope) or ""
    last = qual.rsplit(".", 1)[-1] if qual else getattr(call.func, "attr", "")
    if last not in SINKS:
        return False
    # `get` and `request` only on network modules: dict.get is not a request.
    if last in ("get", "request"):
        return qual.startswith(_NETWORK_MODULES)
    return True


def _qual(node: ast.AST, scope: _Scope) -> str | None:
    """The dotted name an expression stands for, through aliases and reflection."""
    if isinstance(node, ast.Name):
        return scope.aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _qual(node.value, scope)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, ast.Call):
        fn = _qual(node.func, scope)
        if fn in ("__import__", "importlib.import_module", "builtins.__import__") and node.args:
            scope.reflective = True
            return _fold(node.args[0], scope)
        if fn in ("getattr", "builtins.getattr") and len(node.args) >= 2:
            base = _qual(node.args[0], scope)
            attr = _fold(node.args[1], scope)
            scope.reflective = True
            return f"{base}.{attr}" if base and attr else None
        if _is_environ(fn):
            return "os.environ"  # os.environ.copy(), dict-like views: the whole of it
        if isinstance(node.func, ast.Attribute):
            return _qual(node.func, scope)
    return None


def _fold(node: ast.AST, scope: _Scope, depth: int = 0) -> str | None:
    """The constant string an expression builds, within small bounds."""
    if depth > 12:
        return None
    if isinstance(node, ast.Constant):
        v = node.value
        return v if isinstance(v, str) else v.decode("latin-1") if isinstance(v, bytes) else None
    if isinstance(node, ast.Name):
        return scope.strings.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _fold(node.left, scope, depth + 1), _fold(node.right, scope, depth + 1)
        return (
            left + right
            if left is not None and right is not None and len(left) + len(right) < MAX_FOLD
            else None
        )
    if isinstance(node, ast.JoinedStr):
        parts = [
            _fold(v.value if isinstance(v, ast.FormattedValue) else v, scope, depth + 1)
            for v in node.values
        ]
        return (
            "".join(p for p in parts if p is not None)
            if all(p is not None for p in parts)
            else None
        )
    if isinstance(node, ast.Call):
        return _fold_call(node, scope, depth)
    return None


def _fold_call(node: ast.Call, scope: _Scope, depth: int) -> str | None:
    fn = node.func
    args = node.args
    if isinstance(fn, ast.Name) and fn.id == "chr" and len(args) == 1:
        if isinstance(args[0], ast.Constant) and isinstance(args[0].value, int):
            return chr(args[0].value) if 0 <= args[0].value < 0x110000 else None
        return None
    if not isinstance(fn, ast.Attribute):
        return None
    if fn.attr == "join" and len(args) == 1 and isinstance(args[0], ast.List | ast.Tuple):
        sep = _fold(fn.value, scope, depth + 1)
        parts = [_fold(e, scope, depth + 1) for e in args[0].elts]
        if sep is None or any(p is None for p in parts):
            return None
        return sep.join(p for p in parts if p is not None)
    if fn.attr == "decode":
        return _fold(fn.value, scope, depth + 1)
    if fn.attr in ("fromhex", "b64decode", "urlsafe_b64decode") and len(args) == 1:
        raw = _fold(args[0], scope, depth + 1)
        if raw is None:
            return None
        try:
            data = bytes.fromhex(raw) if fn.attr == "fromhex" else base64.b64decode(raw + "==")
        except (ValueError, binascii.Error):
            return None
        return data.decode("latin-1")
    if fn.attr in ("lower", "upper", "strip") and not args:
        inner = _fold(fn.value, scope, depth + 1)
        return getattr(inner, fn.attr)() if inner is not None else None
    if fn.attr == "replace" and len(args) == 2:
        base, old, new = (_fold(x, scope, depth + 1) for x in (fn.value, *args))
        if base is None or old is None or new is None:
            return None
        out = base.replace(old, new)
        return out if len(out) < MAX_FOLD else None
    return None


def _finding(path: str, call: ast.Call, scope: _Scope) -> Finding:
    how = " reached through reflection (getattr/__import__)" if scope.reflective else ""
    return Finding(
        stage=STAGE,
        rule_id="python-secret-exfiltration",
        category=Category.EXFILTRATION,
        severity=Severity.CRITICAL,
        message=f"sends the host's environment or credential files over the network{how}",
        path=path,
        line=call.lineno,
        evidence=truncate(ast.unparse(call)[:300]),
    )
