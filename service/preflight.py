"""The CI client of the pre-flight API: upload a bundle, wait for its report."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scanner.reports.terminal import terminal_safe


class PreflightError(Exception):
    """The server could not be reached, refused the bundle, or did not finish in time."""


@dataclass(frozen=True)
class PreflightReport:
    scan_id: str
    verdict: str
    text: str  # the report in the format asked for


def run_preflight(
    bundle: Path,
    server: str,
    token: str,
    fmt: str,
    timeout: float,
    sarif_category: str | None = None,
) -> PreflightReport:
    """Upload ``bundle`` to ``server``, long-poll until the scan completes, fetch the report."""
    import requests

    base = server.rstrip("/")
    auth = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + timeout
    try:
        with bundle.open("rb") as fh:
            r = requests.post(
                f"{base}/api/v1/scans",
                files={"bundle": (bundle.name, fh)},
                headers=auth,
                timeout=120,
            )
        _check(r)
        scan_id = str(r.json()["id"])
        print(f"uploaded {bundle.name}: scan {terminal_safe(scan_id)} queued", file=sys.stderr)
        view = _wait(base, auth, scan_id, deadline, timeout)
        text = json.dumps(view["report"], indent=2) + "\n"
        if fmt == "sarif":
            r = requests.get(
                f"{base}/api/v1/scans/{scan_id}",
                params={"format": "sarif"}
                | ({"category": sarif_category} if sarif_category else {}),
                headers=auth,
                timeout=60,
            )
            _check(r)
            text = r.text
    except requests.RequestException as exc:
        raise PreflightError(f"{base}: {type(exc).__name__}: {exc}") from None
    return PreflightReport(scan_id, str(view["verdict"]), text)


def _wait(
    base: str, auth: dict[str, str], scan_id: str, deadline: float, timeout: float
) -> dict[str, Any]:
    import requests

    status = "queued"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PreflightError(f"scan {scan_id} did not finish in {timeout:g} s")
        r = requests.get(
            f"{base}/api/v1/scans/{scan_id}",
            params={"wait": f"{min(30.0, remaining):.0f}"},
            headers=auth,
            timeout=min(30.0, remaining) + 30,
        )
        _check(r)
        view: dict[str, Any] = r.json()
        if view["status"] != status:
            status = view["status"]
            print(f"scan {terminal_safe(scan_id)}: {terminal_safe(status)}", file=sys.stderr)
        if status == "completed":
            return view


def _check(r: Any) -> None:
    if r.status_code >= 400:
        try:
            problem = r.json()
            detail = problem.get("detail") or problem.get("title")
        except ValueError:
            detail = r.text[:200]
        raise PreflightError(f"server answered {r.status_code}: {detail}")
