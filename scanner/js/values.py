"""Constant folding of JavaScript expressions: what string does this node evaluate to?

Only pure, side-effect-free forms are folded (literals, ``+``, templates, ``join``,
``split``, ``reverse``, ``concat``, ``String.fromCharCode``, ``atob``, URI decoding,
and identifiers bound once to such a value). A partly dynamic string keeps its known
prefix, which is usually enough to learn the origin a request goes to.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from urllib.parse import unquote

import re2
from tree_sitter import Node, Query, QueryCursor

from scanner.js.parser import compile_query
from scanner.regex import compile_linear

MAX_DEPTH = 24
# Every folded string, final or intermediate, stays under this many characters.
MAX_STRING = 1_000_000
# Work per file: expressions evaluated (each once: results are cached per node), and
# characters of strings built. Real bundles fold a few thousand expressions; hostile
# nesting (each level joining the one below twelve times) grows exponentially without
# the cache and the caps. Past a budget folding stops and the file gets a coverage note.
MAX_STEPS = 200_000
MAX_FOLDED_CHARS = 16_000_000
# Longer array literals are not folded at all (an 18 MB one took minutes and gigabytes).
MAX_ARRAY_ITEMS = 65_536
# Nested applications of a file's own functions (each one charged to the step budget).
MAX_APPLY_DEPTH = 4
_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|u[0-9a-fA-F]{4}|\r\n|[\s\S])")
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}
DECODERS = frozenset({"atob", "unescape", "decodeURIComponent", "decodeURI"})


@dataclass(frozen=True)
class Value:
    """A folded string: ``complete`` is False when only a prefix is known."""

    text: str
    complete: bool = True
    decoded: bool = False  # passed through a decoder (atob, fromCharCode, escapes...)
    # Assembled at run time (pieces joined, a marker replaced away, sliced, reversed):
    # nobody writes a plain API name that way unless it is meant not to be read.
    built: bool = False


def unescape_js(body: str) -> str:
    def repl(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc[0] == "x":
            return chr(int(esc[1:], 16))
        if esc.startswith("u{"):
            return chr(min(int(esc[2:-1], 16), 0x10FFFF))
        if esc[0] == "u" and len(esc) == 5:
            return chr(int(esc[1:], 16))
        if esc in ("\n", "\r\n", "\r", "\u2028", "\u2029"):
            return ""
        return _SIMPLE_ESCAPES.get(esc, esc)

    return _ESCAPE_RE.sub(repl, body)


def string_literal(node: Node) -> str:
    text = node.text.decode("utf-8", "replace") if node.text else ""
    return unescape_js(text[1:-1])


Lookup = Callable[[str], Node | None]
Folded = Value | list[Value] | int | None


class FoldBudget:
    """What folding may still spend on one file, and why it stopped if it did."""

    def __init__(self, steps: int = MAX_STEPS, chars: int = MAX_FOLDED_CHARS) -> None:
        self.steps = steps
        self.chars = chars
        self.stopped: str | None = None  # the first limit hit, for the coverage note

    def step(self) -> bool:
        self.steps -= 1
        return self._ok(self.steps, f"more than {MAX_STEPS} expressions to fold")

    def spend(self, chars: int) -> bool:
        """Charge a string about to be built; False (and nothing built) past the budget."""
        if chars > MAX_STRING:
            self.stopped = self.stopped or f"a string of over {MAX_STRING} characters"
            return False
        self.chars -= chars
        return self._ok(self.chars, f"more than {MAX_FOLDED_CHARS} characters of strings")

    def refuse(self, why: str) -> None:
        self.stopped = self.stopped or why

    def _ok(self, left: int, why: str) -> bool:
        if left >= 0:
            return True
        self.stopped = self.stopped or why
        return False


class Resolver:
    """Folds expressions of one parsed file; identifiers resolve through single bindings.

    Each node is folded once (a name bound to a join is used many times) and within a
    budget (``FoldBudget``): past it the answer is "unknown", never a hang.
    """

    def __init__(self, lookup: Lookup | None = None, budget: FoldBudget | None = None) -> None:
        self.lookup: Lookup = lookup or (lambda name: None)
        self.budget = budget or FoldBudget()
        # Decoder functions (``function d(a){return a.join('').split('').reverse()...}``)
        # are applied to constant arguments: parameters bound here, innermost last.
        self._env: list[dict[str, Folded]] = []
        self._functions = getattr(lookup, "function", None)
        # Straight-line code reuses one name for several strings (``x = 'pu'; x = x +
        # 'sh'``): where the single binding is unknown, the assignment just before the use.
        self._nearest = getattr(lookup, "nearest", None)
        # (start, end, type) -> (result, depth it was folded at)
        self._cache: dict[tuple[int, int, str], tuple[Folded, int]] = {}

    def declares_function(self, name: str) -> bool:
        """Whether the file declares ``function name(...)`` (any body)."""
        declares = getattr(self.lookup, "declares_function", None)
        return bool(declares(name)) if declares is not None else False

    def value(self, node: Node | None) -> Value | None:
        """The string (or known prefix) ``node`` evaluates to, or None."""
        if node is None:
            return None
        out = self._eval(node, 0)
        if isinstance(out, Value):
            return out
        return None

    def full(self, node: Node | None) -> Value | None:
        v = self.value(node)
        return v if v is not None and v.complete else None

    # The evaluator returns Value, a list of Values (arrays), an int, or None.
    def _eval(self, node: Node, depth: int) -> Folded:
        if depth > MAX_DEPTH:
            return None
        if self._env:  # inside an applied function the same node means other things
            return self._fold(node, depth) if self.budget.step() else None
        key = (node.start_byte, node.end_byte, node.type)
        cached = self._cache.get(key)
        # A result cut short by depth may fold further from higher up; any other is final.
        if cached is not None and (cached[0] is not None or cached[1] <= depth):
            return cached[0]
        if not self.budget.step():
            return None
        out = self._fold(node, depth)
        self._cache[key] = (out, depth)
        return out

    def _fold(self, node: Node, depth: int) -> Folded:
        kind = node.type
        if kind == "string":
            if not self.budget.spend(node.end_byte - node.start_byte):
                return None
            raw = node.text.decode("utf-8", "replace") if node.text else ""
            text = unescape_js(raw[1:-1])
            return Value(text, True, "\\x" in raw or "\\u" in raw)
        if kind == "number":
            return _number(node)
        if kind == "template_string":
            return self._template(node, depth)
        if kind == "parenthesized_expression":
            inner = node.named_children[-1] if node.named_children else None
            return self._eval(inner, depth + 1) if inner else None
        if kind == "binary_expression":
            return self._binary(node, depth)
        if kind == "identifier":
            name = _text(node)
            if self._env and name in self._env[-1]:
                return self._env[-1][name]
            bound = self.lookup(name)
            if bound is None and self._nearest is not None and not self._env:
                bound = self._nearest(name, node)
            return self._eval(bound, depth + 1) if bound is not None else None
        if kind == "subscript_expression":
            return self._subscript(node, depth)
        if kind == "array":
            return self._array(node, depth)
        if kind == "call_expression":
            return self._call(node, depth)
        return None

    def _template(self, node: Node, depth: int) -> Value | None:
        parts: list[str] = []
        decoded = built = False
        size = 0
        for child in node.named_children:
            size += child.end_byte - child.start_byte
            if not self.budget.spend(child.end_byte - child.start_byte) or size > MAX_STRING:
                self.budget.refuse(f"a string of over {MAX_STRING} characters")
                return None
            if child.type == "string_fragment":
                parts.append(_text(child))
            elif child.type == "escape_sequence":
                parts.append(unescape_js(_text(child)))
                decoded = True
            elif child.type == "template_substitution":
                inner = child.named_children[0] if child.named_children else None
                v = self._eval(inner, depth + 1) if inner else None
                if not isinstance(v, Value):
                    return Value("".join(parts), False, decoded)
                size += len(v.text)
                if not self.budget.spend(len(v.text)) or size > MAX_STRING:
                    self.budget.refuse(f"a string of over {MAX_STRING} characters")
                    return None
                parts.append(v.text)
                decoded |= v.decoded
                built = True
                if not v.complete:
                    return Value("".join(parts), False, decoded)
        return Value("".join(parts), True, decoded, built)

    def _binary(self, node: Node, depth: int) -> Value | int | None:
        op = node.child_by_field_name("operator")
        if op is None or op.type != "+":
            return None
        left_node = node.child_by_field_name("left")
        right_node = node.child_by_field_name("right")
        left = self._eval(left_node, depth + 1) if left_node else None
        if isinstance(left, int):
            right_num = self._eval(right_node, depth + 1) if right_node else None
            return left + right_num if isinstance(right_num, int) else None
        if not isinstance(left, Value):
            return None
        if not left.complete:
            return left
        right = self._eval(right_node, depth + 1) if right_node else None
        if isinstance(right, int):
            digits = _digits(right)
            if digits is None:
                return None
            right = Value(digits)
        if not isinstance(right, Value):
            return Value(left.text, False, left.decoded)
        if not self.budget.spend(len(left.text) + len(right.text)):
            return None
        return Value(
            left.text + right.text, right.complete, left.decoded or right.decoded, built=True
        )

    def _array(self, node: Node, depth: int) -> list[Value] | None:
        if node.named_child_count > MAX_ARRAY_ITEMS:
            self.budget.refuse(f"an array literal of over {MAX_ARRAY_ITEMS} items")
            return None
        items: list[Value] = []
        for child in node.named_children:
            v = self._eval(child, depth + 1)
            if isinstance(v, int):
                digits = _digits(v)
                v = Value(digits) if digits is not None else None
            if not isinstance(v, Value) or not v.complete:
                return None
            items.append(v)
        return items

    def _subscript(self, node: Node, depth: int) -> Value | None:
        """``parts[2]`` of a known array, ``text[4]`` of a known string."""
        obj_node = node.child_by_field_name("object")
        index_node = node.child_by_field_name("index")
        if obj_node is None or index_node is None:
            return None
        index = self._eval(index_node, depth + 1)
        if not isinstance(index, int) or index < 0:
            return None
        obj = self._eval(obj_node, depth + 1)
        if isinstance(obj, list):
            return obj[index] if index < len(obj) else None
        if isinstance(obj, Value) and obj.complete and index < len(obj.text):
            return Value(obj.text[index], True, obj.decoded, built=True)
        return None

    def _call(self, node: Node, depth: int) -> Folded:
        fn = node.child_by_field_name("function")
        args_node = node.child_by_field_name("arguments")
        if fn is None or args_node is None:
            return None
        args = [a for a in args_node.named_children if a.type != "comment"]
        name = callee_name(fn)
        if name in DECODERS and len(args) == 1:
            arg = self._eval(args[0], depth + 1)
            if not isinstance(arg, Value) or not arg.complete:
                return None
            decoded = _decode(name, arg.text)
            if decoded is None or not self.budget.spend(len(decoded)):
                return None
            return Value(decoded, True, True, built=True)
        if name == "String.fromCharCode":
            return self._from_char_code(args, depth)
        if fn.type == "identifier":
            return self._apply(name, args, depth)
        obj_node = fn.child_by_field_name("object")
        if fn.type == "member_expression":
            method = _text(fn.child_by_field_name("property"))
        elif fn.type == "subscript_expression":
            # ``s['replace'](...)``: the method named by a string, as obfuscators write it.
            index = fn.child_by_field_name("index")
            key = self._eval(index, depth + 1) if index is not None else None
            if not isinstance(key, Value) or not key.complete:
                return None
            method = key.text
        else:
            return None
        obj = self._eval(obj_node, depth + 1) if obj_node else None
        if method in ("replace", "replaceAll") and len(args) == 2 and args[0].type == "regex":
            return _regex_replace(obj, args[0], self._eval(args[1], depth + 1), self.budget)
        return _method(obj, method, [self._eval(a, depth + 1) for a in args], self.budget)

    def _apply(self, name: str, args: list[Node], depth: int) -> Folded:
        """A file's own one-line function applied to constants (how decoders are written)."""
        if self._functions is None or len(self._env) >= MAX_APPLY_DEPTH:
            return None
        found = self._functions(name)
        if found is None:
            return None
        params, body = found
        values = [self._eval(a, depth + 1) for a in args]
        if len(values) < len(params) or any(v is None for v in values[: len(params)]):
            return None
        self._env.append(dict(zip(params, values, strict=False)))
        try:
            out = self._eval(body, depth + 1)
        finally:
            self._env.pop()
        if isinstance(out, Value):
            return Value(out.text, out.complete, out.decoded, built=True)
        return out

    def _from_char_code(self, args: list[Node], depth: int) -> Value | None:
        codes: list[int] = []
        for a in args:
            target = a.named_children[0] if a.type == "spread_element" and a.named_children else a
            v = self._eval(target, depth + 1)
            if isinstance(v, int):
                codes.append(v)
            elif isinstance(v, list):
                if len(codes) + len(v) > MAX_STRING:
                    self.budget.refuse(f"a string of over {MAX_STRING} characters")
                    return None
                for item in v:
                    if not item.text.isdigit():
                        return None
                    codes.append(int(item.text))
            else:
                return None
        if not self.budget.spend(len(codes)):
            return None
        try:
            return Value("".join(chr(c) for c in codes), True, True, built=True)
        except (ValueError, OverflowError):
            return None


def _method(obj: Folded, method: str, args: list[Folded], budget: FoldBudget) -> Folded:
    """String and array methods, each result charged to the budget before it is built."""
    if isinstance(obj, list):
        if method == "join":
            sep = args[0] if args else Value(",")
            if not isinstance(sep, Value):
                return None
            size = sum(len(v.text) for v in obj) + len(sep.text) * max(0, len(obj) - 1)
            if not budget.spend(size):
                return None
            joined = sep.text.join(v.text for v in obj)
            return Value(joined, True, any(v.decoded for v in obj), built=len(obj) > 1)
        if method == "reverse" and not args:
            return list(reversed(obj))
        return None
    if not isinstance(obj, Value) or not obj.complete:
        return None
    if method == "split" and len(args) == 1 and isinstance(args[0], Value):
        delimiter = args[0].text
        count = len(obj.text) if delimiter == "" else obj.text.count(delimiter) + 1
        if count > MAX_ARRAY_ITEMS:
            budget.refuse(f"a split into over {MAX_ARRAY_ITEMS} parts")
            return None
        if not budget.spend(len(obj.text)):
            return None
        parts = list(obj.text) if delimiter == "" else obj.text.split(delimiter)
        return [Value(p, True, obj.decoded) for p in parts]
    if method == "concat" and all(isinstance(a, Value) and a.complete for a in args):
        tail = "".join(a.text for a in args if isinstance(a, Value))
        if not budget.spend(len(obj.text) + len(tail)):
            return None
        return Value(obj.text + tail, True, obj.decoded, built=bool(tail))
    ints = [a for a in args if isinstance(a, int)]
    if method in ("substr", "substring", "slice", "charAt") and len(ints) == len(args):
        return _slice(obj, method, ints)
    if method == "replace" and len(args) == 2 and all(isinstance(a, Value) for a in args):
        old, new = (a.text if isinstance(a, Value) else "" for a in args)
        if "$" in new or not budget.spend(len(obj.text) + len(new)):
            return None
        return Value(obj.text.replace(old, new, 1), True, obj.decoded, built=True)
    if method in ("toLowerCase", "toUpperCase", "trim") and not args:
        if not budget.spend(len(obj.text)):
            return None
        text = {
            "toLowerCase": obj.text.lower,
            "toUpperCase": obj.text.upper,
            "trim": obj.text.strip,
        }[method]()
        return Value(text, True, obj.decoded, obj.built)
    return None


def _slice(obj: Value, method: str, args: list[int]) -> Value | None:
    """JavaScript's substring family on a known string (no negative-index subtleties)."""
    text = obj.text
    if not args or any(a < 0 for a in args) or len(args) > 2:
        return None
    start = args[0]
    if method == "charAt":
        return Value(text[start : start + 1], True, obj.decoded, built=True)
    if method == "substr":
        end = start + args[1] if len(args) == 2 else len(text)
    else:
        end = args[1] if len(args) == 2 else len(text)
        if method == "substring" and end < start:
            start, end = end, start
    return Value(text[start:end], True, obj.decoded, built=True)


def _regex_replace(obj: Folded, regex: Node, repl: Folded, budget: FoldBudget) -> Value | None:
    """``'aXbXc'.replace(/X/g, '')``: how marker-stuffed names are cleaned up at run time.

    The bundle's pattern runs on RE2 (linear time); one RE2 cannot take is not folded.
    """
    if not isinstance(obj, Value) or not obj.complete or not isinstance(repl, Value):
        return None
    if "$" in repl.text or not budget.spend(len(obj.text) + len(repl.text)):
        return None
    pattern = _text(regex.child_by_field_name("pattern"))
    flags = _text(regex.child_by_field_name("flags"))
    if set(flags) - set("gimsuy"):
        return None
    try:
        options = re2.Options()
        options.case_sensitive = "i" not in flags
        options.dot_nl = "s" in flags
        compiled = re2.compile(pattern, options)
        text = compiled.sub(repl.text, obj.text, count=0 if "g" in flags else 1)
    except Exception:  # any pattern RE2 refuses (or that breaks it) is simply not folded
        return None
    if len(text) > MAX_STRING:
        return None
    return Value(text, True, obj.decoded, built=True)


def _decode(name: str, text: str) -> str | None:
    if name == "atob":
        try:
            raw = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
        except (binascii.Error, ValueError):
            return None
        return raw.decode("latin-1")
    return unquote(text)


def _digits(n: int) -> str | None:
    """``str(n)``, or None past Python's digit limit for int-to-string conversion."""
    try:
        return str(n)
    except ValueError:
        return None


def _number(node: Node) -> int | None:
    text = _text(node).replace("_", "")
    for base in (0, 10):  # base 10 catches legacy zero-padded literals such as 010
        try:
            return int(text, base)
        except ValueError:
            continue
    return None


def _text(node: Node | None) -> str:
    if node is None or node.text is None:
        return ""
    return node.text.decode("utf-8", "replace")


def callee_name(fn: Node) -> str:
    """``atob``, ``window.atob`` -> ``atob``; ``String.fromCharCode`` kept whole."""
    if fn.type == "identifier":
        return _text(fn)
    if fn.type == "member_expression":
        obj = fn.child_by_field_name("object")
        prop = _text(fn.child_by_field_name("property"))
        obj_text = _text(obj)
        if obj_text in ("window", "self", "globalThis"):
            return prop
        return f"{obj_text}.{prop}"
    return ""


@lru_cache(maxsize=1)
def _binding_query() -> Query:
    return compile_query(
        """
        (variable_declarator name: (identifier) @name value: (_) @value)
        (assignment_expression left: (identifier) @name right: (_) @value)
        """
    )


# Every `name =` of a file in one pass: not `obj.name =`, `name ==` or `name =>`. Linear:
# a start inside a word is refused by the one-byte lookbehind, so each run of identifier
# bytes is tried once, and the whitespace after it once.
_ASSIGNED_NAME_RE = compile_linear(
    rb"(?<![\w$.\x80-\xff])([\w$\x80-\xff]+)\s*=(?![=>])",
    rule="js:values:assigned_name",
    backtracking_safe_because="each identifier run is tried from its first byte only",
)

_DECLARED_FUNCTION_RE = compile_linear(
    rb"\bfunction\s+([A-Za-z_$][\w$]*)\s*\(", rule="js:values:declared_function"
)


_STATEMENT_LISTS = frozenset({"program", "statement_block"})
# Nodes that open a function scope (what a name means inside changes there).
FUNCTION_NODES = frozenset(
    {"function_declaration", "function_expression", "arrow_function", "method_definition"}
)
# How far back (in bytes of code between) a reassigned name is followed.
_NEAREST_GAP_BYTES = 4096
# Levels followed down from the root to a use (folding gives up on deeper code), and
# lookups of reassigned names per file.
MAX_PATH = 96
MAX_NEAREST_LOOKUPS = 2000
# How far past its last assignment a use may be for the assignment to be followed.
_NEAREST_REACH_BYTES = 64 * 1024
_PLAIN_STATEMENTS = frozenset(
    {"expression_statement", "variable_declaration", "lexical_declaration", "return_statement"}
)


def path_to(root: Node, node: Node, limit: int = MAX_PATH) -> list[Node] | None:
    """The nodes from ``root`` down to ``node`` (both included), found from the top: in
    tree-sitter each step up from a node walks down from the root again. None past
    ``limit`` levels."""
    cursor = root.walk()
    path = [root]
    target = (node.start_byte, node.end_byte, node.type)
    while len(path) <= limit:
        current = path[-1]
        if (current.start_byte, current.end_byte, current.type) == target:
            return path
        if cursor.goto_first_child_for_byte(node.start_byte) is None:
            return None
        # Siblings may start at the byte too (an empty node): take the one holding node.
        while _ends_before(cursor.node, node) and cursor.goto_next_sibling():
            pass
        child = cursor.node
        if child is None:
            return None
        path.append(child)
    return None


def _ends_before(candidate: Node | None, node: Node) -> bool:
    return candidate is not None and candidate.end_byte < node.end_byte


def _plain_statement(root: Node, use: Node) -> tuple[Node, Node] | None:
    """(statement, block) for the statement holding ``use`` when it is a plain one
    directly in a block, with no function boundary between it and the use."""
    path = path_to(root, use)
    if path is None:
        return None
    found: tuple[Node, Node] | None = None
    for parent, node in pairwise(path):
        if node.type in FUNCTION_NODES:
            found = None
        elif node.type.endswith(("statement", "declaration")):
            plain = node.type in _PLAIN_STATEMENTS and parent.type in _STATEMENT_LISTS
            found = (node, parent) if plain else None
    return found


def _assigned_by(statement: Node, name: str) -> Node | None:
    """The value ``statement`` gives ``name`` when it is exactly ``name = v`` or a
    declaration of it."""
    if statement.type == "expression_statement" and statement.named_children:
        expression = statement.named_children[0]
        left = expression.child_by_field_name("left")
        if (
            expression.type == "assignment_expression"
            and left is not None
            and left.type == "identifier"
            and _text(left) == name
        ):
            return expression.child_by_field_name("right")
        return None
    value = None
    if statement.type in ("variable_declaration", "lexical_declaration"):
        for declarator in statement.named_children:  # the last one of the name wins
            if _text(declarator.child_by_field_name("name")) == name:
                value = declarator.child_by_field_name("value")
    return value


class SourceBindings:
    """Finds the one value a name is bound to in a file, looking only where it is assigned.

    The places where names are assigned are indexed in one pass over the source on the
    first lookup, so a file with many names costs linear time, not names x size.
    """

    MAX_ASSIGNMENTS = 64

    def __init__(self, source: bytes, root: Node) -> None:
        self.source = source
        self.root = root
        self.cache: dict[str, Node | None] = {}
        self._sites: dict[bytes, list[int]] | None = None
        self._declared: dict[bytes, list[int]] | None = None
        self._function_cache: dict[str, tuple[list[str], Node] | None] = {}
        self._nearest_cache: dict[tuple[str, int], Node | None] = {}
        self._nearest_left = MAX_NEAREST_LOOKUPS
        self._declares_cache: dict[str, bool] = {}

    def __call__(self, name: str) -> Node | None:
        if name not in self.cache:
            self.cache[name] = self._find(name)
        return self.cache[name]

    def function(self, name: str) -> tuple[list[str], Node] | None:
        """``function name(a, b) { return <expr>; }`` declared once: (params, expr)."""
        if name not in self._function_cache:
            self._function_cache[name] = self._find_function(name)
        return self._function_cache[name]

    def nearest(self, name: str, use: Node) -> Node | None:
        """The value assigned to ``name`` by its last assignment before the statement that
        uses it: only when the use sits in a plain statement of a block (not a loop or
        condition header), the assignment is a statement of the same block, and nothing
        in between mentions the name (a call there might have changed it). Inside a
        function that does not assign the name itself, nothing is known.
        """
        encoded = name.encode()
        starts = self._index().get(encoded, [])
        if len(starts) < 2 or len(starts) > self.MAX_ASSIGNMENTS:
            return None  # bound once (the plain lookup's case), never, or too often
        last = max((s for s in starts if s < use.start_byte), default=None)
        if last is None or use.start_byte - last > _NEAREST_REACH_BYTES:
            return None  # nothing close enough before it: no need to find its statement
        if self._nearest_left <= 0:
            return None  # this file has used up its lookups
        self._nearest_left -= 1
        found = _plain_statement(self.root, use)
        if found is None:
            return None
        statement, block = found
        key = (name, statement.start_byte)
        if key not in self._nearest_cache:
            self._nearest_cache[key] = self._nearest(encoded, starts, statement, block)
        return self._nearest_cache[key]

    def _nearest(
        self, encoded: bytes, starts: list[int], statement: Node, block: Node
    ) -> Node | None:
        before = [s for s in starts if block.start_byte <= s < statement.start_byte]
        if not before:
            return None
        cursor = block.walk()
        if cursor.goto_first_child_for_byte(max(before)) is None:
            return None
        site = cursor.node
        if site is None or site.end_byte > statement.start_byte:
            return None
        if statement.start_byte - site.end_byte > _NEAREST_GAP_BYTES:
            return None
        if self.source.find(encoded, site.end_byte, statement.start_byte) != -1:
            return None
        return _assigned_by(site, encoded.decode())

    def declares_function(self, name: str) -> bool:
        if name not in self._declares_cache:
            self._declares_cache[name] = any(
                self._declares_at(start, name)
                for start in self._declared_index().get(name.encode(), [])[: self.MAX_ASSIGNMENTS]
            )
        return self._declares_cache[name]

    def _declares_at(self, start: int, name: str) -> bool:
        node = self.root.descendant_for_byte_range(start, start + len(name.encode()))
        parent = node.parent if node is not None else None
        return parent is not None and parent.type == "function_declaration"

    def _declared_index(self) -> dict[bytes, list[int]]:
        if self._declared is None:
            declared: dict[bytes, list[int]] = {}
            for m in _DECLARED_FUNCTION_RE.finditer(self.source):
                declared.setdefault(m.group(1), []).append(m.start(1))
            self._declared = declared
        return self._declared

    def _find_function(self, name: str) -> tuple[list[str], Node] | None:
        starts = self._declared_index().get(name.encode(), [])
        if len(starts) != 1:
            return None
        node = self.root.descendant_for_byte_range(starts[0], starts[0] + len(name.encode()))
        decl = node.parent if node is not None else None
        if decl is None or decl.type != "function_declaration":
            return None
        params_node = decl.child_by_field_name("parameters")
        body = decl.child_by_field_name("body")
        statements = [c for c in body.named_children if c.type != "comment"] if body else []
        if params_node is None or len(statements) != 1 or statements[0].type != "return_statement":
            return None
        params = [_text(p) for p in params_node.named_children]
        if any(p.type != "identifier" for p in params_node.named_children):
            return None
        expr = statements[0].named_children[0] if statements[0].named_children else None
        return (params, expr) if expr is not None else None

    def _index(self) -> dict[bytes, list[int]]:
        if self._sites is None:
            sites: dict[bytes, list[int]] = {}
            for m in _ASSIGNED_NAME_RE.finditer(self.source):
                at = sites.setdefault(m.group(1), [])
                # Past the cap the name is unresolvable anyway: stop growing its list.
                if len(at) <= self.MAX_ASSIGNMENTS:
                    at.append(m.start())
            self._sites = sites
        return self._sites

    def _find(self, name: str) -> Node | None:
        starts = self._index().get(name.encode(), [])
        if len(starts) > self.MAX_ASSIGNMENTS:
            return None
        cursor = QueryCursor(_binding_query())
        values: list[Node] = []
        for start in starts:
            cursor.set_byte_range(start, start + len(name.encode()) + 1)
            for _, caps in cursor.matches(self.root):
                node = caps["name"][0]
                if node.start_byte == start:
                    values.append(caps["value"][0])
        # A name assigned more than once could hold anything: trust only a single binding.
        return values[0] if len(values) == 1 else None
