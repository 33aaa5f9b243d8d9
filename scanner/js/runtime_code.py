"""Code the plugin built at run time, analysed like the bundle's own.

Obfuscation defeats a static reader, not a browser: whatever a landing page decodes it
must finally hand to ``eval``, ``Function`` or ``document.write``, and the sandbox
records those arguments (the first 2,000 characters). Running the JS rules on them sees
the stage-2 the bundle never spells out (an iframe to an exploit server, a Windows Script
Host dropper). That code being nowhere in the bundle is itself a sign: the plugin hid it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from scanner.findings import Category, Finding, Severity
from scanner.js.engine import analyze_source
from scanner.js.rules import CompiledRules
from scanner.manifest import Capabilities
from scanner.regex import compile_linear
from scanner.runtime import dedupe

STAGE = "runtime"
# A feature test (``new Function('return this')``, ``eval('1')``) is not a hidden program.
MIN_HIDDEN_CODE = 40
MAX_SAMPLES = 8
_SCRIPT_RE = compile_linear(
    r"<script\b[^>]*>(.*?)(?:</script\s*>|$)",
    rule="js:runtime_code:script",
    ignore_case=True,
    dot_all=True,
)
_REMOTE_FRAME_RE = compile_linear(
    r"<(iframe|script|frame|embed|object)\b[^>]*?\b(src|data)\s*=\s*['\"]?\s*(https?:)?//",
    rule="js:runtime_code:remote_frame",
    ignore_case=True,
)
_CODE_EVENTS = ("eval", "function", "string-timer")


def _samples(trace: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(how, code) for each distinct piece of code built at run time, at most a few."""
    seen: set[str] = set()
    written = False
    for e in trace.get("events", []):
        kind = e.get("type")
        if kind in _CODE_EVENTS:
            code = str(e.get("code", "")).encode("utf-8", "replace").decode("utf-8")
        elif kind == "document-write":
            # NULs between characters (text written as UTF-16) hide tags from a reader only.
            html = str(e.get("html", "")).replace("\x00", "")
            html = html.encode("utf-8", "replace").decode("utf-8")
            code = "\n".join(m.group(1) for m in _SCRIPT_RE.finditer(html[:20000]))
            if _REMOTE_FRAME_RE.search(html):
                yield "document.write", html
            elif not written:
                written = True
                yield "document.write-page", html
        else:
            continue
        if code.strip() and code not in seen:
            seen.add(code)
            yield str(kind), code
        if len(seen) >= MAX_SAMPLES:
            return


def _normalise(code: str) -> str:
    return "".join(code.split())


def runtime_code_findings(
    trace: dict[str, Any],
    rules: CompiledRules,
    capabilities: Capabilities,
    sources: Iterable[bytes],
) -> list[Finding]:
    """Findings on the code a detonation built at run time, and on its hiding."""
    role = str(trace.get("role", ""))
    bundle = [_normalise(s.decode("utf-8", "replace")) for s in sources]
    out: list[Finding] = []
    for how, code in _samples(trace):
        if how == "document.write":
            out.append(_written_frame(code, role))
            continue
        if how == "document.write-page":
            out.append(_written_page(code, role))
            continue
        out.extend(_analysed(how, code, rules, capabilities, role))
        head = _normalise(code)[:200]
        # A declared template compiler generates code by design; nothing is hidden.
        unseen = len(head) >= MIN_HIDDEN_CODE and not any(head in s for s in bundle)
        if unseen and not capabilities.eval:
            out.append(_hidden(how, code, role))
    return dedupe(out)


def _analysed(
    how: str, code: str, rules: CompiledRules, capabilities: Capabilities, role: str
) -> list[Finding]:
    analysis = analyze_source(f"<{how} at run time>", code.encode("utf-8", "replace"), rules,
                              capabilities, depth=1)  # fmt: skip
    return [
        replace(
            f,
            stage=STAGE,
            message=f"in code built at run time ({how}, as {role}): {f.message}",
            line=None,
        )
        for f in analysis.findings
        if f.severity >= Severity.MEDIUM and f.category is not Category.COVERAGE
    ]


def _hidden(how: str, code: str, role: str) -> Finding:
    return Finding(
        stage=STAGE,
        rule_id="runtime-hidden-code",
        category=Category.OBFUSCATION,
        severity=Severity.HIGH,
        message=f"ran code ({how}, as {role}) that appears nowhere in the bundle: it was"
        " decoded or assembled at run time, out of a reader's sight",
        evidence=code[:300],
    )


def _written_frame(html: str, role: str) -> Finding:
    return Finding(
        stage=STAGE,
        rule_id="runtime-written-remote-frame",
        category=Category.MALWARE,
        severity=Severity.HIGH,
        message=f"wrote a frame, script or object from another host into the page with"
        f" document.write (as {role}): how exploit-kit landing pages load their next stage",
        evidence=html[:300],
    )


def _written_page(html: str, role: str) -> Finding:
    """A plugin mounts into a live page: document.write there rewrites the host's page."""
    return Finding(
        stage=STAGE,
        rule_id="runtime-document-write",
        category=Category.DOM_ESCAPE,
        severity=Severity.HIGH,
        message=f"wrote into the host page with document.write (as {role}): after load that"
        " replaces the page, which no plugin has a reason to do",
        evidence=html[:300],
    )
