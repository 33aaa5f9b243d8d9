"""What a detonation trace means: findings from observed behaviour and canary data flow."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from sandbox.canaries import carried
from scanner.findings import Category, Finding, Severity, truncate
from scanner.js.page import INPUT_EVENTS
from scanner.manifest import Capabilities
from scanner.regex import compile_linear

STAGE = "runtime"
# Traces from before the origin was configurable name no origin: this was theirs.
LEGACY_ORIGIN = "https://registry.gatehouse-sandbox.test"
# Destinations per detonation past which the destinations themselves can carry data.
SPRAY_PORTS = 8
SPRAY_HOSTS = 25
# Where a canary shows up, what the plugin must have read to send it.
CANARY_SOURCE = {
    "cookie": ("the session cookie", Category.CREDENTIAL_ACCESS),
    "storage": ("the host's stored auth token", Category.CREDENTIAL_ACCESS),
    "token": ("the user's API token", Category.CREDENTIAL_ACCESS),
    "password": ("a typed password", Category.CREDENTIAL_ACCESS),
    "card": ("a typed card number", Category.CREDENTIAL_ACCESS),
    "email": ("text typed into the host page", Category.CREDENTIAL_ACCESS),
    "inside": ("text typed into the plugin", Category.EXFILTRATION),
}
# Requests for code (Sec-Fetch-Dest), to somewhere other than the host.
CODE_DESTINATIONS = frozenset(
    {"script", "worker", "sharedworker", "serviceworker", "iframe", "frame", "object", "embed"}
)
CODE_DIRECTIVES = ("script-src", "worker-src", "frame-src", "child-src", "object-src")
CODE_SOURCES = ("http", "data", "blob", "//")
# CPU the browser may spend while a plugin runs (after mounting) before it is a burn.
CPU_BURN_SECONDS = 3.0
BROWSER_BURN_SECONDS = 2 * CPU_BURN_SECONDS
# A line of timers busy this share of the simulated time its ticks stood for.
TIMER_BURN_SHARE = 0.2
MINER_HINT_RE = compile_linear(
    r"stratum|cryptonight|coinhive|monero|xmr|hashrate", rule="runtime:miner_hint", ignore_case=True
)


def _carried(text: str, canaries: dict[str, str], known: Iterable[str] = ()) -> list[str]:
    """Canaries in ``text`` (sandbox.canaries: every encoding it knows), with those the
    detonation already found in the whole request (``known``)."""
    found = carried(text, canaries)
    return [name for name in canaries if name in found or name in set(known)]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else url[:80]


def _f(
    rule: str, cat: Category, sev: Severity, msg: str, evidence: str | None = None, role: str = ""
) -> Finding:
    where = f" (as {role})" if role else ""
    return Finding(
        STAGE,
        rule,
        cat,
        sev,
        msg + where,
        path=None,
        evidence=truncate(evidence) if evidence else None,
    )


def host_origin(trace: dict[str, Any]) -> str:
    return str(trace.get("origin") or LEGACY_ORIGIN).rstrip("/")


def trace_findings(trace: dict[str, Any], caps: Capabilities) -> list[Finding]:
    role = str(trace.get("role", ""))
    canaries: dict[str, str] = trace.get("canaries", {})
    out: list[Finding] = []
    out.extend(_exfiltration(trace, canaries, caps, role))
    out.extend(_destinations(trace, role))
    out.extend(_instrumentation(trace, role))
    out.extend(_host_data(trace, role))
    out.extend(_reads(trace, caps, role))
    out.extend(_page(trace, caps, role))
    out.extend(_code(trace, caps, role))
    if trace.get("mount_error"):
        out.append(
            _f(
                "runtime-mount-failed",
                Category.COVERAGE,
                Severity.MEDIUM,
                "the plugin failed to mount, so its behaviour after mounting was not observed",
                trace["mount_error"],
                role,
            )
        )
    return dedupe(out)


def _outbound(trace: dict[str, Any]) -> Iterator[tuple[str, str, str, list[str]]]:
    """(api, url, payload, canaries found in the whole request) for every request the
    plugin tried, from the hooks and from the recording proxy."""
    for e in trace.get("events", []):
        if e.get("type") == "request":
            yield (
                str(e.get("api")),
                str(e.get("url", "")),
                f"{e.get('url', '')} {e.get('body', '')}",
                [],
            )
        elif e.get("type") == "element-url":
            url = str(e.get("url", ""))
            yield f"{e.get('tag')}.{e.get('prop')}", url, url, []
    for r in trace.get("requests", []):
        if r.get("outcome") in ("blocked", "declared"):
            payload = f"{r.get('url', '')} {r.get('body', '')} {' '.join(r.get('messages', []))}"
            yield str(r.get("method")), str(r.get("url", "")), payload, list(r.get("carried", []))
    # Secrets spread over several requests to one origin, found in their sum.
    for origin, names in (trace.get("flows") or {}).items():
        yield "several requests", f"{origin}/", "", list(names)


def _exfiltration(
    trace: dict[str, Any], canaries: dict[str, str], caps: Capabilities, role: str
) -> Iterable[Finding]:
    for _api, url, payload, known in _outbound(trace):
        absolute = url.startswith(("http://", "https://", "ws://", "wss://", "//"))
        target = "the host" if not absolute or _is_host(url, trace) else _origin(url)
        stolen = _carried(payload, canaries, known)
        declared = target != "the host" and caps.allows_origin(
            url if "://" in url else "https:" + url
        )
        if stolen == ["inside"] and (target == "the host" or declared):
            stolen = []  # the plugin's own form data to its own declared backend
        if target == "the host":
            stolen = [s for s in stolen if s not in ("token", "inside")]  # the shell API's business
        if stolen:
            what = ", ".join(CANARY_SOURCE[s][0] for s in stolen)
            yield _f(
                "runtime-exfiltration",
                Category.EXFILTRATION,
                Severity.HIGH if stolen == ["inside"] else Severity.CRITICAL,
                f"sent {what} to {target}",
                payload,
                role,
            )
            for s in stolen:
                if CANARY_SOURCE[s][1] is Category.CREDENTIAL_ACCESS:
                    yield _f(
                        "runtime-credential-read",
                        Category.CREDENTIAL_ACCESS,
                        Severity.HIGH,
                        f"read {CANARY_SOURCE[s][0]} and sent it away",
                        None,
                        role,
                    )
        elif target != "the host" and not declared:
            yield _f(
                "runtime-undeclared-request",
                Category.UNDECLARED_CAPABILITY,
                Severity.HIGH,
                f"tried to contact {target}, an origin the manifest does not declare",
                url,
                role,
            )
        if MINER_HINT_RE.search(payload):
            yield _f(
                "runtime-mining-traffic",
                Category.CRYPTOMINING,
                Severity.CRITICAL,
                f"talks to a mining pool ({target})",
                payload,
                role,
            )


def _is_host(url: str, trace: dict[str, Any]) -> bool:
    origin = host_origin(trace)
    return url == origin or url.startswith(origin + "/")


def _destinations(trace: dict[str, Any], role: str) -> Iterable[Finding]:
    """Many destinations in one run: the host names or ports themselves can carry data."""
    ports: dict[str, set[int]] = {}
    for r in trace.get("requests", []):
        if r.get("outcome") != "blocked":
            continue
        parts = urlsplit(str(r.get("url", "")))
        try:
            port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        except ValueError:
            continue
        ports.setdefault((parts.hostname or "").lower(), set()).add(port)
    widest = max(ports.items(), key=lambda kv: len(kv[1]), default=("", set()))
    if len(widest[1]) >= SPRAY_PORTS or len(ports) >= SPRAY_HOSTS:
        yield _f(
            "runtime-destination-spray",
            Category.EXFILTRATION,
            Severity.HIGH,
            f"tried {len(ports)} hosts and {len(widest[1])} ports of {widest[0] or 'one host'}"
            " in one run (data can travel in the destinations themselves)",
            None,
            role,
        )


def _instrumentation(trace: dict[str, Any], role: str) -> Iterable[Finding]:
    """The sandbox's own hooks: removed, silenced, or flooded by the page."""
    ran = not trace.get("mount_error") and not trace.get("error")
    integrity = trace.get("integrity")
    if ran and "integrity" in trace and integrity is None:
        yield _f(
            "runtime-instrumentation-silenced",
            Category.OBFUSCATION,
            Severity.HIGH,
            "the sandbox's instrumentation did not answer its integrity check:"
            " the page stopped or replaced it",
            None,
            role,
        )
    elif integrity and integrity.get("tampered"):
        names = ", ".join(integrity["tampered"][:8])
        yield _f(
            "runtime-instrumentation-tampered",
            Category.OBFUSCATION,
            Severity.HIGH,
            f"removed the sandbox's hooks on {names} (a way to hide from analysis)",
            None,
            role,
        )
    if trace.get("over_memory"):
        yield _f(
            "runtime-memory-exhaustion",
            Category.COVERAGE,
            Severity.MEDIUM,
            "drove the browser over its memory cap; it was stopped before the run ended",
            None,
            role,
        )
    dropped = trace.get("dropped") or {}
    if dropped:
        yield _f(
            "runtime-trace-flooded",
            Category.COVERAGE,
            Severity.MEDIUM,
            "sent more behaviour than the trace keeps"
            f" ({', '.join(f'{v} {k}' for k, v in sorted(dropped.items()))} not recorded)",
            None,
            role,
        )
    refused = trace.get("refused_connections") or []
    if refused:
        yield _f(
            "runtime-unreadable-connection",
            Category.COVERAGE,
            Severity.MEDIUM,
            f"opened {len(refused)} connection(s) the recording proxy could not read",
            refused[0],
            role,
        )


# Where the host app keeps its token (seeded by the detonation before the plugin runs).
HOST_TOKEN_KEYS = {"auth_token", "host-app/auth"}
READ_OPS = {"getItem", "get", "key"}


def _host_data(trace: dict[str, Any], role: str) -> Iterable[Finding]:
    """What belongs to the host and its user: typed fields, the API token, the page's
    traffic (a service worker), and whether the run saw everything."""
    events = trace.get("events", [])
    fields = [e for e in events if e.get("type") == "field-read"]
    if fields:
        names = ", ".join(sorted({str(e.get("field")) for e in fields})[:5])
        yield _f(
            "runtime-host-field-read",
            Category.CREDENTIAL_ACCESS,
            Severity.HIGH,
            f"read what the user typed into the host page's fields ({names})",
            None,
            role,
        )
    token = any(e.get("type") == "token-read" for e in events)
    away = sorted(
        {
            _origin(str(r.get("url", "")))
            for r in trace.get("requests", [])
            if r.get("outcome") in ("blocked", "declared") and r.get("method") != "CONNECT"
        }
    )
    if token and away:
        yield _f(
            "runtime-token-then-request",
            Category.CREDENTIAL_ACCESS,
            Severity.MEDIUM,
            "asked the shell for the user's API token and contacted "
            f"{', '.join(away[:3])}: the token may have gone with it in a form not recognised",
            None,
            role,
        )
    shown = trace.get("integrity") or {}
    if shown.get("passwords") and shown.get("overlay"):
        yield _f(
            "runtime-fake-login-overlay",
            Category.CREDENTIAL_ACCESS,
            Severity.HIGH,
            "covered most of the page with its own layer asking for a password",
            None,
            role,
        )
    elif shown.get("passwords"):
        yield _f(
            "runtime-password-prompt",
            Category.CREDENTIAL_ACCESS,
            Severity.MEDIUM,
            "asks the user for a password (the host, not a plugin, signs users in)",
            None,
            role,
        )
    if any(e.get("type") == "service-worker" for e in events):
        yield _f(
            "runtime-service-worker",
            Category.DOM_ESCAPE,
            Severity.HIGH,
            "registered a service worker (it outlives the plugin and sees the host's traffic)",
            None,
            role,
        )
    if any(e.get("type") == "provocation-cut" for e in events):
        yield _f(
            "runtime-provocation-cut",
            Category.COVERAGE,
            Severity.MEDIUM,
            "kept the browser too busy for the whole run: later simulated time never came,"
            " so payloads waiting for it were not seen",
            None,
            role,
        )


def _reads_host_token(e: dict[str, Any]) -> bool:
    op = str(e.get("op", ""))
    return e.get("key") in HOST_TOKEN_KEYS and (op in READ_OPS or op.startswith("indexedDB."))


def _reads(trace: dict[str, Any], caps: Capabilities, role: str) -> Iterable[Finding]:
    events = trace.get("events", [])
    if not caps.cookies and any(e.get("type") == "cookie-read" for e in events):
        yield _f(
            "runtime-cookie-read",
            Category.CREDENTIAL_ACCESS,
            Severity.HIGH,
            "read document.cookie without declaring cookies",
            None,
            role,
        )
    ops = [e for e in events if e.get("type") == "storage"]
    token_reads = [e for e in ops if _reads_host_token(e)]
    # The host's token is the host's: declaring storage covers the plugin's own keys only.
    if token_reads:
        yield _f(
            "runtime-storage-token-read",
            Category.CREDENTIAL_ACCESS,
            Severity.HIGH,
            f"read the host's auth token from storage ({token_reads[0].get('op')})",
            None,
            role,
        )
    elif ops and not caps.storage:
        yield _f(
            "runtime-undeclared-storage",
            Category.UNDECLARED_CAPABILITY,
            Severity.MEDIUM,
            f"used web storage without declaring it ({ops[0].get('op')})",
            None,
            role,
        )
    clip = [e for e in events if e.get("type") == "clipboard"]
    if any(str(e.get("op", "")).startswith(("read", "execCommand:paste")) for e in clip):
        yield _f(
            "runtime-clipboard-read",
            Category.CREDENTIAL_ACCESS,
            Severity.HIGH,
            "read the clipboard",
            None,
            role,
        )
    elif clip and not caps.clipboard:
        yield _f(
            "runtime-undeclared-clipboard",
            Category.UNDECLARED_CAPABILITY,
            Severity.MEDIUM,
            "wrote to the clipboard without declaring it",
            None,
            role,
        )


_ACTIVE_HTML_RE = compile_linear(
    r"<(iframe|frame|script|form|input|object|embed|textarea|select)\b"
    r"|<a\b[^>]*\bhref\s*=\s*['\"]?\s*(https?:)?//",
    rule="runtime:active_html",
    ignore_case=True,
)


def _page(trace: dict[str, Any], caps: Capabilities, role: str) -> Iterable[Finding]:
    events = trace.get("events", [])
    if caps.dom != "document":
        outside = [e for e in events if e.get("type") == "dom-outside"]
        inserted = [e for e in outside if e.get("kind") == "childList"]
        changed = [e for e in outside if e.get("kind") in ("attributes", "characterData")]
        if inserted:
            # Tooltips, toasts, modals and measuring nodes go to <body>: capability. Frames,
            # scripts, forms, fields and links away are how injection and overlays work.
            active = [
                e
                for e in inserted
                if _ACTIVE_HTML_RE.search(str(e.get("added", "")).replace("\x00", ""))
            ]
            first = (active or inserted)[0]
            yield _f(
                "runtime-dom-outside-container",
                Category.DOM_ESCAPE,
                Severity.HIGH if active else Severity.LOW,
                f"put {'frames, scripts, fields or links away' if active else 'elements'} into the"
                f" page outside its container ({len(inserted)} insertions, first into"
                f" {first.get('target')})",
                str(first.get("added")),
                role,
            )
        elif changed:
            first = changed[0]
            yield _f(
                "runtime-dom-outside-container",
                Category.DOM_ESCAPE,
                Severity.MEDIUM,
                f"changed {first.get('target')} outside its container"
                f" ({first.get('attribute') or 'text'})",
                None,
                role,
            )
        # Styles added to the head (kind "style") are how widgets ship their CSS: not an escape.
        listeners = sorted(
            {
                str(e.get("event"))
                for e in events
                if e.get("type") == "page-listener" and e.get("event") in INPUT_EVENTS
            }
        )
        if listeners:
            # Keyboard shortcuts and "Escape closes the menu" listen here too; a keylogger
            # is a listener whose keys leave the page, which the canary findings judge.
            yield _f(
                "runtime-page-input-listener",
                Category.DOM_ESCAPE,
                Severity.LOW,
                f"listens to {', '.join(listeners)} on the whole page",
                None,
                role,
            )
    overrides = sorted({str(e.get("name")) for e in events if e.get("type") == "override"})
    if overrides:
        # Polyfills, zone.js and error monitors wrap these and forward. What a skimmer's
        # wrapper does with what it sees (send it away) is what the exfiltration and
        # request findings judge; the wrap alone is recorded, once, for a reviewer.
        yield _f(
            "runtime-global-override",
            Category.DOM_ESCAPE,
            Severity.LOW,
            f"replaced the page's {', '.join(overrides[:6])}"
            + (f" and {len(overrides) - 6} more" if len(overrides) > 6 else ""),
            None,
            role,
        )
    if any(e.get("type") == "webrtc" for e in events):
        yield _f(
            "runtime-webrtc",
            Category.UNDECLARED_CAPABILITY,
            Severity.HIGH,
            "tried to open a WebRTC connection (a way around network controls)",
            None,
            role,
        )
    nav = [e for e in events if e.get("type") == "navigation"]
    nav += [
        {"api": "navigation", "url": r.get("url")}
        for r in trace.get("requests", [])
        if r.get("navigation") and r.get("outcome") == "blocked"
    ]
    if nav and not caps.navigation:
        yield _f(
            "runtime-undeclared-navigation",
            Category.UNDECLARED_CAPABILITY,
            Severity.MEDIUM,
            f"navigated or opened windows ({nav[0].get('api')} {nav[0].get('url', '')})",
            None,
            role,
        )


def _code(trace: dict[str, Any], caps: Capabilities, role: str) -> Iterable[Finding]:
    events = trace.get("events", [])
    dynamic = [
        e
        for e in events
        if e.get("type") in ("eval", "function", "string-timer")
        and not re.fullmatch(r"\s*return this;?\s*", str(e.get("code", "")))
    ]
    if dynamic and not caps.eval:
        yield _f(
            "runtime-dynamic-code",
            Category.DYNAMIC_CODE,
            Severity.MEDIUM,
            f"built code at run time ({dynamic[0].get('type')})",
            str(dynamic[0].get("code")),
            role,
        )
    remote = [
        (str(e.get("tag")), str(e.get("url", "")))
        for e in events
        if e.get("type") == "element-url"
        and e.get("tag") in ("script", "iframe")
        and str(e.get("url", "")).startswith(("http", "//"))
        and not _is_host(str(e.get("url", "")), trace)
    ]
    # Whatever the API (import(), a parsed fragment, a worker), the browser asked for code.
    remote += [
        (str(r.get("resource")), str(r.get("url", "")))
        for r in trace.get("requests", [])
        if r.get("resource") in CODE_DESTINATIONS and r.get("outcome") in ("blocked", "declared")
    ]
    if remote:
        kind, url = remote[0]
        yield _f(
            "runtime-remote-script",
            Category.DYNAMIC_CODE,
            Severity.HIGH,
            f"loaded a {kind} from {_origin(url)}: code that was never scanned",
            None,
            role,
        )
    yield from _csp_code(events, role)
    workers = [e for e in events if e.get("type") == "worker"]
    wasm = [e for e in events if e.get("type") == "wasm"]
    busy = sum(int(e.get("duration", 0)) for e in events if e.get("type") == "long-task")
    cpu = float(trace.get("cpu_seconds") or 0.0)
    # Without workers or WebAssembly a plugin's work runs on its page's main thread: judge
    # that, not the browser's total, which holds the other role's page and the browser's
    # own work (and swings with the machine's load). Far more than both roles' usual
    # total still counts: the GPU process can be made to compute too.
    own_cpu = trace.get("page_cpu_seconds")
    own = float(own_cpu) if own_cpu is not None else cpu
    if (workers or wasm) and (busy > 2000 or cpu >= CPU_BURN_SECONDS):
        spent = f"{cpu:.1f} CPU-seconds" if cpu >= CPU_BURN_SECONDS else f"{busy} ms"
        yield _f(
            "runtime-cpu-burn",
            Category.CRYPTOMINING,
            Severity.HIGH,
            f"kept the CPU busy ({spent}) with {'workers' if workers else 'WebAssembly'}",
            None,
            role,
        )
    elif own >= CPU_BURN_SECONDS or cpu >= BROWSER_BURN_SECONDS:
        who, seconds = ("its page", own) if own >= CPU_BURN_SECONDS else ("the browser", cpu)
        yield _f(
            "runtime-cpu-burn",
            Category.CRYPTOMINING,
            Severity.MEDIUM,
            f"kept {who} busy for {seconds:.1f} CPU-seconds while it ran",
            None,
            role,
        )
    elif _busy_share(trace) >= TIMER_BURN_SHARE:
        yield _f(
            "runtime-cpu-burn",
            Category.CRYPTOMINING,
            Severity.MEDIUM,
            f"its timers kept its page busy {100 * _busy_share(trace):.0f}% of the time they"
            " stood for, as hours were run in a moment (a visitor's page would burn that)",
            None,
            role,
        )
    elif workers and not caps.workers:
        yield _f(
            "runtime-undeclared-worker",
            Category.UNDECLARED_CAPABILITY,
            Severity.MEDIUM,
            "started a worker without declaring workers",
            None,
            role,
        )


def _busy_share(trace: dict[str, Any]) -> float:
    """How busy the busiest line of timers kept the page in the simulated time its repeats
    stood for (their own time is left out of the page's CPU figure)."""
    try:
        return float(trace.get("timer_busy_share") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _csp_code(events: list[dict[str, Any]], role: str) -> Iterable[Finding]:
    """Code its own CSP forbids: a script from elsewhere, a data: or blob: module, a
    frame or worker (the host would block it; the plugin tried anyway)."""
    for e in events:
        if e.get("type") != "csp-violation":
            continue
        directive, blocked = str(e.get("directive", "")), str(e.get("blocked", ""))
        if directive.startswith(CODE_DIRECTIVES) and blocked.startswith(CODE_SOURCES):
            yield _f(
                "runtime-csp-code",
                Category.DYNAMIC_CODE,
                Severity.HIGH,
                f"ran or loaded code its CSP forbids ({directive} blocked {blocked[:80]})",
                None,
                role,
            )
            return


_EVENT_CAPABILITY = {
    "storage": "storage",
    "cookie-read": "cookies",
    "cookie-write": "cookies",
    "dom-outside": "dom",
    "page-listener": "dom",
    "override": "dom",
    "navigation": "navigation",
    "clipboard": "clipboard",
    "worker": "workers",
    "eval": "eval",
    "function": "eval",
    "string-timer": "eval",
}


def observed_capabilities(trace: dict[str, Any]) -> set[str]:
    """Which capabilities the plugin exercised in this run (the observed column)."""
    caps = {
        _EVENT_CAPABILITY[e["type"]]
        for e in trace.get("events", [])
        if e.get("type") in _EVENT_CAPABILITY
    }
    if any(
        not _is_host(url, trace) and url.startswith(("http", "ws", "//"))
        for _, url, _, _ in _outbound(trace)
    ):
        caps.add("network")
    return caps


def dedupe(findings: list[Finding]) -> list[Finding]:
    """The findings without repeats of the same rule saying the same thing."""
    seen: set[tuple[str, str]] = set()
    out = []
    for f in findings:
        key = (f.rule_id, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
