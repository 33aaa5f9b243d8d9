"""One detonation: a fresh browser context, the host page, mount, provoke, unmount, trace.

Everything the context sends goes to a recording proxy of its own (sandbox.proxy), which
serves the host page and the bundle's files and records every other request, from the
page, its workers and its sockets alike. The page looks like the registry's own: its
configured origin, an ordinary user agent, no webdriver flag, and input that arrives as
trusted events through the DevTools protocol.
"""

from __future__ import annotations

import contextlib
import html
import importlib.resources
import json
import mimetypes
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

from playwright.sync_api import Browser, BrowserContext, CDPSession, Page
from playwright.sync_api import Error as PlaywrightError

from sandbox.proxy import ProxyRequest, ProxyResponse, RecordingProxy

DEFAULT_ORIGIN = "https://app.example.com"
_INSTRUMENT = importlib.resources.files("sandbox").joinpath("instrument.js").read_text("utf-8")
# The clock jumps this far in steps after mounting, so payloads that wait fire in the scan.
CLOCK_STEPS_MS = (1_000, 10_000, 60_000, 600_000, 3_600_000, 6 * 3_600_000)
MAX_EVENTS = 5000  # a page that floods the report channel is cut off, and that is recorded
MAX_REQUESTS = 2000
RAW_BINDING, PLAYWRIGHT_BINDING = "__ghRaw", "__ghReport"
CHECK_ATTRIBUTE = "data-gh-check"
FIELDS_TO_FILL = 12
TEXT_FIELDS = "input:not([type=hidden]):not([type=checkbox]):not([type=radio]), textarea"
# Types the module scripts and styles of a bundle need; the rest come from mimetypes.
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".cjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}


def instrumentation(nonce: str) -> str:
    return _INSTRUMENT.replace("__GH_NONCE__", nonce)


@dataclass(frozen=True)
class Canaries:
    """Fake but realistic secrets; finding one in a request proves where data went."""

    cookie: str
    storage: str
    token: str
    password: str
    card: str
    email: str
    inside: str  # typed into the plugin's own fields: its to send to its declared origins

    @classmethod
    def fresh(cls) -> Canaries:
        tag = secrets.token_hex(4)
        return cls(
            cookie=f"ghsess{tag}c0ffee",
            storage=f"ghstore{tag}beef",
            token=f"ghtok{tag}cafe",
            password=f"Hunter2!{tag}",
            card="4111111111111111",
            email=f"alex.{tag}@example.com",
            inside=f"note{tag}plugin",
        )

    def values(self) -> dict[str, str]:
        return {
            "cookie": self.cookie,
            "storage": self.storage,
            "token": self.token,
            "password": self.password,
            "card": self.card,
            "email": self.email,
            "inside": self.inside,
        }


@dataclass(frozen=True)
class DetonationRequest:
    root: Path  # the unpacked bundle, read-only
    files: tuple[str, ...]
    entry: str
    styles: tuple[str, ...]
    global_name: str
    allowed_origins: tuple[str, ...]  # scheme://host[:port], wildcards as *.example.com
    csp: str
    role: str  # "user" | "admin"
    time_limit_s: float = 20.0
    # The origin the host page is served from: the registry's own host name.
    origin: str = DEFAULT_ORIGIN


@dataclass
class Trace:
    role: str
    canaries: dict[str, str]
    origin: str = DEFAULT_ORIGIN
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    mount_error: str | None = None
    error: str | None = None
    screenshot: bytes | None = None
    duration_ms: float = 0.0
    # What the integrity check found: None when no authentic check report came back.
    integrity: dict[str, Any] | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    refused_connections: list[str] = field(default_factory=list)
    # The browser went over its memory cap during this detonation and was stopped.
    over_memory: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "origin": self.origin,
            "events": self.events,
            "requests": self.requests,
            "console_errors": self.console_errors,
            "mount_error": self.mount_error,
            "error": self.error,
            "integrity": self.integrity,
            "dropped": self.dropped,
            "refused_connections": self.refused_connections,
            "over_memory": self.over_memory,
            "duration_ms": round(self.duration_ms, 1),
        }


def host_page(req: DetonationRequest) -> str:
    """The registry's page around the plugin; every bundle-given string is escaped."""

    def src(rel: str) -> str:
        return html.escape("/bundle/" + quote(rel, safe="/"), quote=True)

    styles = "".join(
        f'<link rel="stylesheet" href="{src(s)}" data-gatehouse-host>' for s in req.styles
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Plugins</title>{styles}</head>
<body>
<header data-gatehouse-host><nav><a href="/">Home</a> <input id="host-search" name="q" placeholder="Search"></nav></header>
<form id="host-login" data-gatehouse-host action="/login" method="post">
  <input name="email" type="email" autocomplete="email"><input name="password" type="password" autocomplete="current-password">
  <button type="submit">Sign in</button>
</form>
<form id="host-checkout" data-gatehouse-host action="/checkout" method="post">
  <input name="cardnumber" autocomplete="cc-number"><input name="cvc" autocomplete="cc-csc">
  <button type="submit">Pay</button>
</form>
<main data-gatehouse-host><div id="plugin-root"></div></main>
<script src="{src(req.entry)}" data-gatehouse-host data-gatehouse-entry></script>
</body></html>"""


def ordinary_user_agent(browser_version: str) -> str:
    """What this Chromium would say in a window (reduced UA form), without "Headless"."""
    major = browser_version.split(".")[0]
    return (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
        f" Chrome/{major}.0.0.0 Safari/537.36"
    )


class ListenerFactory(Protocol):
    def listen(self) -> Any:
        """A listening socket the browser can reach (inside its network namespace)."""


class Detonator:
    """Runs detonations on a browser it is handed; owns nothing across scans."""

    def __init__(self, browser: Browser, sockets: ListenerFactory) -> None:
        self.browser = browser
        self.sockets = sockets

    def run(self, req: DetonationRequest) -> Trace:
        canaries = Canaries.fresh()
        trace = Trace(req.role, canaries.values(), origin=req.origin)
        start = time.monotonic()
        recorder = _Exchange(req, trace)
        proxy = RecordingProxy(self.sockets.listen(), recorder)
        context: BrowserContext | None = None
        try:
            context = self._context(req, proxy, canaries)
            page = context.new_page()
            session = self._instrument(context, page, recorder, canaries)
            self._detonate(page, session, req, canaries, trace, recorder, start)
        except PlaywrightError as exc:
            trace.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        finally:
            if context is not None:
                with contextlib.suppress(PlaywrightError):
                    context.close()
            proxy.close()
            trace.duration_ms = (time.monotonic() - start) * 1000
        return trace

    def _context(
        self, req: DetonationRequest, proxy: RecordingProxy, c: Canaries
    ) -> BrowserContext:
        context = self.browser.new_context(
            # Loopback goes through the proxy too: nothing is reached around it.
            proxy={"server": proxy.server, "bypass": "<-loopback>"},
            ignore_https_errors=True,
            service_workers="block",
            viewport={"width": 1024, "height": 768},
            accept_downloads=False,
            user_agent=ordinary_user_agent(self.browser.version),
            locale="en-US",
        )
        context.add_cookies([{"name": "session", "value": c.cookie, "url": req.origin + "/"}])
        return context

    def _instrument(
        self, context: BrowserContext, page: Page, recorder: _Exchange, c: Canaries
    ) -> CDPSession:
        # The fake clock first, so our hooks wrap its timers (and not the other way round).
        page.clock.install()
        context.expose_binding(PLAYWRIGHT_BINDING, lambda _source, payload: recorder.event(payload))
        session = context.new_cdp_session(page)
        session.on("Runtime.bindingCalled", lambda e: recorder.event(e.get("payload")))
        session.send("Runtime.enable")
        session.send("Runtime.addBinding", {"name": RAW_BINDING})
        # Data the host app already has: a plugin that reads it did not write it.
        page.add_init_script(_seed_storage(c.storage))
        page.add_init_script(instrumentation(recorder.nonce))
        return session

    def _detonate(
        self,
        page: Page,
        session: CDPSession,
        req: DetonationRequest,
        c: Canaries,
        trace: Trace,
        recorder: _Exchange,
        start: float,
    ) -> None:
        page.set_default_timeout(max(1000.0, req.time_limit_s * 1000 / 4))
        page.on(
            "console",
            lambda m: trace.console_errors.append(m.text[:500]) if m.type == "error" else None,
        )
        page.on(
            "pageerror", lambda e: recorder.add_event({"type": "error", "message": str(e)[:500]})
        )
        page.goto(req.origin + "/", wait_until="load")
        self._mount(page, req, c, trace)
        if trace.mount_error is not None:
            return
        _provoke(page, c, deadline=start + req.time_limit_s)
        trace.integrity = _check_integrity(page, session, recorder)
        trace.screenshot = page.screenshot(type="png", caret="initial", animations="allow")
        self._unmount(page, trace)

    def _mount(self, page: Page, req: DetonationRequest, c: Canaries, trace: Trace) -> None:
        script = """([name, role, token]) => {
          const plugin = window[name];
          if (!plugin || typeof plugin.mount !== "function") return "window." + name + ".mount is not a function";
          const user = {id: "u-1001", name: "Alex Doe", email: "alex@example.com", role};
          const ctx = {
            auth: {getUser: () => user, getToken: () => token},
            navigate: (path) => {},
            notifications: {show: () => {}, error: () => {}},
            api: {fetch: (path, opts) => fetch("/api" + path, opts)},
          };
          try {
            const unmount = plugin.mount(document.getElementById("plugin-root"), ctx);
            window.__ghUnmount = typeof unmount === "function" ? unmount : null;
          } catch (e) { return "mount threw: " + (e && (e.stack || e.message) || e); }
          return null;
        }"""
        result = page.evaluate(script, [req.global_name, req.role, c.token])
        trace.mount_error = str(result)[:500] if result else None

    def _unmount(self, page: Page, trace: Trace) -> None:
        error = page.evaluate("""() => { try { if (window.__ghUnmount) window.__ghUnmount(); return null; }
                                 catch (e) { return String(e && e.message || e); } }""")
        if error:
            trace.events.append({"type": "unmount-error", "message": str(error)[:300]})
        page.clock.fast_forward(60_000)


def _seed_storage(value: str) -> str:
    literal = json.dumps(value)
    return (
        "(() => { try { localStorage.setItem('auth_token', " + literal + "); } catch (e) {}"
        " try { const r = indexedDB.open('host-app', 1);"
        " r.onupgradeneeded = () => r.result.createObjectStore('auth');"
        " r.onsuccess = () => { try { const tx = r.result.transaction('auth', 'readwrite');"
        " tx.objectStore('auth').put("
        + literal
        + ", 'token'); } catch (e) {} }; } catch (e) {} })();"
    )


def _check_integrity(page: Page, session: CDPSession, recorder: _Exchange) -> dict[str, Any] | None:
    """Ask the instrumentation to check its hooks, through a DOM change made by the DevTools
    protocol (page script cannot stop it); only a report with our nonce counts."""
    challenge = secrets.token_hex(8)
    try:
        root = session.send("DOM.getDocument", {"depth": 1})["root"]
        element = next((n for n in root.get("children", []) if n.get("nodeType") == 1), None)
        if element is None:
            return None
        session.send(
            "DOM.setAttributeValue",
            {"nodeId": element["nodeId"], "name": CHECK_ATTRIBUTE, "value": challenge},
        )
    except PlaywrightError:
        return None
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        found = recorder.check(challenge)
        if found is not None:
            return found
        page.wait_for_timeout(25)  # lets Playwright deliver the binding's calls
    return None


def _provoke(page: Page, c: Canaries, deadline: float) -> None:
    """Act like a user, with trusted input: type into fields, press keys, click, submit,
    and let time pass."""
    fields = page.evaluate(
        """([c, max, sel]) => {
      const root = document.getElementById("plugin-root");
      const pick = (el) => {
        if (root && root.contains(el)) return /mail/.test(el.type + el.name) ? c.inside + "@example.com" : c.inside;
        const hint = ((el.name || "") + " " + (el.type || "") + " " + (el.autocomplete || "") + " " + (el.id || "")).toLowerCase();
        if (/pass/.test(hint)) return null;  // typed key by key below
        if (/card|cc-number/.test(hint)) return c.card;
        if (/cvc|cvv|csc/.test(hint)) return "123";
        if (/mail/.test(hint)) return c.email;
        return "hello " + c.email;
      };
      const all = Array.from(document.querySelectorAll(sel));
      const out = [];
      all.forEach((el, i) => { const v = pick(el); if (v !== null) out.push([i, v]); });
      return out.slice(0, max);
    }""",
        [c.values(), FIELDS_TO_FILL, TEXT_FIELDS],
    )
    fields_locator = page.locator(TEXT_FIELDS)
    for index, value in fields:
        if time.monotonic() > deadline:
            return
        with contextlib.suppress(PlaywrightError):
            fields_locator.nth(int(index)).focus(timeout=500)
            page.keyboard.insert_text(str(value))
    # Real key presses into the host's password field, then Enter: a keylogger on the page
    # sees every key, and the form is submitted the way a person submits it.
    with contextlib.suppress(PlaywrightError):
        page.focus("#host-login input[name=password]", timeout=500)
        page.keyboard.type(c.password)
        page.keyboard.press("Enter")
    with contextlib.suppress(PlaywrightError):
        page.focus("#host-checkout input[name=cvc]", timeout=500)
        page.keyboard.press("Enter")
    for button in page.locator("#plugin-root button, #plugin-root [role=button]").all()[:10]:
        if time.monotonic() > deadline:
            break
        with contextlib.suppress(PlaywrightError):
            button.click(timeout=1000, no_wait_after=True)
    for step in CLOCK_STEPS_MS:
        if time.monotonic() > deadline:
            break
        page.clock.fast_forward(step)


class _Exchange:
    """One detonation's side of the proxy: serves the host and the bundle, records the rest.

    Called from proxy threads and the browser thread alike, so every write is locked.
    """

    def __init__(self, req: DetonationRequest, trace: Trace) -> None:
        self.req = req
        self.trace = trace
        self.nonce = secrets.token_hex(16)
        self.files = frozenset(req.files)
        self.host = urlsplit(req.origin).netloc.lower()
        self._lock = threading.Lock()
        self._checks: dict[str, dict[str, Any]] = {}

    # --- the report channel ------------------------------------------------------

    def event(self, payload: Any) -> None:
        try:
            data = json.loads(payload) if isinstance(payload, str) else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return
        if data.get("type") == "check":
            if data.get("nonce") == self.nonce:  # only our instrumentation knows it
                with self._lock:
                    self._checks[str(data.get("challenge"))] = {
                        "hooks": data.get("hooks"),
                        "overrides": _names(data.get("overrides")),
                        "tampered": _names(data.get("tampered")),
                    }
            return
        self.add_event(data)

    def add_event(self, data: dict[str, Any]) -> None:
        with self._lock:
            if len(self.trace.events) >= MAX_EVENTS:
                self.trace.dropped["events"] = self.trace.dropped.get("events", 0) + 1
                return
            self.trace.events.append(data)

    def check(self, challenge: str) -> dict[str, Any] | None:
        with self._lock:
            return self._checks.get(challenge)

    # --- the proxy's Exchange protocol ----------------------------------------------

    def respond(self, request: ProxyRequest) -> ProxyResponse | None:
        parts = urlsplit(request.url)
        if parts.netloc.lower() == self.host and parts.scheme == urlsplit(self.req.origin).scheme:
            served = self._serve(parts.path)
            if served is not None:
                return served
            self._record(request, "host")
            return ProxyResponse(200, b"{}", [("Content-Type", "application/json")])
        declared = _allowed(request.url, self.req.allowed_origins)
        self._record(request, "declared" if declared else "blocked")
        if request.websocket:
            return ProxyResponse(101)  # accepted so the page sends, and we record, its messages
        return ProxyResponse(204) if declared else None

    def message(self, request: ProxyRequest, data: str) -> None:
        with self._lock:
            entry = next((r for r in reversed(self.trace.requests) if r["id"] == id(request)), None)
            if entry is not None and len(entry["messages"]) < 50:
                entry["messages"].append(data[:2000])

    def tunnel(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        scheme = "http" if port == "80" else "https"
        url = f"{scheme}://{host}" + ("" if port in ("80", "443") else f":{port}") + "/"
        if host.lower() == self.host:
            return
        entry = {"id": 0, "method": "CONNECT", "url": url, "resource": "", "headers": {}}
        entry |= {"body_size": 0, "body": "", "messages": [], "navigation": False}
        entry["outcome"] = "declared" if _allowed(url, self.req.allowed_origins) else "blocked"
        self._append(entry)

    def refused(self, why: str) -> None:
        with self._lock:
            if len(self.trace.refused_connections) < 100:
                self.trace.refused_connections.append(why)

    # --- helpers -------------------------------------------------------------------

    def _serve(self, path: str) -> ProxyResponse | None:
        if path == "/":
            headers = [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Security-Policy-Report-Only", self.req.csp),
            ]
            return ProxyResponse(200, host_page(self.req).encode(), headers)
        if path.startswith("/bundle/"):
            rel = unquote(path.removeprefix("/bundle/"))
            if rel in self.files:
                suffix = PurePosixPath(rel).suffix.lower()
                ctype = CONTENT_TYPES.get(suffix) or mimetypes.guess_type(rel)[0]
                ctype = ctype or "application/octet-stream"
                body = (self.req.root / PurePosixPath(rel)).read_bytes()
                return ProxyResponse(200, body, [("Content-Type", ctype)])
        return None

    def _record(self, request: ProxyRequest, outcome: str) -> None:
        mode = request.header("sec-fetch-mode")
        url = request.url
        if request.websocket:
            url = re.sub(r"^http", "ws", url)
        entry: dict[str, Any] = {
            "id": id(request),
            "method": "WEBSOCKET" if request.websocket else request.method,
            "url": url[:2000],
            "resource": request.header("sec-fetch-dest"),
            "headers": {k: v[:200] for k, v in request.headers[:20]},
            "body_size": request.body_size,
            "body": request.body[:2000].decode("utf-8", "replace"),
            "messages": [],
            "outcome": outcome,
            "navigation": mode == "navigate",
        }
        self._append(entry)

    def _append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if len(self.trace.requests) >= MAX_REQUESTS:
                self.trace.dropped["requests"] = self.trace.dropped.get("requests", 0) + 1
                return
            self.trace.requests.append(entry)


def _names(value: Any) -> list[str]:
    return [n for n in str(value or "").split(",") if n]


_PORT_RE = re.compile(r":(\d{1,5})$")


def _allowed(url: str, origins: tuple[str, ...]) -> bool:
    """Whether ``url`` is on one of the manifest's origins (``*`` is any origin)."""
    secure, host, port = _endpoint(url)
    for origin in origins:
        if origin == "*":
            return True
        o_secure, o_host, o_port = _endpoint(origin)
        if o_secure != secure:
            continue
        if o_host.startswith("*."):
            if host.endswith(o_host[1:]) and host != o_host[2:]:
                return True
        elif host == o_host and port == o_port:
            return True
    return False


def _endpoint(url: str) -> tuple[bool, str, int]:
    """(secure, host, port) with default ports filled in; a bad port never matches."""
    parts = urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    netloc = parts.netloc.rsplit("@", 1)[-1].lower()
    match = _PORT_RE.search(netloc)
    host = netloc[: match.start()] if match else netloc
    port = int(match.group(1)) if match else (443 if secure else 80)
    return secure, host.strip("[]"), port
