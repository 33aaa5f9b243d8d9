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
    assert _value(source) == Value(text, complete, decoded)


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


def test_unescape_handles_every_escape_form() -> None:
    assert unescape_js(r"\x41\u0042\u{43}\n\\\'") == "ABC\n\\'"
