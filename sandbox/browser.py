"""A warm Chromium owned by one thread; restarted after a crash, N scans, or a memory cap.

Playwright's sync API belongs to the thread that started it, and scan stages run on
threads of their own, so every detonation is a job handed to this pool's thread. The
driver and the browser run jailed (sandbox.isolation): their own network namespace, an
unprivileged user, Chromium's own sandbox on. When the browser or the driver stops
answering, ``abort()`` kills both; the thread then starts a fresh driver and browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import playwright
from playwright._impl._greenlets import EventGreenlet
from playwright.sync_api import Browser, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from sandbox.detonation import DetonationRequest, Detonator, Trace
from sandbox.isolation import SANDBOX_USER, Jail

log = logging.getLogger(__name__)

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
    # No popup windows: a window the plugin opens would be a realm of natives outside
    # the reporting channel (window.open answers null; the attempt is recorded).
    "--block-new-web-contents",
)


class SandboxUnavailableError(RuntimeError):
    """The browser cannot be started or stopped answering; the stage fails closed."""


@dataclass(frozen=True)
class BrowserSettings:
    executable: str = "/usr/bin/chromium"
    max_scans: int = 100  # restart the browser after this many detonations
    # ...or when its processes use more than this (proportional set size)
    max_memory_bytes: int = 1536 * 1024 * 1024
    user: str = SANDBOX_USER  # who the browser runs as when we are root
    # Where the pool writes its state for the worker's heartbeat (None: nowhere).
    status_dir: Path | None = None
    # How often the memory watchdog looks during a detonation, in seconds.
    watch_every: float = 1.0
    # Pause before warming a fresh browser after a failure, growing up to a minute.
    retry_pause: float = 2.0
    # Detonations of one job that run at once on the warm browser, each in a context of
    # its own. Much of a detonation is waiting on the renderer (a mouse move is answered
    # at the next frame, ~16 ms), so the waits overlap; past the cores, CPU would not.
    parallel: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))


class BrowserPool:
    """One thread serves detonations on a jailed browser session and keeps it healthy:
    after a failure it starts a fresh one on its own, and a watchdog stops a detonation
    whose browser goes over the memory cap."""

    def __init__(self, settings: BrowserSettings) -> None:
        self.settings = settings
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="gatehouse-browser", daemon=True)
        self._started = False
        self._lock = threading.Lock()
        self._session: _Session | None = None
        self._busy = threading.Event()
        self._over_cap = False
        self.launches = 0
        self.drivers = 0
        self.scans = 0
        self.aborts = 0
        self.state = "starting"
        self.state_error: str | None = None

    def detonate(self, request: DetonationRequest, timeout: float) -> Trace:
        return self.detonate_all([request], timeout)[0]

    def detonate_all(self, requests: Sequence[DetonationRequest], timeout: float) -> list[Trace]:
        """Several detonations (a bundle's roles) as one job: up to ``parallel`` at once,
        each in a fresh context of its own; the traces in the order of ``requests``."""
        self._start()
        future: Future[list[Trace]] = Future()
        self._jobs.put((tuple(requests), future))
        return future.result(timeout=timeout)

    def _start(self) -> None:
        with self._lock:
            if not self._started:
                self._thread.start()
                threading.Thread(
                    target=self._watch, name="gatehouse-browser-watch", daemon=True
                ).start()
                self._started = True

    def abort(self) -> None:
        """Kill the browser and its driver from outside their thread: a hung page (an
        endless loop in mount) or a wedged driver blocks every Playwright call, and only
        their death makes those calls return. The pool then starts a fresh session."""
        self.aborts += 1
        log.warning("browser aborted (%d): killing its session", self.aborts)
        self._set_state("down", "aborted: a detonation did not finish")
        session = self._session
        if session is not None and session.jail is not None:
            session.jail.kill()

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
        for pid in browser_processes(include_driver=True):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._set_state("stopped", None)

    def _loop(self) -> None:
        """Serve jobs. A session (jail, driver, browser) that fails is torn down, and the
        job is tried once more on a fresh one; a job that still cannot run fails closed.
        While idle after a failure, a fresh session is warmed so readiness comes back."""
        pause = self.settings.retry_pause
        try:
            while True:
                try:
                    wait = pause if self.state == "down" else None
                    job = self._jobs.get(timeout=wait)
                except queue.Empty:
                    pause = pause * 2 if not self._warm() else self.settings.retry_pause
                    pause = min(pause, 60.0)
                    continue
                if job is None:
                    return
                self._serve(*job)
        finally:
            self._drop_session()

    def _serve(self, requests: tuple[DetonationRequest, ...], future: Future[list[Trace]]) -> None:
        for attempt in (1, 2):
            if self._session is not None and not self._session.healthy():
                self._drop_session()
            try:
                session = self._session or self._open_session()
                session.ensure_browser()
                self._over_cap = False
                self._busy.set()
                try:
                    traces = session.detonate_all(requests, self.settings.parallel)
                finally:
                    self._busy.clear()
                if self._over_cap:
                    for trace in traces:
                        trace.error = (
                            f"the browser used more than {self.settings.max_memory_bytes}"
                            " bytes of memory and was stopped"
                        )
                        trace.over_memory = True
                    session.broken = True
                if session.broken:
                    self._set_state("down", next((t.error for t in traces if t.error), None))
                else:
                    self._set_state("ready", None)
                future.set_result(traces)
                return
            except Exception as exc:
                log.warning("browser session failed (attempt %d): %s", attempt, exc)
                self._drop_session()
                self._set_state("down", f"{type(exc).__name__}: {exc}"[:300])
                if attempt == 2:
                    future.set_exception(SandboxUnavailableError(f"{type(exc).__name__}: {exc}"))

    def _warm(self) -> bool:
        """Start a fresh session and browser without a job; True when it is up."""
        try:
            self._drop_session()
            self._open_session().ensure_browser()
        except Exception as exc:
            log.warning("browser still down: %s", exc)
            self._drop_session()
            self._set_state("down", f"{type(exc).__name__}: {exc}"[:300])
            return False
        log.warning("browser back up")
        self._set_state("ready", None)
        return True

    def _open_session(self) -> _Session:
        self._session = _Session(self).open()
        return self._session

    def _drop_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _watch(self) -> None:
        """During a detonation, stop a browser that goes over the memory cap (a page can
        allocate gigabytes between two detonations' checks)."""
        while True:
            self._busy.wait()
            session = self._session
            jail = session.jail if session is not None else None
            if jail is not None and jail.memory_bytes() > self.settings.max_memory_bytes:
                log.warning("browser over its memory cap during a detonation: stopping it")
                self._over_cap = True
                jail.kill()
            time.sleep(self.settings.watch_every)

    def _set_state(self, state: str, error: str | None) -> None:
        if (state, error) == (self.state, self.state_error):
            return
        self.state, self.state_error = state, error
        directory = self.settings.status_dir
        if directory is None:
            return
        with contextlib.suppress(OSError):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            record = {
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "state": state,
                "error": error,
                "since": time.time(),
            }
            tmp = directory / f".{os.getpid()}.tmp"
            tmp.write_text(json.dumps(record))
            tmp.replace(directory / f"{os.getpid()}.json")

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
            self.jail.kill()  # nothing of a closed session lingers
            self.jail.close()
            self.jail = None

    def ensure_browser(self) -> Browser:
        settings = self.pool.settings
        assert self.jail is not None
        if (
            self.browser is None
            or not self.browser.is_connected()
            or self.served >= settings.max_scans
            or self.jail.memory_bytes() > settings.max_memory_bytes
        ):
            _close(self.browser)
            self.browser = None
            assert self.pw is not None
            self.browser = self.pool._launch(self.pw)
            self.served = 0
        return self.browser

    def detonate_all(self, requests: Sequence[DetonationRequest], parallel: int) -> list[Trace]:
        browser = self.ensure_browser()
        assert self.jail is not None
        detonator = Detonator(browser, self.jail)
        traces: list[Trace] = []
        step = max(1, parallel)
        for i in range(0, len(requests), step):
            traces += side_by_side(browser, detonator, requests[i : i + step])
        for trace in traces:
            error = (trace.error or "").lower()
            if "closed" in error or "crash" in error:
                self.broken = True  # the browser or its driver is gone: start afresh next time
        self.served += len(traces)
        self.pool.scans += len(traces)
        return traces


_Job = tuple[tuple[DetonationRequest, ...], Future[list[Trace]]]


def side_by_side(
    browser: Browser, detonator: Detonator, requests: Sequence[DetonationRequest]
) -> list[Trace]:
    """Detonations at once on this thread, in the order of ``requests``.

    The sync API is built on greenlets: a call waiting for the browser hands the thread to
    the driver's event loop, which resumes the call when its answer comes. Each detonation
    runs in a greenlet of its own started from that loop (Playwright's own way of running
    event handlers that block), so while one waits for a frame or a load, the others go
    on. When the driver goes away mid-way (the pool killed the browser: a hang, the
    memory cap), each unfinished detonation ends as a broken-off trace, as it would alone.
    """
    if len(requests) == 1:
        return [detonator.run(requests[0])]
    done: dict[int, Trace] = {}
    started: list[EventGreenlet] = []

    async def together() -> list[BaseException | None]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for i, request in enumerate(requests):
            future: asyncio.Future[None] = loop.create_future()
            started.append(EventGreenlet(_body(detonator, request, i, done, future)))
            started[-1].switch()  # runs until its first wait on the browser
            futures.append(future)
        return list(await asyncio.gather(*futures, return_exceptions=True))

    lost: Exception | None = None
    outcomes: list[BaseException | None] = []
    try:
        # _sync is how every sync API call waits on the loop; no public call takes a coroutine.
        outcomes = browser._sync(together())
    except Exception as exc:  # the driver's connection is gone
        lost = exc
    for g in started:
        if not g.dead:
            # Its wait can never be answered: end it so its cleanup (proxy, context) runs.
            with contextlib.suppress(BaseException):
                g.throw()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [done.get(i) or _broken_off(r, lost) for i, r in enumerate(requests)]


def _body(
    detonator: Detonator,
    request: DetonationRequest,
    i: int,
    done: dict[int, Trace],
    future: asyncio.Future[None],
) -> Callable[[], None]:
    def body() -> None:
        try:
            done[i] = detonator.run(request)
            future.set_result(None)
        except Exception as exc:
            future.set_exception(exc)

    return body


def _broken_off(request: DetonationRequest, why: Exception | None) -> Trace:
    error = f"{type(why).__name__}: {str(why).splitlines()[0][:300]}" if why else "broken off"
    return Trace(request.role, {}, origin=request.origin, error=error)


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
