"""Is a planted secret in this text, in any of the forms a thief dresses it in?

The forms: plain, URL-encoded (twice), base64 and base64url at any byte alignment, hex,
decimal character codes, JSON unicode escapes, and all of these reversed. Matching runs
on whole requests (URL, every header, the full body, every WebSocket message) and on the
concatenation of everything sent to one origin, so a secret split over requests is found.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})")
_SEPARATORS = re.compile(r"[\s,;:|/_.+\-]+")


@functools.lru_cache(maxsize=512)
def variants(value: str) -> frozenset[str]:
    """Lower-case forms of ``value`` that survive being embedded in a longer text."""
    raw = value.encode()
    forms = {value.lower(), raw.hex(), ",".join(str(b) for b in raw)}
    for shift in range(3):  # base64 of "…" + value, whatever came before it
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        start = (shift * 4 + 2) // 3  # the first character made of the value alone
        core = encoded[start:].rstrip("=")
        core = core[: max(8, len(core) - 2)]  # and those mixing what follows
        forms |= {core.lower(), core.replace("+", "-").replace("/", "_").lower()}
    return frozenset(f for f in forms if len(f) >= 8)


def _normalised(text: str) -> tuple[str, ...]:
    decoded = unquote(unquote(text))
    unescaped = _ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), decoded)
    lowered = unescaped.lower()
    # Character codes are matched without their separators; so are the others.
    squeezed = _SEPARATORS.sub("", lowered)
    return lowered, squeezed, lowered[::-1], text.lower()


def carried(text: str, canaries: Mapping[str, str]) -> list[str]:
    """Names of the canaries found in ``text``, in the order of ``canaries``."""
    if not text:
        return []
    hays = _normalised(text)
    found = []
    for name, value in canaries.items():
        forms = variants(value)
        codes = _SEPARATORS.sub("", ",".join(str(b) for b in value.encode()))
        if any(f in hay for f in forms for hay in hays) or codes in hays[1]:
            found.append(name)
    return found


def carried_any(texts: Iterable[str], canaries: Mapping[str, str]) -> list[str]:
    found: list[str] = []
    for text in texts:
        for name in carried(text, canaries):
            if name not in found:
                found.append(name)
    return found
