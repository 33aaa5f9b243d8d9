"""A warm Chromium owned by one thread; restarted after a crash, N scans, or a memory cap.

Playwright's sync API belongs to the thread that started it, and scan stages run on
threads of their own, so every detonation is a job handed to this pool's thread.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from sandbox.detonation import DetonationRequest, Detonator, Trace

# Chromium keeps trying to reach Google's services unless told not to.
CHROMIUM_ARGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--dns-prefetch-disable",
)


class SandboxUnavailableError(RuntimeError):
    """The browser cannot be started or stopped answering; the stage fails closed."""


@dataclass(frozen=True)
class BrowserSettings:
    executable: str = "/usr/bin/chromium"
    max_scans: int = 100  # restart the browser after this many detonations
    max_rss_bytes: int = 1536 * 1024 * 1024  # ...or when its processes use more than this
    # As root Chromium's own sandbox cannot run; production runs the browser as non-root.
    chromium_sandbox: bool = os.geteuid() != 0


class BrowserPool:
    def __init__(self, settings: BrowserSettings) -> None:
        self.settings = settings
        self._jobs: queue.Queue[tuple[DetonationRequest, Future[Trace]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="gatehouse-browser", daemon=True)
        self._started = False
        self._lock = threading.Lock()
        self.launches = 0
        self.scans = 0

    def detonate(self, request: DetonationRequest, timeout: float) -> Trace:
        with self._lock:
            if not self._started:
                self._thread.start()
                self._started = True
        future: Future[Trace] = Future()
        self._jobs.put((request, future))
        return future.result(timeout=timeout)

    def abort(self) -> None:
        """Kill the browser from outside its thread: a hung page (an endless loop in mount)
        blocks every Playwright call, and only a dead browser makes them return."""
        for pid in browser_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue

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
        with sync_playwright() as pw:
            browser: Browser | None = None
            served = 0
            while (job := self._jobs.get()) is not None:
                request, future = job
                try:
                    if (
                        browser is None
                        or not browser.is_connected()
                        or served >= self.settings.max_scans
                        or self._too_big()
                    ):
                        _close(browser)
                        browser = self._launch(pw)
                        served = 0
                    trace = Detonator(browser).run(request)
                    served += 1
                    self.scans += 1
                    future.set_result(trace)
                except Exception as exc:
                    future.set_exception(SandboxUnavailableError(f"{type(exc).__name__}: {exc}"))
                    _close(browser)  # the next job starts a fresh browser
                    browser = None
            _close(browser)

    def _launch(self, pw: Playwright) -> Browser:
        if not Path(self.settings.executable).exists():
            raise SandboxUnavailableError(
                f"no browser at {self.settings.executable} (apt-get install chromium)"
            )
        self.launches += 1
        return pw.chromium.launch(
            executable_path=self.settings.executable,
            args=list(CHROMIUM_ARGS),
            chromium_sandbox=self.settings.chromium_sandbox,
        )

    def _too_big(self) -> bool:
        return browser_rss_bytes() > self.settings.max_rss_bytes


def _close(browser: Browser | None) -> None:
    if browser is not None:
        with contextlib.suppress(PlaywrightError):
            browser.close()


def browser_processes() -> list[int]:
    """Chromium processes that descend from this process (the driver starts them)."""
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
    found, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            if "chrom" in names.get(child, ""):
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
