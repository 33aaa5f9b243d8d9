"""Linear-time regular expressions for every pattern that bundle content reaches.

Python's ``re`` backtracks and holds the GIL while it does: one quadratic pattern on a
hostile file stalls the whole process, and no thread timeout can interrupt it. RE2
(google-re2) matches in time linear in the input, whatever the pattern. It refuses
backreferences and lookarounds; such a pattern is refused when its rule is loaded, with
the rule named, unless the caller says why Python's engine is safe for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, AnyStr, Generic, Protocol, TypeVar

import re2

# RE2 refuses counted repetitions above this (``.{0,8000}``), and nesting them too.
MAX_REPEAT = 1000
# The DFA's memory budget for patterns we expanded: past the default 8 MiB RE2 falls
# back to its slower NFA (measured 1.7 s instead of 25 ms on 1 MB for ``.{0,8000}``).
EXPANDED_MAX_MEM = 32 * 1024 * 1024


class RegexRefusedError(ValueError):
    """A rule's pattern cannot run in linear time; the rule names the pattern's owner."""


_S_co = TypeVar("_S_co", str, bytes, covariant=True)


class Match(Protocol[_S_co]):
    """What callers use of a match: the same names as ``re.Match``."""

    def group(self, *groups: int | str) -> Any: ...
    def groups(self) -> tuple[_S_co | None, ...]: ...
    def start(self, group: int | str = 0) -> int: ...
    def end(self, group: int | str = 0) -> int: ...
    def span(self, group: int | str = 0) -> tuple[int, int]: ...


@dataclass(frozen=True)
class Regex(Generic[AnyStr]):
    """A compiled pattern with the ``re.Pattern`` methods the scanner uses."""

    rule: str
    pattern: AnyStr
    engine: str  # "re2", or "re" for a pattern proven safe another way
    compiled: Any

    def search(self, data: AnyStr, pos: int = 0, endpos: int | None = None) -> Match[AnyStr] | None:
        end = len(data) if endpos is None else endpos
        m: Match[AnyStr] | None = self.compiled.search(data, pos, end)
        return m

    def match(self, data: AnyStr) -> Match[AnyStr] | None:
        m: Match[AnyStr] | None = self.compiled.match(data)
        return m

    def fullmatch(self, data: AnyStr) -> Match[AnyStr] | None:
        m: Match[AnyStr] | None = self.compiled.fullmatch(data)
        return m

    def finditer(self, data: AnyStr) -> Iterator[Match[AnyStr]]:
        it: Iterator[Match[AnyStr]] = self.compiled.finditer(data)
        return it

    def findall(self, data: AnyStr) -> list[Any]:
        return list(self.compiled.findall(data))

    @property
    def groupindex(self) -> dict[str, int]:
        """Group numbers by name (as text, also for a bytes pattern)."""
        return {
            k.decode() if isinstance(k, bytes) else str(k): int(v)
            for k, v in self.compiled.groupindex.items()
        }


# Every pattern compiled through this module, so one test can run them all on hostile input.
REGISTRY: dict[str, Regex[Any]] = {}


def compile_linear(
    pattern: AnyStr,
    *,
    rule: str,
    ignore_case: bool = False,
    dot_all: bool = False,
    backtracking_safe_because: str | None = None,
) -> Regex[AnyStr]:
    """Compile ``pattern`` for RE2, or raise RegexRefusedError naming ``rule``.

    ``backtracking_safe_because`` is the explicit mark for a pattern RE2 cannot take but
    that is linear for a reason the caller states (reviewed like code); it then runs on
    Python's engine, and the adversarial-input test still times it.
    """
    try:
        compiled = re2.compile(pattern, _options(ignore_case, dot_all, expanded=False))
        engine = "re2"
    except re2.error as exc:
        if backtracking_safe_because is None:
            raise RegexRefusedError(f"{rule}: {_why(exc)} in {_show(pattern)}") from None
        flags = (re.IGNORECASE if ignore_case else 0) | (re.DOTALL if dot_all else 0)
        compiled = re.compile(pattern, flags)
        engine = "re"
    out = Regex(rule, pattern, engine, compiled)
    REGISTRY[rule] = out
    return out


def compile_translated(pattern: str, *, rule: str) -> Regex[bytes]:
    """Compile a pattern written for another engine (RetireJS data), translating what RE2
    lacks when the translation keeps its meaning exactly; else RegexRefusedError."""
    translated = expand_repetitions(pattern)
    if translated is None:
        raise RegexRefusedError(f"{rule}: a counted repetition RE2 cannot express")
    raw = translated.encode()
    try:
        compiled = re2.compile(raw, _options(False, False, expanded=translated != pattern))
    except re2.error as exc:
        raise RegexRefusedError(f"{rule}: {_why(exc)}") from None
    out: Regex[bytes] = Regex(rule, raw, "re2", compiled)
    REGISTRY[rule] = out
    return out


def _options(ignore_case: bool, dot_all: bool, *, expanded: bool) -> Any:
    options = re2.Options()
    options.log_errors = False  # refusals are ours to report, not stderr noise
    options.case_sensitive = not ignore_case
    options.dot_nl = dot_all
    if expanded:
        options.max_mem = EXPANDED_MAX_MEM
    return options


def _why(exc: Exception) -> str:
    text = exc.args[0] if exc.args else str(exc)
    reason = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"RE2 cannot run it ({reason})"


def _show(pattern: str | bytes) -> str:
    text = pattern.decode("utf-8", "replace") if isinstance(pattern, bytes) else pattern
    return repr(text if len(text) <= 120 else text[:119] + "…")


_COUNT = re.compile(r"\{(\d+)(?:(,)(\d*))?\}(\??)")


def expand_repetitions(pattern: str) -> str | None:
    """``X{m,n}`` past RE2's limit of 1000 as a chain of allowed ones, the same language:
    ``.{0,2500}`` -> ``.{0,1000}.{0,1000}.{0,500}``. None when a large count applies to
    a group, which has no such exact rewrite."""
    out: list[str] = []
    copied = 0
    atom_start = -1  # where the last single-character atom began; -1 after a group
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "{" and (m := _COUNT.match(pattern, i)):
            low, comma, high, lazy = int(m.group(1)), m.group(2), m.group(3), m.group(4)
            top = low if not comma else (int(high) if high else None)
            if low > MAX_REPEAT or (top is not None and top > MAX_REPEAT):
                if atom_start < 0:
                    return None
                out.append(pattern[copied:atom_start])
                out.append(_chain(pattern[atom_start:i], low, top, lazy))
                copied = m.end()
            atom_start = -1
            i = m.end()
            continue
        atom_start = i if c not in "()|*+?{}" else -1
        i = _atom_end(pattern, i)
    return "".join(out) + pattern[copied:]


def _atom_end(pattern: str, i: int) -> int:
    """The index just past the token at ``i``: an escape, a whole class, or one character."""
    if pattern[i] == "\\":
        return i + 2
    if pattern[i] != "[":
        return i + 1
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1  # a leading ] is a member, not the end
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1


def _chain(atom: str, low: int, high: int | None, lazy: str) -> str:
    parts = [f"{atom}{{{MAX_REPEAT}}}"] * (low // MAX_REPEAT)
    if low % MAX_REPEAT:
        parts.append(f"{atom}{{{low % MAX_REPEAT}}}")
    if high is None:
        parts.append(f"{atom}*{lazy}")
        return "".join(parts)
    spare = high - low
    while spare > 0:
        step = min(spare, MAX_REPEAT)
        parts.append(f"{atom}{{0,{step}}}{lazy}")
        spare -= step
    return "".join(parts)


_TOKEN = re.compile(
    r"""
    (?P<backref>\\[1-9][0-9]?)
  | (?P<escape>\\.)
  | (?P<cls>\[\^?\]?(?:\\.|[^\]\\])*\])
  | (?P<look>\(\?<?[=!])
  | (?P<named>\(\?P?<[A-Za-z_][A-Za-z0-9_]*>)
  | (?P<group>\(\?)
  | (?P<capture>\()
  | (?P<close>\))
  | (?P<other>[^\\\[()]+|.)
    """,
    re.VERBOSE | re.DOTALL,
)
_MAX_RELAX_DEPTH = 4


def relax(pattern: str) -> str | None:
    """A pattern RE2 can run that matches everything ``pattern`` matches, or None.

    Lookarounds are dropped and each backreference becomes the body of its group: the
    language only grows, so a detector relaxed this way still finds its library, at worst
    on a little more text. None when there is nothing to relax or the pattern is malformed.
    """
    tokens = [(m.lastgroup or "other", m.group()) for m in _TOKEN.finditer(pattern)]
    closing: dict[int, int] = {}
    groups: dict[int, int] = {}  # group number -> index of its opening token
    stack: list[int] = []
    for i, (kind, _) in enumerate(tokens):
        if kind in ("look", "named", "group", "capture"):
            if kind in ("named", "capture"):
                groups[len(groups) + 1] = i
            stack.append(i)
        elif kind == "close":
            if not stack:
                return None
            closing[stack.pop()] = i
    if stack or not any(kind in ("look", "backref") for kind, _ in tokens):
        return None

    def render(start: int, end: int, depth: int, plain: bool) -> str | None:
        out: list[str] = []
        i = start
        while i < end:
            kind, text = tokens[i]
            if kind == "look":
                i = closing[i] + 1
                continue
            if kind == "backref":
                opener = groups.get(int(text[1:]))
                if opener is None or depth >= _MAX_RELAX_DEPTH:
                    return None
                body = render(opener + 1, closing[opener], depth + 1, True)
                if body is None:
                    return None
                out.append(f"(?:{body})")
            elif plain and kind in ("named", "capture"):
                out.append("(?:")  # a copied group must not shift the numbers after it
            else:
                out.append(text)
            i += 1
        return "".join(out)

    return render(0, len(tokens), 0, False)
