"""The processes of a running service, started by module name and supervised together.

The one place that builds the web server's and the workers' command lines: ``serve``,
the service benchmark and the live tests all start them from here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scanner.config import Settings
from scanner.private_dirs import private_dir
from service.jobs import consumed


def worker_command(
    queues: str, concurrency: int, name: str, beat_schedule: Path | None = None
) -> list[str]:
    """A Celery worker process; with ``beat_schedule`` it also runs the sweeper's clock."""
    cmd = [sys.executable, "-m", "celery", "-A", "workers.worker", "worker", "-Q", queues]
    cmd += ["-c", str(concurrency), "-n", f"{name}@%h", "-l", "INFO"]
    if beat_schedule is not None:
        cmd += ["--beat", "-s", str(beat_schedule)]
    return cmd


def web_command(listen: str, processes: int, threads: int) -> list[str]:
    """gunicorn on the API; threads, so a long-polling GET does not hold a process.

    A process takes at most twice as many connections as it has threads: with no cap the
    first process to wake accepted every keep-alive connection and served them all on one
    core while the others idled (webhook intake: 157/s before, 290/s after, on two
    processes), and with a cap equal to the threads gunicorn keeps no connection alive
    (every answer said ``Connection: close``). The margin is the keep-alive room.
    """
    cmd = [sys.executable, "-m", "gunicorn", "--bind", listen, "--workers", str(processes)]
    cmd += ["--worker-class", "gthread", "--threads", str(threads)]
    cmd += ["--worker-connections", str(2 * threads), "--no-control-socket"]
    return [*cmd, "--access-logfile", "-", "review_ui.wsgi:build()"]


def serve_commands(settings: Settings, listen: str) -> dict[str, list[str]]:
    pid = os.getpid()
    return {
        "scan-worker": worker_command(
            # retro last: a retro-scan's work waits behind new submissions' (its queue
            # holds at most GATEHOUSE_RETRO_CONCURRENCY scans' work at a time).
            f"{consumed('scan')},{consumed('av')},callbacks,cdn,retro",
            settings.worker_processes,
            f"scan-{pid}",
            settings.data_dir / "celerybeat-schedule",
        ),
        "browser-worker": worker_command(consumed("browser"), 1, f"browser-{pid}"),
        "web": web_command(listen, settings.web_processes, settings.web_threads),
    }


def serve(settings: Settings, listen: str) -> int:
    """Start clamd when needed, the workers and the web server; stop them all together."""
    from scanner.advisories.snapshot import ensure_snapshot
    from scanner.advisories.store import AdvisoryStore
    from scanner.clamd_server import ClamdServer, ClamdSupervisor
    from service.jobs import RecordingJobQueue
    from service.services import Services
    from service.webhooks import check_secrets
    from service.workdirs import sweep_leftovers

    check_secrets(settings)  # refuse to start rather than accept forgeries or sign with ""
    private_dir(settings.data_dir)
    svc = Services.from_settings(settings, RecordingJobQueue())  # migrate once, before workers
    # The shipped advisory snapshot, imported before the first scan: otherwise that scan's
    # dependency stage imports it mid-scan and the scan's advisory snapshot is unknown.
    ensure_snapshot(AdvisoryStore(svc.engine), settings.rules_dir)

    def say(message: str) -> None:
        print(f"serve: {message}", file=sys.stderr, flush=True)

    # The embedded clamd is supervised: restarted (with a growing pause) when it dies, so
    # scans do not wait in review for a person to restart it.
    clamd = None if settings.clamd_tcp else ClamdSupervisor(ClamdServer(settings), say)
    if clamd is not None:
        clamd.ensure()
    procs = {
        name: subprocess.Popen(cmd, start_new_session=True)
        for name, cmd in serve_commands(settings, listen).items()
    }
    print(f"serve: API on http://{listen}, workers {', '.join(procs)}", file=sys.stderr)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    next_cleanup = 0.0
    while not stopping:
        if clamd is not None:
            clamd.ensure()
        if time.monotonic() >= next_cleanup:  # uploads of killed web processes, and more
            sweep_leftovers(settings)
            next_cleanup = time.monotonic() + 60
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead:
            print(f"serve: {', '.join(dead)} exited; stopping the rest", file=sys.stderr)
            code = 1
            break
        time.sleep(0.5)
    for p in procs.values():
        if p.poll() is None:
            p.terminate()
    for p in procs.values():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    return code
