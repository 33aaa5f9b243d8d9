"""Workers report that they are alive, which queues they serve and whether their browser runs.

The browser lives on the hosts of the workers on the ``browser`` queue, so the web
server's readiness asks the records of those workers, not its own filesystem.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from scanner.db import insert_if_absent
from service.models import WorkerHeartbeat, utcnow

BEATS_BEFORE_STALE = 3
FORGET_AFTER = timedelta(days=1)  # restarted workers come back under new names


@dataclass(frozen=True)
class BrowserProbe:
    version: str | None
    error: str | None


def probe_browser(path: str, timeout: float = 10.0) -> BrowserProbe:
    """Run the browser just far enough to print its version: it exists, loads and starts."""
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return BrowserProbe(None, f"{type(exc).__name__}: {exc}"[:500])
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        stderr = done.stderr.decode(errors="replace").strip()[-300:]
        return BrowserProbe(None, f"{path} --version exited {done.returncode}: {stderr}")
    return BrowserProbe(lines[0][:200], None)


def pool_problem(status_dir: Path, parent_pid: int) -> str | None:
    """Why a browser pool of this worker's child processes is down, if one is.

    The pools write their state (sandbox.browser.BrowserPool) to ``status_dir``; a record
    of a process that is gone is removed.
    """
    if not status_dir.is_dir():
        return None
    problems = []
    for path in sorted(status_dir.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            pid, ppid = int(record["pid"]), int(record["ppid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not Path(f"/proc/{pid}").exists():
            path.unlink(missing_ok=True)
            continue
        if parent_pid in (ppid, pid) and record.get("state") == "down":
            since = datetime.fromtimestamp(float(record.get("since", 0)), UTC)
            problems.append(f"the browser is down since {since:%H:%M:%S}Z: {record.get('error')}")
    return problems[0][:500] if problems else None


def beat(
    engine: Engine,
    hostname: str,
    queues: Iterable[str],
    browser_path: str,
    browser_problem: str | None = None,
) -> None:
    """Record this worker as seen now; a worker on ``browser`` also probes its browser,
    and reports its pools' trouble (``browser_problem``) as the browser's error."""
    names = sorted(set(queues))
    probe = probe_browser(browser_path) if "browser" in names else BrowserProbe(None, None)
    if "browser" in names and browser_problem is not None:
        probe = BrowserProbe(probe.version, browser_problem)
    now = utcnow()
    values = {
        "queues": " ".join(names),
        "browser": probe.version,
        "browser_error": probe.error,
        "seen_at": now,
    }
    with engine.begin() as conn:
        found = conn.execute(
            update(WorkerHeartbeat).where(WorkerHeartbeat.hostname == hostname).values(values)
        ).rowcount
        if not found:
            insert_if_absent(conn, WorkerHeartbeat, {"hostname": hostname, **values})
        conn.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.seen_at < now - FORGET_AFTER))


def alive(session: Session, interval: float) -> list[WorkerHeartbeat]:
    """Workers heard from within the last few heartbeat intervals."""
    since = utcnow() - timedelta(seconds=BEATS_BEFORE_STALE * interval)
    return list(session.scalars(select(WorkerHeartbeat).where(WorkerHeartbeat.seen_at >= since)))


def serving(workers: list[WorkerHeartbeat], queue: str) -> list[WorkerHeartbeat]:
    return [w for w in workers if queue in w.queues.split()]
