"""One detonation: a fresh browser context, the host page, mount, provoke, unmount, trace."""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import mimetypes
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Page, Route
from playwright.sync_api import Error as PlaywrightError

HOST = "https://registry.gatehouse-sandbox.test"
INSTRUMENT = importlib.resources.files("sandbox").joinpath("instrument.js").read_text("utf-8")
# The clock jumps this far in steps after mounting, so payloads that wait fire in the scan.
CLOCK_STEPS_MS = (1_000, 10_000, 60_000, 600_000, 3_600_000, 6 * 3_600_000)


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


@dataclass
class Trace:
    role: str
    canaries: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    mount_error: str | None = None
    error: str | None = None
    screenshot: bytes | None = None
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "events": self.events,
            "requests": self.requests,
            "console_errors": self.console_errors,
            "mount_error": self.mount_error,
            "error": self.error,
            "duration_ms": round(self.duration_ms, 1),
        }


def host_page(req: DetonationRequest) -> str:
    styles = "".join(
        f'<link rel="stylesheet" href="/bundle/{s}" data-gatehouse-host>' for s in req.styles
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Registry</title>{styles}</head>
<body>
<header data-gatehouse-host><nav><a href="/">Home</a> <input id="host-search" name="q" placeholder="Search"></nav></header>
<form id="host-login" data-gatehouse-host onsubmit="return false">
  <input name="email" type="email" autocomplete="email"><input name="password" type="password">
  <button type="submit">Sign in</button>
</form>
<form id="host-checkout" data-gatehouse-host onsubmit="return false">
  <input name="cardnumber" autocomplete="cc-number"><input name="cvc" autocomplete="cc-csc">
  <button type="submit">Pay</button>
</form>
<main><div id="plugin-root"></div></main>
<script data-gatehouse-host>document.documentElement.setAttribute("data-gh-ready", "1")</script>
<script src="/bundle/{req.entry}" data-gatehouse-host></script>
</body></html>"""


class Detonator:
    """Runs detonations on a browser it is handed; owns nothing across scans."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser

    def run(self, req: DetonationRequest) -> Trace:
        canaries = Canaries.fresh()
        trace = Trace(req.role, canaries.values())
        start = time.monotonic()
        context = self.browser.new_context(
            service_workers="block",
            viewport={"width": 1024, "height": 768},
            accept_downloads=False,
        )
        try:
            self._prepare(context, req, canaries, trace)
            page = context.new_page()
            page.set_default_timeout(max(1000.0, req.time_limit_s * 1000 / 4))
            page.on(
                "console",
                lambda m: trace.console_errors.append(m.text[:500]) if m.type == "error" else None,
            )
            page.on(
                "pageerror",
                lambda e: trace.events.append({"type": "error", "message": str(e)[:500]}),
            )
            page.clock.install()
            page.goto(HOST + "/", wait_until="load")
            self._mount(page, req, canaries, trace)
            if trace.mount_error is None:
                _provoke(page, canaries, deadline=start + req.time_limit_s)
                page.evaluate("window.__ghCheckOverrides && window.__ghCheckOverrides()")
                trace.screenshot = page.screenshot(type="png", caret="initial", animations="allow")
                self._unmount(page, trace)
        except PlaywrightError as exc:
            trace.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        finally:
            with contextlib.suppress(PlaywrightError):
                context.close()
            trace.duration_ms = (time.monotonic() - start) * 1000
        return trace

    def _prepare(
        self, context: BrowserContext, req: DetonationRequest, c: Canaries, trace: Trace
    ) -> None:
        context.add_cookies([{"name": "session", "value": c.cookie, "url": HOST + "/"}])
        context.expose_binding(
            "__ghReport", lambda _source, payload: trace.events.append(_decode(payload))
        )
        # Storage the host app already has: a plugin that reads it did not write it.
        context.add_init_script(
            f"try {{ localStorage.setItem('auth_token', {json.dumps(c.storage)}); }} catch (e) {{}}"
        )
        context.add_init_script(INSTRUMENT)
        context.route("**/*", lambda route: _route(route, req, trace))
        context.route_web_socket("**/*", lambda ws: _websocket(ws, trace))

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


def _provoke(page: Page, c: Canaries, deadline: float) -> None:
    """Act like a user: type into every field, press keys, click, submit, let time pass."""
    fill = """([c]) => {
      const root = document.getElementById("plugin-root");
      const pick = (el) => {
        if (root && root.contains(el)) return /mail/.test(el.type + el.name) ? c.inside + "@example.com" : c.inside;
        const hint = ((el.name || "") + " " + (el.type || "") + " " + (el.autocomplete || "") + " " + (el.id || "")).toLowerCase();
        if (/pass/.test(hint)) return c.password;
        if (/card|cc-number/.test(hint)) return c.card;
        if (/cvc|cvv|csc/.test(hint)) return "123";
        if (/mail/.test(hint)) return c.email;
        return "hello " + c.email;
      };
      const fields = Array.from(document.querySelectorAll("input:not([type=hidden]):not([type=checkbox]):not([type=radio]), textarea"));
      for (const el of fields) {
        el.focus();
        el.value = pick(el);
        el.dispatchEvent(new InputEvent("input", {bubbles: true, data: el.value}));
        el.dispatchEvent(new Event("change", {bubbles: true}));
        el.dispatchEvent(new KeyboardEvent("keydown", {bubbles: true, key: "a"}));
        el.dispatchEvent(new KeyboardEvent("keyup", {bubbles: true, key: "a"}));
      }
      return fields.length;
    }"""
    page.evaluate(fill, [c.values()])
    # Keystrokes into the host's password field, in one round trip (a real keypress costs
    # one each): a keylogger listening on the page sees every key of the canary.
    page.evaluate(
        """([text]) => {
      const el = document.querySelector("#host-login input[name=password]");
      if (!el) return;
      el.focus();
      el.value = "";
      for (const ch of text + "\\n") {
        const key = ch === "\\n" ? "Enter" : ch;
        for (const type of ["keydown", "keypress"]) el.dispatchEvent(new KeyboardEvent(type, {key, bubbles: true}));
        if (key !== "Enter") { el.value += ch; el.dispatchEvent(new InputEvent("input", {data: ch, bubbles: true})); }
        el.dispatchEvent(new KeyboardEvent("keyup", {key, bubbles: true}));
      }
    }""",
        [c.password],
    )
    for button in page.locator("#plugin-root button, #plugin-root [role=button]").all()[:10]:
        if time.monotonic() > deadline:
            break
        try:
            button.click(timeout=1000, no_wait_after=True)
        except PlaywrightError:
            continue
    page.evaluate("""() => { for (const f of document.querySelectorAll("form")) {
        try { f.dispatchEvent(new SubmitEvent("submit", {bubbles: true, cancelable: true})); } catch (e) {} } }""")
    for step in CLOCK_STEPS_MS:
        if time.monotonic() > deadline:
            break
        page.clock.fast_forward(step)


def _route(route: Route, req: DetonationRequest, trace: Trace) -> None:
    """Nothing leaves the machine: the host and the bundle are served here, the rest recorded."""
    request = route.request
    url = request.url
    body = request.post_data_buffer or b""
    entry = {
        "method": request.method,
        "url": url[:2000],
        "resource": request.resource_type,
        "headers": {k: v[:200] for k, v in list(request.headers.items())[:20]},
        "body_size": len(body),
        "body": body[:2000].decode("utf-8", "replace"),
    }
    if url.startswith(HOST + "/"):
        path = urlsplit(url).path
        if path == "/":
            route.fulfill(
                status=200,
                content_type="text/html",
                body=host_page(req),
                headers={"Content-Security-Policy-Report-Only": req.csp},
            )
            return
        if path.startswith("/bundle/"):
            rel = path.removeprefix("/bundle/")
            if rel in req.files:
                ctype = mimetypes.guess_type(rel)[0] or "application/octet-stream"
                route.fulfill(
                    status=200,
                    content_type=ctype,
                    body=(req.root / PurePosixPath(rel)).read_bytes(),
                )
                return
        entry["outcome"] = "host"
        trace.requests.append(entry)
        route.fulfill(status=200, content_type="application/json", body="{}")
        return
    allowed = _allowed(url, req.allowed_origins)
    entry["outcome"] = "declared" if allowed else "blocked"
    entry["navigation"] = request.is_navigation_request()
    trace.requests.append(entry)
    if allowed:
        route.fulfill(status=204, body="")
    else:
        route.abort("blockedbyclient")


def _websocket(ws: Any, trace: Trace) -> None:
    entry: dict[str, Any] = {
        "method": "WEBSOCKET",
        "url": ws.url[:2000],
        "outcome": "blocked",
        "messages": [],
    }
    trace.requests.append(entry)
    ws.on_message(
        lambda m: entry["messages"].append(str(m)[:2000]) if len(entry["messages"]) < 50 else None
    )


def _allowed(url: str, origins: tuple[str, ...]) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    secure = parts.scheme in ("https", "wss")
    for origin in origins:
        o = urlsplit(origin)
        if (o.scheme in ("https", "wss")) != secure:
            continue
        ohost = (o.hostname or "").lower()
        if ohost.startswith("*."):
            if host.endswith(ohost[1:]) and host != ohost[2:]:
                return True
        elif host == ohost and (o.port or None) == (parts.port or None):
            return True
    return False


def _decode(payload: Any) -> dict[str, Any]:
    try:
        data = json.loads(payload) if isinstance(payload, str) else {}
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}
