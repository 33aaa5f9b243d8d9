"""Constant folding: the strings an expression can only ever be."""

from __future__ import annotations

import pytest

from scanner.js.parser import parse
from scanner.js.values import Resolver, SourceBindings, Value, unescape_js


def _value(source: str) -> Value | None:
    """Fold the right-hand side of the last `var result = ...` in ``source``."""
    raw = source.encode()
    bindings = SourceBindings(raw, parse(raw).root_node)
    return Resolver(bindings).value(bindings("result"))


@pytest.mark.parametrize(
    ("source", "text", "complete", "decoded"),
    [
        ("var result = 'https://a.example/' + 'x';", "https://a.example/x", True, False),
        ("var result = `https://${'a'}.example`;", "https://a.example", True, False),
        (
            "var result = 'https://evil.example/?c=' + document.cookie;",
            "https://evil.example/?c=",
            False,
            False,
        ),
        (
            "var h = 'evil.example'; var result = 'https://' + h + '/c';",
            "https://evil.example/c",
            True,
            False,
        ),
        (
            "var result = ['https:', '', 'evil.example'].join('/');",
            "https://evil.example",
            True,
            False,
        ),
        (
            "var result = 'elpmaxe.live//:sptth'.split('').reverse().join('');",
            "https://evil.example",
            True,
            False,
        ),
        ("var result = String.fromCharCode(104, 105);", "hi", True, True),
        ("var result = String.fromCharCode(...[0x68, 0x69]);", "hi", True, True),
        ("var result = atob('aHR0cHM6Ly9ldmlsLmV4YW1wbGU=');", "https://evil.example", True, True),
        (
            "var result = decodeURIComponent('https%3A%2F%2Fevil.example');",
            "https://evil.example",
            True,
            True,
        ),
        ("var result = '\\x68\\x74\\x74\\x70\\x73';", "https", True, True),
        ("var result = 'a'.concat('b', 'c');", "abc", True, False),
    ],
)
def test_folds(source: str, text: str, complete: bool, decoded: bool) -> None:
    value = _value(source)
    assert value is not None
    assert (value.text, value.complete, value.decoded) == (text, complete, decoded)


@pytest.mark.parametrize(
    ("source", "text", "built"),
    [
        ("var result = 'wrXXite'.replace(/XX/g, '');", "write", True),
        ("var result = 'aXbXc'.replace(/x/gi, '-');", "a-b-c", True),
        ("var result = 'aXbXc'.replace(/X/, '');", "abXc", True),
        ("var result = 'aXb'.replace('X', '');", "ab", True),
        ("var result = ('srs').substr(1, 1);", "r", True),
        ("var result = 'docs'.substring(0, 3);", "doc", True),
        ("var result = 'xeval'.slice(1);", "eval", True),
        ("var result = 'abc'.charAt(2);", "c", True),
        ("var result = 'do' + 'cument';", "document", True),
        ("var result = ['e', 'v'].join('');", "ev", True),
        ("var result = 'document';", "document", False),
        ("var result = ['document'].join('');", "document", False),
        ("var t = ['ev', 'al']; var result = t[0] + t[1];", "eval", True),
        ("var result = 'xyz'[1];", "y", True),
        ("var result = 'wXrite'['replace'](/X/g, '');", "write", True),
    ],
)
def test_built_strings_are_marked(source: str, text: str, built: bool) -> None:
    """Run-time assembly is what the hidden-name rule looks for; a plain literal is not."""
    value = _value(source)
    assert value is not None
    assert (value.text, value.built) == (text, built)


@pytest.mark.parametrize(
    "source",
    [
        "var result = 'abc'.replace(/(a)\\1/g, '');",  # a backreference: RE2 refuses it
        "var result = 'abc'.replace(/b/g, '$&$&');",  # replacement patterns are not emulated
        "var result = 'abc'.substr(-1);",
    ],
)
def test_replacements_it_cannot_follow_are_unknown(source: str) -> None:
    assert _value(source) is None


@pytest.mark.parametrize(
    "source",
    [
        "var result = location.href;",
        "var result = atob(userInput);",
        "var result = atob('%%%not base64%%%');",
        "var result = compute(1);",
    ],
)
def test_refuses_what_is_not_constant(source: str) -> None:
    assert _value(source) is None


def test_names_bound_twice_are_not_trusted() -> None:
    source = "var h = 'good.example'; h = readHost(); var result = 'https://' + h + '/x';"
    assert _value(source) == Value("https://", False, False)


def test_a_reassigned_name_folds_from_the_assignment_just_before_its_use() -> None:
    source = "var p = 'a push'.substr(2, 2); p = p + 's' + 'h'; var result = p;"
    assert _value(source) == Value("push", True, False, built=True)
    # Not across a statement that mentions the name: a call may have changed it.
    assert _value("var p = 'a'; p = 'b'; mutate(p); var result = p + 'c';") is None
    # Not into a function body: when it runs, the name may hold anything.
    assert _value("var p = 'a'; p = 'b'; function f() { var result = p + 'c'; }") is None
    # Not past a loop or condition header, which assigns it again.
    assert _value("var k = 'a'; k = 'b'; for (k in o) var result = k + 'x';") is None
    assert _value("var p = 'a'; p = 'b'; while (p = next()) var result = p + 'x';") is None
    # Of a declaration naming it twice, the last declarator is what it holds.
    assert _value("var q = 'z'; var q = 'a', q = 'b'; var result = q + 'c';") == Value(
        "bc", True, False, built=True
    )


def test_unescape_handles_every_escape_form() -> None:
    assert unescape_js(r"\x41\u0042\u{43}\n\\\'") == "ABC\n\\'"
