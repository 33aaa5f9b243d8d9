"""What the JS analysis does with recognised copies: skip the pristine ones, attribute
findings inside verified library code to the library."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import replace

from scanner.findings import LIBRARY_DETAIL, Category, Finding
from scanner.libraries.matcher import Copy, CopyKind

# Left before a blanked copy: the library could not be the operand of the code before it.
_SAFE_BEFORE = frozenset(b";{}")
# Code starting with one of these after a line break would continue the copy's last
# expression, so a copy that does not end its statement is left in place.
_CONTINUES = frozenset(b"([`+-/*,.?:=<>&|")
MAX_COMMENTS = 8
_OPENS_CALL = (b"(", b"[", b"`")
_BLANK = bytes(b if b == 0x0A else 0x20 for b in range(256))
NEVER_ATTRIBUTED = frozenset({Category.COVERAGE, Category.ARCHIVE, Category.SUPPLY_CHAIN})


def blankable(source: bytes, copy: Copy) -> bool:
    """A whole, unchanged copy standing as statements of its own, so that the code around
    it parses the same without it."""
    if copy.kind is not CopyKind.PRISTINE:
        return False
    before = _code_before(source[: copy.start])
    if before and before[-1] not in _SAFE_BEFORE:
        return False
    body = source[copy.start : copy.end].rstrip()
    if before.endswith(b"}") and _code_after(body).lstrip()[:1] in _OPENS_CALL:
        return False  # `function(){}` then `(...)`: the copy would be its argument list
    rest = _code_after(source[copy.end :])
    after = rest.lstrip()
    if not body or body[-1] == ord(";") or not after or after[0] == ord(";"):
        return True
    return b"\n" in rest[: len(rest) - len(after)] and after[0] not in _CONTINUES


def _code_before(text: bytes) -> bytes:
    """``text`` without the whitespace and comments it ends with (the previous file's
    source map line, a banner): a comment is never an operand."""
    for _ in range(MAX_COMMENTS):
        text = text.rstrip()
        line = text[text.rfind(b"\n") + 1 :]
        if line.lstrip().startswith(b"//"):
            text = text[: len(text) - len(line)]
        elif text.endswith(b"*/") and (opening := text.rfind(b"/*")) != -1:
            text = text[:opening]
        else:
            break
    return text


def _code_after(text: bytes) -> bytes:
    """``text`` from its first code on, comments skipped (line breaks kept before it)."""
    for _ in range(MAX_COMMENTS):
        stripped = text.lstrip()
        gap = text[: len(text) - len(stripped)]
        if stripped.startswith(b"//"):
            end = stripped.find(b"\n")
            text = gap + (stripped[end:] if end != -1 else b"")
        elif stripped.startswith(b"/*") and (close := stripped.find(b"*/")) != -1:
            text = gap + stripped[close + 2 :]
        else:
            break
    return text


def blank(source: bytes, copies: Iterable[Copy]) -> tuple[bytes, list[Copy]]:
    """The source with blankable copies turned to spaces (line breaks kept, so every
    line and byte offset of the rest stays where it was), and the copies blanked."""
    out = bytearray(source)
    done = []
    for c in copies:
        if blankable(source, c):
            out[c.start : c.end] = source[c.start : c.end].translate(_BLANK)
            done.append(c)
    return bytes(out), done


class Attributor:
    """Byte spans of verified library code in one file, and the copy each belongs to."""

    def __init__(self, copies: Sequence[Copy]) -> None:
        spans = sorted((s, e, c.label) for c in copies for s, e in c.pristine_spans())
        self.starts = [s for s, _, _ in spans]
        self.spans = spans

    def label_of(self, span: tuple[int, int] | None) -> str | None:
        if span is None or not self.spans:
            return None
        i = bisect.bisect_right(self.starts, span[0]) - 1
        if i < 0:
            return None
        start, end, label = self.spans[i]
        return label if start <= span[0] and span[1] <= end else None

    def attribute(self, findings: Iterable[Finding]) -> list[Finding]:
        out = []
        for f in findings:
            label = None if f.category in NEVER_ATTRIBUTED else self.label_of(f.span)
            out.append(replace(f, details=(*f.details, (LIBRARY_DETAIL, label))) if label else f)
        return out
