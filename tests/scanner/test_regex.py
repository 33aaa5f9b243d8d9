"""Every regex that bundle content reaches runs in linear time, and refusals are loud."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Any

import pytest

import scanner.js.carriers
import scanner.js.code
import scanner.js.families
import scanner.js.network
import scanner.js.page
import scanner.js.recon
import scanner.runtime
import scanner.stages.directives  # noqa: F401 - registers their patterns
from scanner.advisories.feeds import Detector, detector_regex, read_feed, unusable_detectors
from scanner.deps.vendored import VendoredLibraries
from scanner.js.engine import ANALYZERS
from scanner.js.rules import RuleError, compile_rules, load_rules
from scanner.regex import (
    REGISTRY,
    RegexRefusedError,
    compile_linear,
    compile_translated,
    expand_repetitions,
    relax,
)
from scanner.stages.secrets import SecretsRuleError, SecretsStage, load_patterns
from tests.conftest import workspace_of
from tests.paths import PROJECT_ROOT

RULES = PROJECT_ROOT / "rules"
ADVERSARIAL_BYTES = 256 * 1024
# Linear engines scan 256 KB in milliseconds; a quadratic pattern needs minutes.
MAX_SECONDS = 0.5


def test_a_pattern_re2_cannot_run_is_refused_with_its_rule_named() -> None:
    with pytest.raises(RegexRefusedError, match=r"my-rule.*perl operator"):
        compile_linear(rb"(?<!x)secret", rule="my-rule")
    with pytest.raises(RegexRefusedError, match="other-rule"):
        compile_linear(r"(a)\1", rule="other-rule")


def test_only_an_explicit_mark_lets_a_pattern_run_on_pythons_engine() -> None:
    marked = compile_linear(
        rb"(?<!x)abc", rule="marked", backtracking_safe_because="fixed-width lookbehind only"
    )
    assert marked.engine == "re" and marked.search(b"xabc abc") is not None
    assert compile_linear(rb"abc", rule="plain").engine == "re2"


def test_secret_rule_with_a_lookahead_stops_the_rule_set_from_loading(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text(
        "[[pattern]]\nid = 'x-key'\ntitle = 't'\nseverity = 'high'\n"
        "regex = '''key_[a-z]{8}(?![a-z])'''\n"
    )
    with pytest.raises(SecretsRuleError, match="x-key"):
        load_patterns.__wrapped__(path)


def test_js_atom_regex_with_a_backreference_is_refused(tmp_path: Path) -> None:
    src = (RULES / "js" / "js-page-write.toml").read_text()
    src = re.sub(r"atom_regex = '''.*'''", r"atom_regex = '''(a)\\1'''", src)
    (tmp_path / "js-page-write.toml").write_text(src)
    with pytest.raises(RuleError, match=r"js-page-write.*atom_regex"):
        load_rules(tmp_path, list(ANALYZERS))


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"a.{0,2500}b", r"a.{0,1000}.{0,1000}.{0,500}b"),
        (r"x[\s\S]{1,1500}?y", r"x[\s\S]{1}[\s\S]{0,1000}?[\s\S]{0,499}?y"),
        (r"\d{2000,}", r"\d{1000}\d{1000}\d*"),
        (r"[{]{1,5}", r"[{]{1,5}"),  # a brace in a class is no count
        (r"(ab){0,2000}", None),  # a group has no exact rewrite
    ],
)
def test_large_counts_are_rewritten_exactly(pattern: str, expected: str | None) -> None:
    assert expand_repetitions(pattern) == expected


@pytest.mark.parametrize("length", [0, 999, 1000, 1001, 2500, 2501, 4000])
def test_a_rewritten_count_matches_what_the_original_matches(length: int) -> None:
    original = re.compile(rb"a.{0,2500}b")
    text = b"a" + b"x" * length + b"b"
    translated = compile_translated(r"a.{0,2500}b", rule="count-test")
    REGISTRY.pop("count-test")  # not a shipped pattern: the linearity test is for those
    assert (translated.search(text) is not None) == (original.search(text) is not None)


def test_quadratic_openai_rule_input_is_fast(tmp_path: Path) -> None:
    """Issue 11: 240 KB of `sk-` made the secrets stage run 37 s (three stages, GIL)."""
    stage = SecretsStage(load_patterns(RULES / "secrets.toml"))
    ws = workspace_of(tmp_path / "b", {"dist/a.js": b"sk-" * 80_000})
    start = time.perf_counter()
    result = stage.run(ws)
    assert time.perf_counter() - start < 1.0
    assert result.findings == [] and result.coverage.scanned == ["dist/a.js"]


def test_secrets_still_found_after_a_boundary_character(tmp_path: Path) -> None:
    stage = SecretsStage(load_patterns(RULES / "secrets.toml"))
    key = "AKIA" + "IOSFODNN7EXAMPLE"
    ws = workspace_of(
        tmp_path / "b", {"a.js": f"x='{key}';y='{key}X';z='{key}".encode()}
    )  # followed by a quote: a key; by another key character: not one; at the end: a key
    hits = [f for f in stage.run(ws).findings if f.rule_id == "secret-aws-access-key"]
    assert len(hits) == 2
    assert all(f.evidence == "AKIAIO…(20 characters)" for f in hits)


def _load_every_shipped_pattern() -> None:
    load_patterns(RULES / "secrets.toml")
    compile_rules(load_rules(RULES / "js", list(ANALYZERS)))
    for name in ("retirejs-jsrepository-v4.json", "retirejs-jsrepository-backdoored.json"):
        for d in read_feed(RULES / "advisories" / name).detectors:
            if d.kind != "hash":
                # Refused ones are recorded at import and as a coverage gap (tested below).
                with contextlib.suppress(RegexRefusedError):
                    detector_regex(d)


_CLASS_SAMPLE = {"\\s": " ", "\\S": "a", "\\d": "1", "\\w": "a", "\\W": "-", ".": "a"}


def adversarial_inputs(pattern: str) -> list[str]:
    """Long runs of what the pattern repeats: its literal runs, a member of each class,
    and each literal followed by class members (the shape that made `sk-` quadratic)."""
    literals = re.findall(r"(?<!\\)[A-Za-z0-9_:/=\"'-]{2,}", pattern)[:4]
    samples = {_CLASS_SAMPLE[c] for c in re.findall(r"\\[sSdwW]|\.", pattern)}
    for body in re.findall(r"\[\^?((?:\\.|[^\]\\])+)\]", pattern):
        first = body.lstrip("\\")[:1]
        samples.add(first if first.isalnum() else "a")
    units = [*literals, *samples]
    units += [lit + s * 8 for lit in literals for s in samples]
    return [u * (ADVERSARIAL_BYTES // len(u)) for u in units if u]


def _time_search(compiled: Any, data: str | bytes) -> float:
    start = time.perf_counter()
    for n, _ in enumerate(compiled.finditer(data)):
        if n >= 1000:
            break
    return time.perf_counter() - start


def test_every_shipped_regex_is_linear_on_adversarial_input() -> None:
    _load_every_shipped_pattern()
    assert len(REGISTRY) > 300  # secrets, JS atoms and analyzers, directives, RetireJS
    slow = []
    for rule, regex in sorted(REGISTRY.items()):
        raw = regex.pattern
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        for sample in adversarial_inputs(text):
            data: str | bytes = sample.encode() if isinstance(raw, bytes) else sample
            took = _time_search(regex, data)
            if took > MAX_SECONDS:
                slow.append((rule, sample[:20], round(took, 2)))
    assert not slow, slow


def test_one_megabyte_of_sk_dash_on_the_openai_rule() -> None:
    [openai] = [p for p in load_patterns(RULES / "secrets.toml") if p.id == "secret-openai-key"]
    assert _time_search(openai.regex, b"sk-" * 350_000) < MAX_SECONDS
    # The same pattern on Python's engine: the reason for all of this.
    backtracking = re.compile(openai.regex.pattern)
    assert _time_search(backtracking, b"sk-" * 2_000) > 20 * _time_search(
        openai.regex, b"sk-" * 2_000
    )


def test_retirejs_backreferences_and_lookarounds_are_relaxed_not_dropped() -> None:
    # jQuery's and lodash's patterns use a backreference and a lookbehind: relaxed to a
    # larger language RE2 can run, they still find their library.
    for name in ("retirejs-jsrepository-v4.json", "retirejs-jsrepository-backdoored.json"):
        assert read_feed(RULES / "advisories" / name).warnings == []
    backref = Detector("oldlib", "filecontent", r"oldlib v(§§version§§) (.)x\2;")
    lookbehind = Detector("newlib", "filecontent", r'newlib="(§§version§§)(?<=[0-9]\.[0-9])";')
    assert detector_regex(backref).search(b"/* oldlib v1.2.3 axa; */") is not None
    found = detector_regex(lookbehind).search(b'newlib="4.5";')
    assert found is not None and found.group(1) == b"4.5"


@pytest.mark.parametrize(
    ("pattern", "relaxed"),
    [
        (r"a(?!b)c", "ac"),
        (r"(?<=x)y", "y"),
        (r"(.)=\1", "(.)=(?:.)"),
        (r"(?P<n>a(b))\1c", "(?P<n>a(b))(?:a(?:b))c"),  # copied groups shift no numbers
        (r"[(]\)", None),  # nothing to relax
        (r"(a\1", None),  # malformed
        (r"\2(a)", None),  # a backreference to no group
    ],
)
def test_relax_keeps_every_match(pattern: str, relaxed: str | None) -> None:
    assert relax(pattern) == relaxed


def test_an_unusable_pattern_is_a_coverage_gap_where_its_library_may_be(tmp_path: Path) -> None:
    atomic = Detector("oldlib", "filecontent", r"oldlib v(§§version§§) (?>a)x")
    libs = VendoredLibraries([atomic])
    ws = workspace_of(
        tmp_path / "b", {"a.js": b"/* oldlib v1.2.3 ax */", "b.js": b"var unrelated = 1;"}
    )
    hits, _, gaps = libs.scan_with_gaps(ws)
    assert hits == []
    assert [(g.library, g.path) for g in gaps] == [("oldlib", "a.js")]
    assert unusable_detectors([atomic]) != []
    assert "RE2 cannot run it" in gaps[0].reason


def test_a_common_word_without_the_librarys_name_is_no_coverage_gap(tmp_path: Path) -> None:
    """A pattern whose literal is "prototype" and that RE2 cannot run even relaxed (an
    atomic group): every library has that word, only jQuery's files name jQuery."""
    atomic = Detector("jquery", "filecontent", r'="(§§version§§)",(?>.{50,300})\.fn=.\.prototype=')
    libs = VendoredLibraries([atomic])
    ws = workspace_of(
        tmp_path / "b",
        {"a.js": b"A.prototype.x=1;", "b.js": b"/*! jQuery */ A.prototype.x=1;"},
    )
    _, _, gaps = libs.scan_with_gaps(ws)
    assert [(g.library, g.path) for g in gaps] == [("jquery", "b.js")]
