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
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

from playwright.sync_api import Browser, BrowserContext, CDPSession, Page
from playwright.sync_api import Error as PlaywrightError

from sandbox.canaries import carried
from sandbox.proxy import ProxyRequest, ProxyResponse, RecordingProxy

DEFAULT_ORIGIN = "https://app.example.com"
_INSTRUMENT = importlib.resources.files("sandbox").joinpath("instrument.js").read_text("utf-8")
# The clock jumps this far in steps after mounting, so payloads that wait fire in the scan.
CLOCK_STEPS_MS = (1_000, 10_000, 60_000, 600_000, 3_600_000, 6 * 3_600_000)
MAX_EVENTS = 5000  # a page that floods the report channel is cut off, and that is recorded
MAX_REQUESTS = 2000
STREAM_BYTES = 2 * 1024 * 1024  # per origin, searched as one text for split secrets
RAW_BINDING = "__ghRaw"
OBJECT_GROUP = "gatehouse-channel"
FIELDS_TO_FILL = 12
# Each move waits for the page's next frame (about 16 ms): a dozen, across the page, is a
# person's gesture; thirty cost half a second per role.
MOUSE_MOVES = 12
# How long a clock jump may take to run its timers (it stops catching up after 0.5 s).
JUMP_WAIT_S = 5.0
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


def instrumentation(nonce: str, channel: str = "gh-channel") -> str:
    return _INSTRUMENT.replace("__GH_NONCE__", nonce).replace("__GH_CHANNEL__", channel)


FIRST_NAMES = ("Maria", "James", "Priya", "Lukas", "Sofia", "Daniel", "Amara", "Chen")
LAST_NAMES = ("Garcia", "Smith", "Patel", "Müller", "Rossi", "Okafor", "Nguyen", "Larsen")


def _card_number() -> str:
    """A random 16-digit Visa-shaped number with a valid Luhn check digit."""
    digits = [4] + [secrets.randbelow(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def _keyboard(name: str) -> str:
    """``name`` in letters a US keyboard types as key presses: a character such as "ü" is
    inserted as text with no keydown, so a keylogger would see a password without it and
    the canary it sends would not be recognised."""
    folded = unicodedata.normalize("NFKD", name.lower()).encode("ascii", "ignore").decode()
    return folded or "user"


@dataclass(frozen=True)
class Canaries:
    """Fake but realistic secrets and a made-up user, new for every detonation (a fixed
    one would tell a plugin it is being watched); finding one in a request proves where
    the data went."""

    cookie: str
    storage: str
    token: str
    password: str
    card: str
    email: str
    inside: str  # typed into the plugin's own fields: its to send to its declared origins
    user_id: str = "u-1001"
    user_name: str = "Alex Doe"

    @classmethod
    def fresh(cls) -> Canaries:
        first = FIRST_NAMES[secrets.randbelow(len(FIRST_NAMES))]
        last = LAST_NAMES[secrets.randbelow(len(LAST_NAMES))]
        return cls(
            cookie=secrets.token_urlsafe(24),
            storage="eyJ" + secrets.token_urlsafe(30),
            token=secrets.token_urlsafe(32),
            password=f"{_keyboard(last)[:4].title()}{secrets.randbelow(9000) + 1000}!{secrets.token_hex(2)}",
            card=_card_number(),
            email=f"{first.lower()}.{last.lower()}{secrets.randbelow(90) + 10}@example.com",
            inside=f"Notes {secrets.token_hex(5)}",
            user_id=f"u-{secrets.randbelow(900000) + 100000}",
            user_name=f"{first} {last}",
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
    # CPU the browser spent while the plugin ran (after mounting): workers' too, and the
    # other role's and the browser's own (the roles run side by side on one browser).
    cpu_seconds: float = 0.0
    # CPU of this page's own main thread over the same time, from DevTools (the sandboxed
    # renderer cannot read its process's total); None when it could not be read.
    page_cpu_seconds: float | None = None
    # Left out of that: the repeats clock jumps ran (an interval's hours of ticks run in a
    # moment), how many, and the main-thread seconds credited to them (no more of each
    # than a light duty cycle of the simulated time it stood for).
    timer_repeats: int = 0
    timer_repeat_seconds: float = 0.0
    # The busiest line of timers' work over the simulated time its repeats stood for.
    timer_busy_share: float = 0.0
    # Origins whose received bytes, put together, hold canaries (names): split secrets.
    flows: dict[str, list[str]] = field(default_factory=dict)

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
            "flows": self.flows,
            "cpu_seconds": self.cpu_seconds,
            "page_cpu_seconds": self.page_cpu_seconds,
            "timer_repeats": self.timer_repeats,
            "timer_repeat_seconds": self.timer_repeat_seconds,
            "timer_busy_share": self.timer_busy_share,
            "duration_ms": round(self.duration_ms, 1),
        }


def host_page(req: DetonationRequest) -> str:
    """The registry's page around the plugin; every bundle-given string is escaped."""

    def src(rel: str) -> str:
        return html.escape("/bundle/" + quote(rel, safe="/"), quote=True)

    styles = "".join(f'<link rel="stylesheet" href="{src(s)}">' for s in req.styles)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Plugins</title>{styles}</head>
<body>
<header><nav><a href="/">Home</a> <input id="host-search" name="q" placeholder="Search"></nav></header>
<form id="host-login" action="/login" method="post">
  <input name="email" type="email" autocomplete="email"><input name="password" type="password" autocomplete="current-password">
  <button type="submit">Sign in</button>
</form>
<form id="host-checkout" action="/checkout" method="post">
  <input name="cardnumber" autocomplete="cc-number"><input name="cvc" autocomplete="cc-csc">
  <button type="submit">Pay</button>
</form>
<main><div id="plugin-root"></div></main>
<script src="{src(req.entry)}"></script>
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

    def cpu_seconds(self) -> float:
        """CPU time used so far by the browser's processes."""


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
            self._instrument(context, recorder, canaries)
            page = context.new_page()
            session = self._raw_binding(context, page, recorder)
            self._detonate(page, session, req, canaries, trace, recorder, start)
        except PlaywrightError as exc:
            trace.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        finally:
            if context is not None:
                with contextlib.suppress(PlaywrightError):
                    context.close()
            proxy.close()
            recorder.finish()
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
            viewport={"width": 1280, "height": 800},
            timezone_id="America/New_York",
            accept_downloads=False,
            user_agent=ordinary_user_agent(self.browser.version),
            locale="en-US",
        )
        context.add_cookies([{"name": "session", "value": c.cookie, "url": req.origin + "/"}])
        return context

    def _instrument(self, context: BrowserContext, recorder: _Exchange, c: Canaries) -> None:
        """For every page of the context, popups included: a window the plugin opens is
        instrumented like the host page (its natives would otherwise be unhooked)."""
        # Data the host app already has: a plugin that reads it did not write it.
        context.add_init_script(_seed_storage(c.storage))
        context.add_init_script(instrumentation(recorder.nonce, recorder.channel))
        context.on("page", lambda p: recorder.add_event({"type": "window", "url": p.url[:500]}))

    def _raw_binding(self, context: BrowserContext, page: Page, recorder: _Exchange) -> CDPSession:
        """The main page reports through a raw DevTools binding (native, nothing of the
        page's involved); other pages fall back to Playwright's."""
        session = context.new_cdp_session(page)
        session.on("Runtime.bindingCalled", lambda e: recorder.event(e.get("payload")))
        session.send("Runtime.enable")
        session.send("Performance.enable")
        session.send("Runtime.addBinding", {"name": RAW_BINDING})
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
        channel = Channel(
            session, recorder.nonce, recorder.channel, lambda s: page.wait_for_timeout(s * 1000)
        )
        if not self._mount(channel, req, c, trace):
            return
        cpu_before = self.sockets.cpu_seconds()
        page_cpu_before = _renderer_cpu(session)
        mounted_look = channel.check()  # what it shows at first
        if not _provoke(page, channel, c, deadline=start + req.time_limit_s):
            # The page kept us busy past the deadline: later clock steps never ran.
            recorder.add_event({"type": "provocation-cut", "message": "ran out of time"})
        trace.cpu_seconds = round(
            max(0.0, self.sockets.cpu_seconds() - cpu_before - channel.catch_up_cpu), 2
        )
        page_cpu_after = _renderer_cpu(session)
        if page_cpu_before is not None and page_cpu_after is not None:
            spent = page_cpu_after - page_cpu_before - channel.catch_up_cpu
            trace.page_cpu_seconds = round(max(0.0, spent), 2)
        trace.timer_repeats = channel.repeats
        trace.timer_repeat_seconds = round(channel.catch_up_cpu, 3)
        trace.timer_busy_share = round(channel.busiest, 3)
        if channel.postponed:
            recorder.add_event({"type": "timers-postponed", "count": channel.postponed})
        before = channel.check()
        trace.screenshot = page.screenshot(type="png", caret="initial", animations="allow")
        self._unmount(channel, trace)
        # Once more after unmount: hooks replaced on the way out count as well.
        after = channel.check()
        trace.integrity = _merge_checks(mounted_look, before, after)
        # Counted last: a token read in a timer the unmount left behind counts too.
        calls = channel.call("tokens")
        if isinstance(calls, int) and calls > 0:
            recorder.add_event({"type": "token-read", "count": calls})

    def _mount(self, channel: Channel, req: DetonationRequest, c: Canaries, trace: Trace) -> bool:
        """Mount the plugin through the instrumentation, which keeps its unmount function
        and counts its calls of ``ctx.auth.getToken()`` out of the plugin's reach."""
        person = {"id": c.user_id, "name": c.user_name, "email": c.email}
        answer = channel.call(
            "mount", name=req.global_name, role=req.role, token=c.token, person=person
        )
        if not isinstance(answer, dict):
            trace.mount_error = "the sandbox's instrumentation did not answer the mount"
            return False
        error = answer.get("error")
        trace.mount_error = str(error)[:500] if error else None
        return not error

    def _unmount(self, channel: Channel, trace: Trace) -> None:
        """Run the plugin's unmount function, then let a minute pass."""
        answer = channel.call("unmount")
        if isinstance(answer, dict) and answer.get("error"):
            trace.events.append({"type": "unmount-error", "message": str(answer["error"])[:300]})
        channel.clock(60_000)


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


def _renderer_cpu(session: CDPSession) -> float | None:
    """CPU seconds of the page's main thread so far (read outside the page's reach)."""
    try:
        metrics = session.send("Performance.getMetrics")["metrics"]
        return next(float(m["value"]) for m in metrics if m["name"] == "ThreadTime")
    except (PlaywrightError, KeyError, StopIteration, TypeError, ValueError):
        return None


class Channel:
    """Commands to the instrumentation, outside the page's reach: a listener of its, for an
    event type only we know, found and called through the DevTools protocol (no attribute,
    global or event the page could see, call or stop)."""

    def __init__(
        self,
        session: CDPSession,
        nonce: str,
        event_type: str,
        wait: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session = session
        self.nonce = nonce
        self.event_type = event_type
        # How to pause between asking whether a jump is done: the page's own wait, which
        # lets another detonation on this thread go on meanwhile.
        self.wait = wait
        # Main-thread time of the repeats jumps ran (an interval's hours of ticks in a
        # moment): the simulation's doing, not a burn the plugin causes on a visitor's page.
        self.catch_up_cpu = 0.0
        self.repeats = 0
        self.postponed = 0  # firings moved past a jump's end by its bounds
        # The busiest line of timers' share of the simulated time its repeats stood for.
        self.busiest = 0.0

    def check(self) -> dict[str, Any] | None:
        """The hooks still ours, and what the plugin shows; None if nothing answered."""
        result = self.call("check")
        if not isinstance(result, dict):
            return None
        return {
            "hooks": result.get("hooks"),
            "overrides": _names(result.get("overrides")),
            "tampered": _names(result.get("tampered")),
            "passwords": int(result.get("passwords") or 0),
            "overlay": bool(result.get("overlay")),
        }

    def clock(self, ms: int) -> bool:
        """Jump simulated time; True once the instrumentation moved it and its timers ran
        (a jump yields to the page between interval ticks, so it may take a while)."""
        cpu_before = _renderer_cpu(self.session)
        answer = self.call("clock", ms=ms)
        give_up = time.monotonic() + JUMP_WAIT_S
        while isinstance(answer, dict) and not answer.get("done"):
            if time.monotonic() > give_up:
                return False
            try:
                self.wait(0.005)
            except PlaywrightError:
                return False  # the page went away mid-jump
            answer = self.call("jumped")
        if not isinstance(answer, dict):
            return False
        cpu_after = _renderer_cpu(self.session)
        with contextlib.suppress(TypeError, ValueError):
            credit = max(0.0, float(answer.get("catchUpMs") or 0)) / 1000
            # Never more than the main thread really spent over the jump: the page's clock
            # counts waits (a synchronous request, the machine's load) as work too.
            if cpu_before is not None and cpu_after is not None:
                credit = min(credit, max(0.0, cpu_after - cpu_before))
            else:
                credit = 0.0
            self.catch_up_cpu += credit
            self.repeats += max(0, int(answer.get("repeats") or 0))
            self.postponed += max(0, int(answer.get("postponed") or 0))
            self.busiest = max(self.busiest, float(answer.get("busiest") or 0))
        return True

    def call(self, op: str, **args: Any) -> Any:
        """A command (mount, unmount, fields, tokens, ...): its answer, or None."""
        try:
            return self._call_in_group(op, args)
        finally:
            # The remote objects of a call are dropped with it, or they would pile up.
            with contextlib.suppress(PlaywrightError):
                self.session.send("Runtime.releaseObjectGroup", {"objectGroup": OBJECT_GROUP})

    def _call_in_group(self, op: str, args: dict[str, Any]) -> Any:
        try:
            # An object group makes DevTools return the listeners' functions themselves.
            window = self.session.send(
                "Runtime.evaluate", {"expression": "window", "objectGroup": OBJECT_GROUP}
            )["result"]
            listeners = self.session.send(
                "DOMDebugger.getEventListeners", {"objectId": window["objectId"]}
            )["listeners"]
            handler = next(
                (entry["handler"] for entry in listeners if entry.get("type") == self.event_type),
                None,
            )
            if handler is None or "objectId" not in handler:
                return None
            answer = self.session.send(
                "Runtime.callFunctionOn",
                {
                    "functionDeclaration": 'function (command) { "use strict"; return this(command); }',
                    "objectId": handler["objectId"],
                    "arguments": [{"value": {"nonce": self.nonce, "op": op, **args}}],
                    "returnByValue": True,
                },
            )
        except (PlaywrightError, KeyError, TypeError):
            return None
        if answer.get("exceptionDetails"):
            return None
        return answer.get("result", {}).get("value")


def _merge_checks(*checks: dict[str, Any] | None) -> dict[str, Any] | None:
    """Both integrity checks answered, with what either found; None if one did not."""
    if any(c is None for c in checks):
        return None
    merged: dict[str, Any] = {"hooks": 0, "overrides": [], "tampered": []}
    merged |= {"passwords": 0, "overlay": False}
    for check in checks:
        assert check is not None
        merged["hooks"] = max(merged["hooks"], check.get("hooks") or 0)
        merged["passwords"] = max(merged["passwords"], check.get("passwords") or 0)
        merged["overlay"] = merged["overlay"] or bool(check.get("overlay"))
        for key in ("overrides", "tampered"):
            merged[key] = sorted(set(merged[key]) | set(check.get(key) or []))
    return merged


def _rows(answer: Any) -> list[tuple[int, str]]:
    """The (field index, value) pairs of a fields answer; anything else in it is dropped."""
    if not isinstance(answer, list):
        return []
    rows = [row for row in answer if isinstance(row, list) and len(row) == 2]
    return [(i, v) for i, v in rows if isinstance(i, int) and isinstance(v, str)]


def _provoke(page: Page, channel: Channel, c: Canaries, deadline: float) -> bool:
    """Act like a user, with trusted input: type into fields, press keys, click, submit,
    and let time pass. False when the deadline cut it short."""
    fields = _rows(channel.call("fields", c=c.values(), max=FIELDS_TO_FILL, sel=TEXT_FIELDS))
    fields_locator = page.locator(TEXT_FIELDS)
    for index, value in fields:
        if time.monotonic() > deadline:
            return False
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
    # A person moves the mouse and scrolls before clicking: some payloads wait for that.
    with contextlib.suppress(PlaywrightError):
        for i in range(MOUSE_MOVES):
            page.mouse.move(40 + i * 71 % 900, 60 + i * 47 % 600)
        page.mouse.wheel(0, 240)
    for button in page.locator("#plugin-root button, #plugin-root [role=button]").all()[:10]:
        if time.monotonic() > deadline:
            break
        with contextlib.suppress(PlaywrightError):
            button.click(timeout=1000, no_wait_after=True)
    for step in CLOCK_STEPS_MS:
        if time.monotonic() > deadline:
            return False
        if not channel.clock(step):
            return False  # the instrumentation did not answer: time did not move
    return True


class _Exchange:
    """One detonation's side of the proxy: serves the host and the bundle, records the rest.

    Called from proxy threads and the browser thread alike, so every write is locked.
    """

    def __init__(self, req: DetonationRequest, trace: Trace) -> None:
        self.req = req
        self.trace = trace
        self.nonce = secrets.token_hex(16)
        # The event type of the command channel: any name a page could use, but unguessable.
        self.channel = "x" + secrets.token_hex(12)
        self.files = frozenset(req.files)
        self.host = urlsplit(req.origin).netloc.lower()
        self._lock = threading.Lock()
        self._streams: dict[str, list[str]] = {}

    # --- the report channel ------------------------------------------------------

    def event(self, payload: Any) -> None:
        try:
            data = json.loads(payload) if isinstance(payload, str) else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return
        self.add_event(data)

    def add_event(self, data: dict[str, Any]) -> None:
        with self._lock:
            if len(self.trace.events) >= MAX_EVENTS:
                self.trace.dropped["events"] = self.trace.dropped.get("events", 0) + 1
                return
            self.trace.events.append(data)

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
        found = carried(data, self.trace.canaries)
        self._sent(request.url, data)
        with self._lock:
            entry = next((r for r in reversed(self.trace.requests) if r["id"] == id(request)), None)
            if entry is None:
                return
            entry["carried"] = sorted(set(entry.get("carried", [])) | set(found))
            if len(entry["messages"]) < 50:
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
        # Searched whole, here: the trace keeps only samples of what was sent.
        headers = "\n".join(f"{k}: {v}" for k, v in request.headers)
        body = request.body.decode("utf-8", "replace")
        whole = f"{url}\n{headers}\n{body}"
        if outcome != "host":
            self._sent(url, f"{urlsplit(url).path}?{urlsplit(url).query}\n{body}")
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
            "carried": carried(whole, self.trace.canaries),
        }
        self._append(entry)

    def _sent(self, url: str, payload: str) -> None:
        """Everything sent to one origin, in order, so a secret split over requests is
        found in the whole (bounded per origin)."""
        origin = _origin_of(url)
        with self._lock:
            kept = self._streams.setdefault(origin, [])
            if sum(len(s) for s in kept) < STREAM_BYTES:
                kept.append(payload[:STREAM_BYTES])

    def finish(self) -> None:
        """Search what each origin received, put together (after the detonation)."""
        with self._lock:
            streams = {o: "".join(parts) for o, parts in self._streams.items()}
        for origin, text in streams.items():
            found = carried(text, self.trace.canaries)
            if found:
                self.trace.flows[origin] = found

    def _append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if len(self.trace.requests) >= MAX_REQUESTS:
                self.trace.dropped["requests"] = self.trace.dropped.get("requests", 0) + 1
                return
            self.trace.requests.append(entry)


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


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
