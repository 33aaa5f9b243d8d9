"""Code as highlighted, escaped text (Pygments): never as anything a browser would run."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

from service.review.pretty import column_of, looks_minified, pretty

CONTEXT = 400  # lines shown either side of the target in a long file
MAX_LINE = 4000  # characters of one line shown; the rest is cut, and said so


@dataclass(frozen=True)
class CodeView:
    html: Markup
    target: int  # the line to open at, in the shown text
    pretty: bool  # the text was re-flowed from minified code
    minified: bool
    first: int
    last: int
    total: int


def _lexer(path: str) -> Lexer:
    try:
        return get_lexer_for_filename(path, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return TextLexer(stripnl=False)


def render(
    path: str, text: str, line: int | None, evidence: str | None, want_pretty: bool
) -> CodeView:
    minified = looks_minified(text)
    target = max(1, line or 1)
    shown = text
    made_pretty = False
    if minified and want_pretty and path.endswith((".js", ".mjs", ".cjs")):
        laid = pretty(text)
        lines = text.splitlines()
        original = lines[target - 1] if 0 < target <= len(lines) else ""
        target = laid.line_for(target, column_of(original, evidence))
        shown, made_pretty = laid.text, True
    lines = shown.splitlines()
    first = max(1, target - CONTEXT)
    last = min(len(lines), target + CONTEXT)
    window = [
        row if len(row) <= MAX_LINE else row[:MAX_LINE] + " …[line cut]"
        for row in lines[first - 1 : last]
    ]
    formatter = HtmlFormatter(
        linenos="table",
        linenostart=first,
        lineanchors="L",
        anchorlinenos=True,
        hl_lines=[target - first + 1] if first <= target <= last else [],
        wrapcode=True,
        cssclass="code",
    )
    html = highlight("\n".join(window) + "\n", _lexer(path), formatter)
    # Pygments escapes every token of the source: the output is markup we made.
    return CodeView(Markup(html), target, made_pretty, minified, first, last, len(lines))  # noqa: S704


def stylesheet() -> str:
    return str(HtmlFormatter(cssclass="code", style="default").get_style_defs(".code"))
