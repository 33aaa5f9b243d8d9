"""Exploit-kit reconnaissance: looking at the visitor's machine before choosing a payload.

Landing pages ask the browser about the disk under it (Internet Explorer's ``res://``
protocol and XML DOM errors tell whether a driver file exists) to stay away from machines
with antivirus or virtual-machine drivers. No browser feature reads a Windows system
folder, so a plugin that names one through ``res://`` or a drive path is probing.
"""

from __future__ import annotations

from collections.abc import Iterable

from scanner.js.engine import Captures, FileContext, Hit, analyzer
from scanner.js.rules import JsRule
from scanner.js.values import string_literal
from scanner.regex import compile_linear

# A drive or a Windows binary behind res://, or the system folder where drivers live.
_PROBE_RE = compile_linear(
    r"(?i)res://[a-z]:|res://[^'\"\s]*\.(dll|exe|sys)\b|^[a-z]:[\\/]+windows[\\/]+system32[\\/]",
    rule="js:recon:local_probe",
)


@analyzer("local_probe")
def local_probe(ctx: FileContext, rule: JsRule, caps: Captures) -> Iterable[Hit]:
    node = caps["hit"][0]
    text = string_literal(node).encode("utf-8", "replace").decode("utf-8")
    if _PROBE_RE.search(text):
        yield Hit(node, f"{rule.message} ({text[:80]!r})", evidence=ctx.text(node.parent, 200))
