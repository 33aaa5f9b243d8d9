"""Trace interpretation, pure: canaries tell where data went; declared behaviour is quiet."""

from __future__ import annotations

import base64
from typing import Any

from scanner.csp import build_csp, sri
from scanner.findings import Category, Severity
from scanner.manifest import Capabilities, Origin, validate_manifest
from scanner.runtime import trace_findings
from tests.conftest import manifest

CANARIES = {
    "cookie": "ghsessabc123c0ffee",
    "storage": "ghstoreabcbeef",
    "token": "ghtokabccafe",
    "password": "Hunter2!abc",
    "card": "4111111111111111",
    "email": "alex.abc@example.com",
    "inside": "noteabcplugin",
}
DECLARED = Capabilities(network=(Origin("https", "api.acme.example", None),))


def _trace(*events: dict[str, Any], requests: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "role": "user",
        "canaries": CANARIES,
        "events": list(events),
        "requests": requests or [],
    }


def _req(url: str, body: str = "") -> dict[str, Any]:
    return {"type": "request", "api": "fetch", "url": url, "body": body}


def test_cookie_sent_anywhere_is_critical_exfiltration() -> None:
    findings = trace_findings(
        _trace(_req("https://api.acme.example/x?c=" + CANARIES["cookie"])), DECLARED
    )
    assert any(
        f.category is Category.EXFILTRATION and f.severity is Severity.CRITICAL for f in findings
    )


def test_base64_encoded_token_is_still_recognised() -> None:
    body = base64.b64encode(CANARIES["token"].encode()).decode()
    findings = trace_findings(_trace(_req("https://x.evil.example/", body)), Capabilities())
    assert any("API token" in f.message for f in findings)


def test_plugin_form_data_to_its_declared_origin_is_fine() -> None:
    findings = trace_findings(
        _trace(_req("https://api.acme.example/save", CANARIES["inside"])), DECLARED
    )
    assert findings == []


def test_plugin_form_data_to_an_undeclared_origin_is_high() -> None:
    findings = trace_findings(_trace(_req("https://x.evil.example/", CANARIES["inside"])), DECLARED)
    assert [(f.category, f.severity) for f in findings] == [(Category.EXFILTRATION, Severity.HIGH)]


def test_token_to_the_host_api_is_the_shell_contract() -> None:
    findings = trace_findings(_trace(_req("/api/items", CANARIES["token"])), Capabilities())
    assert findings == []


def test_undeclared_request_without_data() -> None:
    findings = trace_findings(_trace(_req("https://cdn.other.example/a.json")), DECLARED)
    assert [f.rule_id for f in findings] == ["runtime-undeclared-request"]


def test_page_behaviour_and_declared_dom() -> None:
    events = (
        {"type": "dom-outside", "kind": "childList", "target": "body", "added": "<div>"},
        {"type": "page-listener", "event": "keydown", "target": "document"},
    )
    rules = {f.rule_id for f in trace_findings(_trace(*events), Capabilities())}
    assert rules == {"runtime-dom-outside-container", "runtime-page-input-listener"}
    assert trace_findings(_trace(*events), Capabilities(dom="document")) == []


def test_mount_failure_is_a_coverage_gap() -> None:
    trace = {**_trace(), "mount_error": "window.X.mount is not a function"}
    assert [f.category for f in trace_findings(trace, Capabilities())] == [Category.COVERAGE]


def test_csp_follows_the_declarations() -> None:
    paths = frozenset({"plugin.json", "dist/bundle.js"})
    plain = validate_manifest(manifest(), paths).manifest
    assert plain is not None
    csp = build_csp(plain, {"dist/bundle.js": sri(b"x")})
    assert (
        "connect-src 'self';" in csp and "'unsafe-eval'" not in csp and "worker-src 'none'" in csp
    )
    assert f"'{sri(b'x')}'" in csp and "webrtc 'block'" in csp
    rich = validate_manifest(
        manifest(
            capabilities={"network": ["https://api.acme.example"], "eval": True, "workers": True}
        ),
        paths,
    ).manifest
    assert rich is not None
    csp = build_csp(rich, {})
    assert "connect-src 'self' https://api.acme.example" in csp and "'unsafe-eval'" in csp
    assert sri(b"x").startswith("sha384-")


def test_webrtc_attempt_is_reported() -> None:
    findings = trace_findings(_trace({"type": "webrtc", "config": "{}"}), Capabilities())
    assert [f.rule_id for f in findings] == ["runtime-webrtc"]


def test_head_styles_are_not_an_escape_and_attribute_changes_are_medium() -> None:
    style = {"type": "dom-outside", "kind": "style", "target": "head", "added": "<style>"}
    assert trace_findings(_trace(style), Capabilities()) == []
    attr = {"type": "dom-outside", "kind": "attributes", "target": "html", "attribute": "class"}
    [finding] = trace_findings(_trace(attr), Capabilities())
    assert finding.severity is Severity.MEDIUM and finding.category is Category.DOM_ESCAPE
