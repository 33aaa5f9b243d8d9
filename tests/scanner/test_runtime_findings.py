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


def _blocked(url: str) -> dict[str, Any]:
    return {"method": "GET", "url": url, "outcome": "blocked", "body": ""}


def test_the_configured_origin_is_the_host() -> None:
    trace = _trace(_req("https://plugins.acme.example/api/save", "ghtokabccafe"))
    trace["origin"] = "https://plugins.acme.example"
    assert trace_findings(trace, Capabilities()) == []


def test_many_ports_or_hosts_in_one_run_are_a_channel() -> None:
    # The session cookie's characters as ports: each destination carries one.
    ports = [_blocked(f"ws://127.0.0.1:{20000 + c}/") for c in b"ghsabc12"]
    rules = {f.rule_id for f in trace_findings(_trace(requests=ports), Capabilities())}
    assert "runtime-destination-spray" in rules
    few = [_blocked("https://a.evil.example/"), _blocked("https://a.evil.example:8443/")]
    rules = {f.rule_id for f in trace_findings(_trace(requests=few), Capabilities())}
    assert "runtime-destination-spray" not in rules


def test_a_silent_or_tampered_instrumentation_is_high() -> None:
    silent = {**_trace(), "integrity": None}
    (finding,) = [
        f for f in trace_findings(silent, Capabilities()) if "instrumentation" in f.rule_id
    ]
    assert finding.rule_id == "runtime-instrumentation-silenced"
    assert finding.severity is Severity.HIGH
    tampered = {**_trace(), "integrity": {"hooks": 60, "overrides": [], "tampered": ["fetch"]}}
    rules = {f.rule_id for f in trace_findings(tampered, Capabilities())}
    assert "runtime-instrumentation-tampered" in rules
    clean = {**_trace(), "integrity": {"hooks": 60, "overrides": [], "tampered": []}}
    assert trace_findings(clean, Capabilities()) == []
    # A run that broke off for its own reasons is a coverage gap, not tampering.
    broke = {**_trace(), "integrity": None, "error": "TimeoutError"}
    assert not [f for f in trace_findings(broke, Capabilities()) if "instrumentation" in f.rule_id]


def test_a_flooded_trace_is_a_coverage_gap() -> None:
    flooded = {**_trace(), "dropped": {"events": 12000}}
    (finding,) = trace_findings(flooded, Capabilities())
    assert finding.category is Category.COVERAGE and "12000 events" in finding.message


def test_the_host_token_read_counts_even_with_storage_declared() -> None:
    read = {"type": "storage", "op": "get", "area": "local", "key": "auth_token"}
    idb = {"type": "storage", "op": "indexedDB.get", "area": "indexedDB", "key": "host-app/auth"}
    for event in (read, idb):
        rules = {f.rule_id for f in trace_findings(_trace(event), Capabilities(storage=True))}
        assert rules == {"runtime-storage-token-read"}


def test_wrapping_page_primitives_alone_is_recorded_once_and_low() -> None:
    """zone.js and error monitors wrap timers, fetch and listeners; wrapping is not sending."""
    names = ["fetch", "XMLHttpRequest.send", "setTimeout", "addEventListener"]
    events = [{"type": "override", "name": n} for n in names]
    found = [
        f for f in trace_findings(_trace(*events), Capabilities()) if f.severity > Severity.INFO
    ]
    assert [(f.rule_id, f.severity) for f in found] == [("runtime-global-override", Severity.LOW)]


def test_a_wrapper_that_sends_page_data_away_is_still_exfiltration() -> None:
    token = CANARIES[next(iter(CANARIES))]
    trace = _trace(
        {"type": "override", "name": "XMLHttpRequest.send"},
        _req("https://collect.evil.example/c", token),
    )
    found = trace_findings(trace, Capabilities())
    assert any(f.category is Category.EXFILTRATION and f.severity >= Severity.HIGH for f in found)


def test_widgets_in_the_body_are_low_and_injected_frames_high() -> None:
    tooltip = {"type": "dom-outside", "kind": "childList", "target": "body",
               "added": '<div class="tip" style="position:absolute">3 items</div>'}  # fmt: skip
    frame = {"type": "dom-outside", "kind": "childList", "target": "body",
             "added": '<div><iframe src="http://x.example/"></iframe></div>'}  # fmt: skip
    banner = {"type": "dom-outside", "kind": "childList", "target": "body",
              "added": '<div><a href="https://deals.example">90% off</a></div>'}  # fmt: skip

    def severities(event: dict[str, Any]) -> list[Severity]:
        return [
            f.severity
            for f in trace_findings(_trace(event), Capabilities())
            if f.rule_id == "runtime-dom-outside-container"
        ]

    assert severities(tooltip) == [Severity.LOW]
    assert severities(frame) == [Severity.HIGH]
    assert severities(banner) == [Severity.HIGH]


def test_a_page_wide_key_listener_alone_is_low() -> None:
    event = {"type": "page-listener", "event": "keydown"}
    found = [f for f in trace_findings(_trace(event), Capabilities()) if f.severity > Severity.INFO]
    assert [(f.rule_id, f.severity) for f in found] == [
        ("runtime-page-input-listener", Severity.LOW)
    ]


def _burn(cpu: float, page_cpu: float | None, *events: dict[str, Any]) -> list[str]:
    trace = _trace(*events)
    trace["cpu_seconds"] = cpu
    trace["page_cpu_seconds"] = page_cpu
    caps = Capabilities(workers=True)
    return [
        f"{f.severity.name} {f.message}"
        for f in trace_findings(trace, caps)
        if f.rule_id == "runtime-cpu-burn"
    ]


def test_cpu_burn_is_judged_on_the_page_own_main_thread() -> None:
    # The browser was busy with the other role's page and its own work: not this plugin.
    assert _burn(4.0, 0.4) == []
    assert _burn(4.0, 3.2) == [
        "MEDIUM kept its page busy for 3.2 CPU-seconds while it ran (as user)"
    ]
    # Far more than both roles usually take counts even when the page itself was quiet
    # (the GPU process can be made to compute), and an unreadable page figure falls back.
    assert [m.split(" kept")[0] for m in _burn(7.0, 0.4)] == ["MEDIUM"]
    assert [m.split(" kept")[0] for m in _burn(3.5, None)] == ["MEDIUM"]
    # With a worker the browser's total decides, as a miner's worker may live elsewhere.
    worker = {"type": "worker", "url": "blob:x"}
    assert [m.split(" kept")[0] for m in _burn(3.5, 0.4, worker)] == ["HIGH"]


def test_timers_busy_for_a_share_of_their_simulated_time_are_a_burn() -> None:
    def burn(share: float) -> list[str]:
        trace = _trace()
        trace.update(cpu_seconds=0.5, page_cpu_seconds=0.3, timer_busy_share=share)
        return [
            f.message for f in trace_findings(trace, Capabilities()) if f.severity > Severity.INFO
        ]

    # A poll re-rendering every few seconds: a fraction of one per cent.
    assert burn(0.004) == []
    # A throttled miner's ticks: a third of the time.
    assert burn(0.35) == [
        "its timers kept its page busy 35% of the time they stood for, as hours were run"
        " in a moment (a visitor's page would burn that) (as user)"
    ]
