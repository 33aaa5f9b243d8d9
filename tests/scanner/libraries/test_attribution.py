"""Skipping whole pristine copies and attributing findings inside library code."""

from __future__ import annotations

from scanner.findings import Category, Finding, Severity
from scanner.libraries.attribution import Attributor, blank
from scanner.libraries.index import LibraryIndex, canonical
from scanner.libraries.matcher import recognise
from tests.scanner.libraries.conftest import make_index, synthetic_library

PLUGIN = b"var TestPlugin={mount:function(c){c.textContent='hi'}};\n"


def test_blanking_keeps_every_line_and_offset(tiny: bytes, tiny_index: LibraryIndex) -> None:
    data = PLUGIN + tiny + PLUGIN
    copies = recognise(data, tiny_index)
    out, done = blank(data, copies)
    assert len(out) == len(data) and out.count(b"\n") == data.count(b"\n")
    assert out.startswith(PLUGIN) and out.endswith(PLUGIN)
    assert out[done[0].start : done[0].end].strip() == b""


def test_a_copy_that_could_be_an_operand_is_not_blanked(
    tiny: bytes, tiny_index: LibraryIndex
) -> None:
    # `x=` before the copy: removing it would change what the code around it means.
    data = b"var x=" + canonical(tiny) + b";\n" + PLUGIN
    out, done = blank(data, recognise(data, tiny_index))
    assert done == [] and out == data


def _finding(span: tuple[int, int] | None, category: Category = Category.DYNAMIC_CODE) -> Finding:
    return Finding("js-static", "js-eval", category, Severity.HIGH, "eval", "a.js", 1, span=span)


def test_findings_inside_verified_library_code_are_attributed(
    tiny: bytes, tiny_index: LibraryIndex
) -> None:
    data = PLUGIN + tiny + PLUGIN
    [copy] = recognise(data, tiny_index)
    attributor = Attributor([copy])
    inside, outside, across = (
        _finding((copy.start + 10, copy.start + 20)),
        _finding((1, 5)),
        _finding((copy.start - 5, copy.start + 5)),
    )
    marked = attributor.attribute([inside, outside, across, _finding(None)])
    assert [f.library for f in marked] == ["tinylib@1.2.3", None, None, None]
    # Coverage is never attributed: an unread part of a library is still unread.
    [gap] = attributor.attribute([_finding((copy.start + 1, copy.start + 2), Category.COVERAGE)])
    assert gap.library is None


def test_attributed_findings_are_reported_with_their_library(
    tiny: bytes, tiny_index: LibraryIndex
) -> None:
    data = tiny
    [copy] = recognise(data, tiny_index)
    [f] = Attributor([copy]).attribute([_finding((copy.start + 1, copy.start + 9))])
    assert f.to_dict()["library"] == "tinylib@1.2.3"


def test_comments_around_a_copy_do_not_stop_it_being_skipped(
    tiny: bytes, tiny_index: LibraryIndex
) -> None:
    # Files concatenated as they ship: each ends with its source map comment.
    data = PLUGIN + b"//# sourceMappingURL=a.js.map\n" + tiny + b"/* end */\n" + PLUGIN
    _, done = blank(data, recognise(data, tiny_index))
    assert len(done) == 1
    # A comment between an operator and the copy does not hide the operator.
    operand = b"var x=/* lib */\n" + canonical(tiny) + b";\n"
    _, none = blank(operand, recognise(operand, tiny_index))
    assert none == []


def test_a_copy_that_would_be_an_argument_list_is_not_blanked() -> None:
    # A copy starting with "(" after a function expression is called with it, not run.
    lib = b"(function(){" + canonical(synthetic_library(8_000, seed=31)) + b"})();"
    index = make_index(("paren", "1.0.0", "p.js", lib, "MIT"))
    after_function = b"var f=function(){}\n" + lib + b"\n"
    assert blank(after_function, recognise(after_function, index))[1] == []
    after_statement = b"var f=1;\n" + lib + b"\n"
    assert len(blank(after_statement, recognise(after_statement, index))[1]) == 1
