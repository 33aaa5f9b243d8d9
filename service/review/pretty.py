"""A small JavaScript pretty-printer for minified code, with a map from the original
positions to the pretty lines, so a finding on line 1 of a minified file lands on the
line of the pretty view that holds its code.

Token-based and forgiving: it only re-flows whitespace between tokens (strings, template
literals, comments and regular expressions are copied as they are), so the pretty text is
the same program laid out differently and no token is ever split or merged.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

MINIFIED_LINE = 500  # a line this long means the file is minified
INDENT = "  "
IDENT_RE = re.compile(r"[A-Za-z0-9_$\u0080-\uffff]+")
PUNCT_RE = re.compile(
    r">>>=|\.\.\.|===|!==|\*\*=|<<=|>>=|>>>|&&=|\|\|=|\?\?=|=>|==|!=|<=|>=|&&|\|\||\?\?|\?\.|\+\+|--|\+=|-=|\*=|/=|%=|&=|\|=|\^=|\*\*|<<|>>|.",
    re.S,
)
# After these, a slash starts a regular expression, not a division.
REGEX_AFTER = frozenset(
    [
        "(",
        ",",
        "=",
        ":",
        "[",
        "!",
        "&",
        "|",
        "?",
        "{",
        "}",
        ";",
        "+",
        "-",
        "*",
        "%",
        "<",
        ">",
        "~",
        "^",
        "=>",
        "==",
        "===",
        "!=",
        "!==",
        "<=",
        ">=",
        "&&",
        "||",
        "??",
        "return",
        "typeof",
        "instanceof",
        "in",
        "of",
        "new",
        "delete",
        "void",
        "throw",
        "case",
        "do",
        "else",
    ]
)


@dataclass
class Pretty:
    text: str
    # Sorted original offsets, and the pretty line (1-based) each token starts on.
    _offsets: list[int] = field(default_factory=list)
    _lines: list[int] = field(default_factory=list)
    # Original offset of the start of each original line.
    _line_starts: list[int] = field(default_factory=list)

    def line_for(self, line: int, column: int = 0) -> int:
        """The pretty line holding the code at the original ``line`` and ``column``."""
        if not self._offsets or line < 1:
            return 1
        start = self._line_starts[min(line, len(self._line_starts)) - 1]
        i = bisect.bisect_right(self._offsets, start + max(0, column)) - 1
        return self._lines[max(0, i)]


def looks_minified(source: str) -> bool:
    return any(len(line) > MINIFIED_LINE for line in source.splitlines())


def _scan_string(src: str, i: int) -> int:
    quote = src[i]
    i += 1
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if c == quote or (c == "\n" and quote != "`"):
            return i + 1
        if quote == "`" and c == "$" and src.startswith("${", i):
            i = _scan_braces(src, i + 1)
            continue
        i += 1
    return len(src)


def _scan_braces(src: str, i: int) -> int:
    depth = 0
    while i < len(src):
        c = src[i]
        if c in "'\"`":
            i = _scan_string(src, i)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(src)


def _scan_regex(src: str, i: int) -> int:
    i += 1
    in_class = False
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if c == "\n":
            return i
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "/" and not in_class:
            i += 1
            flags = IDENT_RE.match(src, i)
            return flags.end() if flags else i
        i += 1
    return len(src)


def tokens(src: str) -> list[tuple[int, str]]:
    """(offset, text) of every token; whitespace dropped, comments kept."""
    out: list[tuple[int, str]] = []
    i, prev = 0, ""
    while i < len(src):
        c = src[i]
        if c.isspace():
            i += 1
            continue
        if src.startswith("//", i):
            end = src.find("\n", i)
            end = len(src) if end < 0 else end
        elif src.startswith("/*", i):
            end = src.find("*/", i + 2)
            end = len(src) if end < 0 else end + 2
        elif c in "'\"`":
            end = _scan_string(src, i)
        elif c == "/" and (not prev or prev in REGEX_AFTER):
            end = _scan_regex(src, i)
        else:
            m = IDENT_RE.match(src, i) or PUNCT_RE.match(src, i)
            assert m is not None
            end = m.end()
        text = src[i:end]
        out.append((i, text))
        if not text.startswith(("//", "/*")):
            prev = text
        i = end
    return out


def pretty(src: str) -> Pretty:
    """Lay the code out one statement a line, blocks indented."""
    toks = tokens(src)
    lines: list[str] = []
    current: list[str] = []
    offsets: list[int] = []
    line_of: list[int] = []
    depth = 0
    parens = 0

    def newline() -> None:
        nonlocal current
        if current:
            lines.append(INDENT * max(0, depth) + "".join(current).strip())
            current = []

    prev = ""
    for offset, text in toks:
        if text in ("(", "["):
            parens += 1
        elif text in (")", "]"):
            parens = max(0, parens - 1)
        if not current and lines and (text in {";", ","} or (prev == "}" and text in {")", "."})):
            # "};" "}," "})" stay on the closing brace's line.
            lines[-1] += text
            offsets.append(offset)
            line_of.append(len(lines))
            prev = text
            continue
        if text == "}":
            newline()
            depth -= 1
        if current and _needs_space(prev, text):
            current.append(" ")
        offsets.append(offset)
        line_of.append(len(lines) + 1)
        current.append(text)
        if text == "{":
            newline()
            depth += 1
        elif text == "}" or (text == ";" and parens == 0) or text.startswith("//"):
            newline()
        prev = text
    newline()
    starts = [0] + [m.end() for m in re.finditer("\n", src)]
    return Pretty("\n".join(lines) + "\n", offsets, line_of, starts)


def _wordish(token: str) -> bool:
    return bool(IDENT_RE.fullmatch(token)) or token[:1] in "'\"`"


def _needs_space(prev: str, text: str) -> bool:
    if _wordish(prev) and _wordish(text):
        return True
    if prev in {",", ";"} or text in {"=>", "?", ":"} or prev in {"=>", "?", ":"}:
        return True
    if len(prev) > 1 and PUNCT_RE.fullmatch(prev) and prev not in {"++", "--", "?.", "..."}:
        return True
    if len(text) > 1 and PUNCT_RE.fullmatch(text) and text not in {"++", "--", "?.", "..."}:
        return True
    binary = {"=", "+", "*", "<", ">", "|", "&", "%"}
    return text in binary or prev in binary


def column_of(line_text: str, evidence: str | None) -> int:
    """Where a finding's evidence starts in its original line (0 when not found)."""
    if not evidence:
        return 0
    needle = evidence.rstrip("…").strip()[:40]
    found = line_text.find(needle) if needle else -1
    return max(0, found)
