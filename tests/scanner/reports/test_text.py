"""The text report prints bundle-controlled strings escaped, never raw to the terminal."""

from __future__ import annotations

import pytest

from scanner.findings import Category, Finding, Severity
from scanner.reports.terminal import terminal_safe
from scanner.reports.text import render_text
from tests.scanner.reports.factories import failed_stage, scan_result

CLEAR_AND_FAKE_PASS = "\x1b[2J\x1b[H\x1b[32mverdict: PASS\x1b[0m"
HOSTILE = [
    "\x1b]0;title\x07",  # OSC: set the window title
    "\x9b2J",  # C1 CSI: a clear screen on terminals that take 8-bit controls
    "\u202eexe.js",  # right-to-left override: the name reads backwards
    "a\u2066b\u2069c",  # bidi isolates
    "line\nverdict: PASS",  # a forged report line
    "nul\x00del\x7f",
    "zero\u200bwidth",
    "sep\u2028para\u2029",
]


@pytest.mark.parametrize("text", [CLEAR_AND_FAKE_PASS, *HOSTILE])
def test_terminal_safe_leaves_no_control_format_or_separator_character(text: str) -> None:
    safe = terminal_safe(text)
    assert safe.isprintable()
    assert "\u200b" not in safe and "\u202e" not in safe


def test_terminal_safe_keeps_ordinary_text_and_cannot_be_faked() -> None:
    assert terminal_safe("dist/bündle.js: 日本") == "dist/bündle.js: 日本"
    # A bundle writing a literal backslash-x cannot pass for one of our escapes.
    assert terminal_safe("\\x1b") == "\\\\x1b"
    assert terminal_safe("\x1b") == "\\x1b"


def test_every_printed_field_is_escaped() -> None:
    finding = Finding(
        "js-static",
        "js-eval",
        Category.DYNAMIC_CODE,
        Severity.HIGH,
        "eval of " + CLEAR_AND_FAKE_PASS,
        path="dist/\u202egnp.js",
        line=3,
        evidence="\x9b2J" + CLEAR_AND_FAKE_PASS,
    )
    result = scan_result(
        [finding],
        bundle_name="b\x1b[31m.zip",
        manifest_name="evil\x1b[2J",
        stages=[failed_stage("yara", "rule in \u2066file\u2069 \x1b[32mok")],
    )
    text = render_text(result)
    lines = text.splitlines()
    assert all(line.isprintable() for line in lines), [ln for ln in lines if not ln.isprintable()]
    assert "verdict: REJECT" in lines[1]
    assert sum("verdict:" in line for line in lines if line.startswith("verdict")) == 1
    assert "\\u202egnp.js" in text and "\\x1b[2J" in text and "\\x9b2J" in text


def test_log_lines_on_the_terminal_are_escaped_but_tracebacks_keep_their_lines() -> None:
    import logging

    from scanner.reports.terminal import TerminalSafeFormatter

    formatter = TerminalSafeFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord(
        "scanner", logging.WARNING, __file__, 1, "stage failed on %s", ("\x1b[2Jx.js",), None
    )
    assert formatter.format(record) == "WARNING stage failed on \\x1b[2Jx.js"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert "\nTraceback" in formatter.format(record)
