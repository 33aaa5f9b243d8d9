"""The desk in real Chromium: a werkzeug server on 127.0.0.1 and Playwright's sync API."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright
from werkzeug.serving import make_server

from review_ui.app import create_app
from service.services import Services
from tests.paths import PROJECT_ROOT
from tests.service.desk import PASSWORD

SCREENSHOTS = PROJECT_ROOT / "build" / "screenshots"
CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def desk_server(svc: Services) -> Iterator[str]:
    """The desk on plain http (so cookies cannot be Secure) in a thread; its base URL."""
    plain = replace(svc, settings=replace(svc.settings, cookie_secure=False))
    app = create_app(plain.settings, plain)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@contextmanager
def chromium() -> Iterator[Browser]:
    args = list(CHROMIUM_ARGS)
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium's own sandbox cannot run as root
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page whose dialogs and console messages are recorded (an XSS would show there)."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)


def watched(browser: Browser) -> Watched:
    page = browser.new_context().new_page()
    w = Watched(page)

    def on_dialog(dialog: object) -> None:
        w.dialogs.append(getattr(dialog, "message", "?"))
        dialog.dismiss()  # type: ignore[attr-defined]

    page.on("dialog", on_dialog)
    page.on("console", lambda m: w.console.append(f"{m.type}: {m.text}"))
    return w


def sign_in(page: Page, base: str, name: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/queue")


def shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
