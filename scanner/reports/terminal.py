"""Bundle-controlled text made safe to print on a terminal.

A file name or a string in a bundle can hold escape sequences (clear the screen, paint
a green "verdict: PASS"), C1 controls that some terminals obey, bidi overrides that make
text read in another order, and line breaks that forge report lines. Each such
character is printed as its Python escape instead, so what a person reads is what is there.
"""

from __future__ import annotations

import logging
import unicodedata

# Categories that print nothing visible and change what is shown: controls (C0, DEL,
# C1), format characters (bidi overrides and isolates, zero-width joiners) and line or
# paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def terminal_safe(text: object) -> str:
    """``text`` with every control, format and separator character written as an escape."""
    s = str(text)
    if s.isprintable() and "\\" not in s:
        return s  # the common case, checked in C
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")  # so an escape we print cannot be faked by the bundle
        elif unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            out.append(_escape(ch))
        else:
            out.append(ch)
    return "".join(out)


class TerminalSafeFormatter(logging.Formatter):
    """Log lines for a terminal: the message (which may quote a member name or a stage's
    error about bundle content) is escaped; a traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = terminal_safe(record.message)
        return super().formatMessage(record)
