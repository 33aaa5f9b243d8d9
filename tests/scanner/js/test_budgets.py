"""Constant folding and parsing are bounded: bombs finish fast with a coverage note."""

from __future__ import annotations

import time

from scanner.findings import Category
from scanner.js.engine import analyze_source
from scanner.js.parser import parse
from scanner.js.values import MAX_STRING, FoldBudget, Resolver, SourceBindings
from scanner.manifest import Capabilities
from scanner.stages.js_static import compiled_rules
from tests.paths import PROJECT_ROOT

RULES = compiled_rules(PROJECT_ROOT / "rules" / "js")


def nested_joins(levels: int) -> bytes:
    """Each level joins twelve copies of the one below: x12 per level (issue 11)."""
    src = "var a0='xxxxxxxx';"
    for i in range(1, levels + 1):
        src += f"var a{i}=[{','.join([f'a{i - 1}'] * 12)}].join('');"
    return (src + f"eval(a{levels});").encode()


def _analyze(source: bytes) -> tuple[float, list[tuple[str, Category]]]:
    start = time.perf_counter()
    out = analyze_source("dist/a.js", source, RULES, Capabilities())
    return time.perf_counter() - start, [(f.rule_id, f.category) for f in out.findings]


def test_nested_join_bomb_of_the_issue_finishes_with_a_coverage_note() -> None:
    source = nested_joins(7)
    assert len(source) < 420  # the issue's file was 367 bytes and took 33 s
    took, findings = _analyze(source)
    assert took < 1.0
    assert ("js-folding-limited", Category.COVERAGE) in findings
    assert ("js-eval", Category.DYNAMIC_CODE) in findings  # the eval is still reported


def test_a_name_used_many_times_is_folded_once() -> None:
    source = nested_joins(4)  # 8 * 12**4 = 165,888 characters: under the cap, folded
    tree = parse(source)
    budget = FoldBudget()
    resolver = Resolver(SourceBindings(source, tree.root_node), budget)
    call = tree.root_node.named_children[-1].named_children[0]
    arg = call.child_by_field_name("arguments").named_children[0]
    value = resolver.value(arg)
    assert value is not None and len(value.text) == 8 * 12**4
    # Without the cache each level would evaluate the one below twelve times (12**4 steps).
    assert FoldBudget().steps - budget.steps < 200
    assert budget.stopped is None


def test_strings_over_the_cap_are_never_built() -> None:
    source = f"var s='{'y' * 1000}';var t=[{','.join(['s'] * 1001)}].join('');eval(t)".encode()
    tree = parse(source)
    budget = FoldBudget()
    resolver = Resolver(SourceBindings(source, tree.root_node), budget)
    eval_arg = tree.root_node.named_children[-1].named_children[0]
    arg = eval_arg.child_by_field_name("arguments").named_children[0]
    assert resolver.value(arg) is None  # 1,001,000 > MAX_STRING characters
    assert budget.stopped == f"a string of over {MAX_STRING} characters"


def test_split_of_a_huge_string_is_refused_before_it_is_built() -> None:
    source = f"var s='{'a' * 200_000}';eval(s.split('').reverse().join(''))".encode()
    took, findings = _analyze(source)
    assert took < 2.0 and ("js-folding-limited", Category.COVERAGE) in findings


def test_work_budget_is_shared_with_decoded_payloads() -> None:
    """Payloads analysed in turn spend the same budget: no fresh budget per level."""
    budget = FoldBudget(steps=50)
    source = b"eval('eval(\"eval(1+1)\")');" * 40
    out = analyze_source("a.js", source, RULES, Capabilities(), budget=budget)
    assert budget.stopped is not None
    assert any(f.rule_id == "js-folding-limited" for f in out.findings)


def test_huge_array_literal_is_refused_fast_with_a_note() -> None:
    """Issue 11: an 18 MB array literal ran past 300 s and 3.6 GB."""
    n = 18 * 1024 * 1024 // 4
    source = b"eval([" + b"'a'," * n + b"'a'].join(''));"
    took, findings = _analyze(source)
    assert took < 15.0
    assert findings == [("js-not-analysed", Category.COVERAGE)]


def test_a_long_array_is_not_folded_but_noted() -> None:
    source = b"eval([" + b"1," * 70_000 + b"1].join(''));"
    took, findings = _analyze(source)
    assert took < 3.0 and ("js-folding-limited", Category.COVERAGE) in findings


def test_real_minified_code_folds_without_notes() -> None:
    from scanner.bench import synthetic_minified_js

    _, findings = _analyze(synthetic_minified_js(512 * 1024))
    assert not [f for f in findings if f[1] is Category.COVERAGE]


def test_many_distinct_names_resolve_in_linear_time() -> None:
    """Each name used to rescan the whole file: n names x size made js-static time out."""

    def bundle(names: int) -> bytes:
        pad = "var pad='" + "x" * 100_000 + "';"
        return (pad + "".join(f"fetch(u{i});" for i in range(names))).encode()

    small, _ = _analyze(bundle(1000))
    large, _ = _analyze(bundle(8000))
    # 8x the names: linear costs about 8x (quadratic was 64x and 78 s on 8000 names).
    assert large < 5.0
    assert large < 20 * max(small, 0.01)


def test_many_top_level_constants_cost_linear_time() -> None:
    """The carrier check counts each constant's name in the file: only for the first few."""

    def bundle(names: int) -> bytes:
        return "".join(f"var k{i} = {i};\nuse(k{i});\n" for i in range(names)).encode()

    small, _ = _analyze(bundle(2000))
    large, _ = _analyze(bundle(16000))
    assert large < 20 * max(small, 0.01)


def test_indexed_bindings_still_resolve_single_assignments_only() -> None:
    source = b"var a='https://x.test/';b=a+'p';c=1;c=2;o.d='no';var e=a==b;"
    root = parse(source).root_node
    bindings = SourceBindings(source, root)
    resolver = Resolver(bindings)
    assert bindings("a") is not None
    assert bindings("c") is None  # assigned twice
    assert bindings("d") is None  # only a property of that name is assigned
    assert bindings("e") is not None and bindings("e").type == "binary_expression"
    b = bindings("b")
    assert b is not None
    value = resolver.value(b)
    assert value is not None and value.text == "https://x.test/p"
