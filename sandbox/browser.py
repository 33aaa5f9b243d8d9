"""A warm Chromium owned by one thread; restarted after a crash, N scans, or a memory cap.

Playwright's sync API belongs to the thread that started it, and scan stages run on
threads of their own, so every detonation is a job handed to this pool's thread. The
driver and the browser run jailed (sandbox.isolation): their own network namespace, an
unprivileged user, Chromium's own sandbox on. When the browser or the driver stops
answering, ``abort()`` kills both; the thread then starts a fresh driver and browser.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import queue
import signal
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import playwright
from playwright.sync_api import Browser, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from sandbox.detonation import DetonationRequest, Detonator, Trace
from sandbox.isolation import SANDBOX_USER, Jail

# Chromium keeps trying to reach Google's services unless told not to; the rest keeps
# every connection on the proxy and hides the automation.
CHROMIUM_ARGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--disable-quic",
    # The browser's own calls home (autofill, translation, hints) would read as the plugin's.
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,"
    "AutofillServerCommunication,PasswordManagerOnboarding,InterestFeedContentSuggestions,"
    "CertificateTransparencyComponentUpdater,SafeBrowsingEnhancedProtection",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--dns-prefetch-disable",
    # No name is ever resolved by the browser itself: the proxy is reached by address.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    # navigator.webdriver stays false, as in a browser a person uses.
    "--disable-blink-features=AutomationControlled",
)


class SandboxUnavailableError(RuntimeError):
    """The browser cannot be started or stopped answering; the stage fails closed."""


@dataclass(frozen=True)
class BrowserSettings:
    executable: str = "/usr/bin/chromium"
    max_scans: int = 100  # restart the browser after this many detonations
    max_rss_bytes: int = 1536 * 1024 * 1024  # ...or when its processes use more than this
    user: str = SANDBOX_USER  # who the browser runs as when we are root


class BrowserPool:
    def __init__(self, settings: BrowserSettings) -> None:
        self.settings = settings
        self._jobs: queue.Queue[tuple[DetonationRequest, Future[Trace]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="gatehouse-browser", daemon=True)
        self._started = False
        self._lock = threading.Lock()
        self.launches = 0
        self.drivers = 0
        self.scans = 0
        self.aborts = 0

    def detonate(self, request: DetonationRequest, timeout: float) -> Trace:
        with self._lock:
            if not self._started:
                self._thread.start()
                self._started = True
        future: Future[Trace] = Future()
        self._jobs.put((request, future))
        return future.result(timeout=timeout)

    def abort(self) -> None:
        """Kill the browser and its driver from outside their thread: a hung page (an
        endless loop in mount) or a wedged driver blocks every Playwright call, and only
        their death makes those calls return. The next job then gets a fresh session."""
        self.aborts += 1
        for pid in browser_processes(include_driver=True):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        with self._lock:
            if not self._started:
                return
        self._jobs.put(None)
        self._thread.join(timeout=30)
        # Browser helpers can outlive the close call by a moment; none may outlive the pool.
        deadline = time.monotonic() + 10
        while browser_processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.abort()

    def _loop(self) -> None:
        """Serve jobs. A session (jail, driver, browser) that fails is torn down, and the
        job is tried once more on a fresh one; a job that still cannot run fails closed."""
        session: _Session | None = None
        try:
            while (job := self._jobs.get()) is not None:
                request, future = job
                for attempt in (1, 2):
                    if session is not None and not session.healthy():
                        session.close()
                        session = None
                    try:
                        session = session or _Session(self).open()
                        future.set_result(session.detonate(request))
                        break
                    except Exception as exc:
                        if session is not None:
                            session.close()
                            session = None
                        if attempt == 2:
                            future.set_exception(
                                SandboxUnavailableError(f"{type(exc).__name__}: {exc}")
                            )
        finally:
            if session is not None:
                session.close()

    def _launch(self, pw: Playwright) -> Browser:
        if not Path(self.settings.executable).exists():
            raise SandboxUnavailableError(
                f"no browser at {self.settings.executable} (apt-get install chromium)"
            )
        self.launches += 1
        return pw.chromium.launch(
            executable_path=self.settings.executable,
            args=list(CHROMIUM_ARGS),
            chromium_sandbox=True,
        )

    def _too_big(self) -> bool:
        return browser_rss_bytes() > self.settings.max_rss_bytes


class _Session:
    """One jailed driver with its browser, for as long as both answer."""

    def __init__(self, pool: BrowserPool) -> None:
        self.pool = pool
        self.jail: Jail | None = None
        self.pw: Playwright | None = None
        self.browser: Browser | None = None
        self.served = 0
        self.aborts_at_start = pool.aborts
        self.broken = False

    def healthy(self) -> bool:
        """False once the pool killed its processes or a detonation lost the driver."""
        return not self.broken and self.aborts_at_start == self.pool.aborts

    def open(self) -> _Session:
        node = Path(inspect.getfile(playwright)).parent / "driver" / "node"
        try:
            self.jail = Jail(node, self.pool.settings.user)
            with self.jail.driver():
                self.pw = sync_playwright().start()
        except BaseException:
            self.close()
            raise
        self.pool.drivers += 1
        return self

    def close(self) -> None:
        _close(self.browser)
        self.browser = None
        if self.pw is not None:
            with contextlib.suppress(Exception):
                self.pw.stop()
            self.pw = None
        if self.jail is not None:
            self.jail.close()
            self.jail = None

    def detonate(self, request: DetonationRequest) -> Trace:
        settings = self.pool.settings
        if (
            self.browser is None
            or not self.browser.is_connected()
            or self.served >= settings.max_scans
            or self.pool._too_big()
        ):
            _close(self.browser)
            self.browser = None
            assert self.pw is not None
            self.browser = self.pool._launch(self.pw)
            self.served = 0
        assert self.jail is not None
        trace = Detonator(self.browser, self.jail).run(request)
        if trace.error and ("closed" in trace.error.lower() or "crash" in trace.error.lower()):
            self.broken = True  # the browser or its driver is gone: start afresh next time
        self.served += 1
        self.pool.scans += 1
        return trace


def _close(browser: Browser | None) -> None:
    if browser is not None:
        with contextlib.suppress(PlaywrightError):
            browser.close()


def browser_processes(include_driver: bool = False) -> list[int]:
    """Chromium processes (and the Playwright driver) that descend from this process."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid_text = stat[stat.rindex(")") + 2 :].split()[:2]
        if state == "Z":
            continue  # exited, waiting to be reaped: not running
        ppid = int(ppid_text)
        children.setdefault(ppid, []).append(int(entry.name))
        names[int(entry.name)] = name
    wanted = ("chrom", "node") if include_driver else ("chrom",)
    found, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            if any(w in names.get(child, "") for w in wanted):
                found.append(child)
    return found


def browser_rss_bytes() -> int:
    total = 0
    for pid in browser_processes():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total
