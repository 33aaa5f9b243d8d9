"""``gatehouse serve``, ``tokens``, ``publishers``, ``preflight`` and ``bench-service``.

``serve`` starts separate processes (clamd, Celery workers, the web server) by module
name; scanner/ itself never imports Flask or Celery.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scanner.config import Settings

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
VERDICTS = {"pass": 0, "review": 1, "reject": 2}


class ServiceCommandError(Exception):
    """A service command cannot do what was asked; exit 2 with the message."""


def add_commands(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the HTTP API, the workers and clamd together")
    serve.add_argument("--listen", help="host:port (default GATEHOUSE_LISTEN)")
    serve.set_defaults(func=cmd_serve)

    tokens = sub.add_parser("tokens", help="API tokens for CI and readers")
    tsub = tokens.add_subparsers(required=True, metavar="ACTION")
    create = tsub.add_parser("create", help="create a token and print it (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", action="append", required=True, help="preflight, read, admin")
    create.add_argument("--publisher", help="the registry's publisher id this token acts for")
    create.add_argument("--hourly-limit", type=int, help="pre-flight scans an hour")
    create.set_defaults(func=cmd_tokens_create)
    tsub.add_parser("list", help="tokens, without their secrets").set_defaults(func=cmd_tokens_list)
    revoke = tsub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_tokens_revoke)

    pubs = sub.add_parser("publishers", help="publishers and their submission limits")
    psub = pubs.add_subparsers(required=True, metavar="ACTION")
    psub.add_parser("list").set_defaults(func=cmd_publishers_list)
    limit = psub.add_parser("set-limit", help="submissions a day for one publisher")
    limit.add_argument("publisher")
    limit.add_argument("daily_limit", type=int)
    limit.set_defaults(func=cmd_publishers_limit)

    pre = sub.add_parser("preflight", help="scan a bundle on a Gatehouse server (CI)")
    pre.add_argument("bundle", type=Path)
    pre.add_argument("--server", required=True, help="https://gatehouse.example")
    pre.add_argument("--format", choices=("json", "sarif"), default="json")
    pre.add_argument("--output", type=Path, help="write the report here (default: stdout)")
    pre.add_argument("--fail-on", choices=("review", "reject"))
    pre.add_argument("--timeout", type=float, default=900.0, help="seconds to wait in all")
    pre.set_defaults(func=cmd_preflight)

    bench = sub.add_parser("bench-service", help="print the service's speed figures")
    bench.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="PostgreSQL to measure on (a fresh schema is made and dropped)",
    )
    bench.add_argument("--broker-url", default="redis://127.0.0.1:6379/8")
    bench.add_argument("--scans", type=int, default=100_000)
    bench.add_argument(
        "--only", choices=("intake", "get", "preflight"), action="append", help="run only these"
    )
    bench.set_defaults(func=cmd_bench_service)


def _services(settings: Settings) -> Any:
    from scanner.jobs import RecordingJobQueue
    from scanner.services import Services

    return Services.from_settings(settings, RecordingJobQueue())


def cmd_tokens_create(args: argparse.Namespace, settings: Settings) -> int:
    from scanner.submissions import publisher_named
    from scanner.tokens import TokenError, create_token

    svc = _services(settings)
    with svc.session() as s:
        publisher = publisher_named(s, args.publisher, "cli") if args.publisher else None
        try:
            row, plaintext = create_token(
                s, args.name, set(args.scope), publisher=publisher, hourly_limit=args.hourly_limit
            )
        except TokenError as exc:
            raise ServiceCommandError(str(exc)) from None
        print(
            f"token {row.id} ({row.scopes}); store it now, it is not shown again:", file=sys.stderr
        )
    print(plaintext)
    return EXIT_OK


def cmd_tokens_list(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from scanner.models import ApiToken

    with _services(settings).session() as s:
        for t in s.scalars(select(ApiToken).order_by(ApiToken.id)):
            state = "revoked" if t.revoked_at else "active"
            print(f"{t.id}\t{t.prefix}…\t{t.scopes}\t{state}\t{t.name}")
    return EXIT_OK


def cmd_tokens_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from scanner.tokens import TokenError, revoke

    with _services(settings).session() as s:
        try:
            revoke(s, args.id)
        except TokenError as exc:
            raise ServiceCommandError(str(exc)) from None
    print(f"token {args.id} revoked")
    return EXIT_OK


def cmd_publishers_list(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from scanner.models import Publisher

    with _services(settings).session() as s:
        for p in s.scalars(select(Publisher).order_by(Publisher.id)):
            limit = (
                p.daily_limit
                if p.daily_limit is not None
                else f"{settings.publisher_daily_limit} (default)"
            )
            print(f"{p.external_id}\t{limit}")
    return EXIT_OK


def cmd_publishers_limit(args: argparse.Namespace, settings: Settings) -> int:
    from scanner.audit import audit
    from scanner.submissions import publisher_named

    with _services(settings).session() as s:
        p = publisher_named(s, args.publisher, "cli")
        p.daily_limit = args.daily_limit
        audit(s, "cli", "publisher.limit", "publisher", p.id, {"daily_limit": args.daily_limit})
    print(f"{args.publisher}: {args.daily_limit} submissions a day")
    return EXIT_OK


# --- preflight -----------------------------------------------------------------------


def cmd_preflight(args: argparse.Namespace, settings: Settings) -> int:
    import requests

    token = os.environ.get("GATEHOUSE_TOKEN", "")
    if not token:
        raise ServiceCommandError("set GATEHOUSE_TOKEN to a token with the preflight scope")
    if not args.bundle.is_file():
        raise ServiceCommandError(f"{args.bundle}: no such file")
    base = args.server.rstrip("/")
    auth = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + args.timeout
    try:
        with args.bundle.open("rb") as fh:
            r = requests.post(
                f"{base}/api/v1/scans",
                files={"bundle": (args.bundle.name, fh)},
                headers=auth,
                timeout=120,
            )
        _check(r)
        scan = r.json()
        print(f"uploaded {args.bundle.name}: scan {scan['id']} queued", file=sys.stderr)
        status = scan["status"]
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceCommandError(f"scan {scan['id']} did not finish in {args.timeout:g} s")
            r = requests.get(
                f"{base}/api/v1/scans/{scan['id']}",
                params={"wait": f"{min(30.0, remaining):.0f}"},
                headers=auth,
                timeout=min(30.0, remaining) + 30,
            )
            _check(r)
            view = r.json()
            if view["status"] != status:
                status = view["status"]
                print(f"scan {scan['id']}: {status}", file=sys.stderr)
            if status == "completed":
                break
        text = json.dumps(view["report"], indent=2) + "\n"
        if args.format == "sarif":
            r = requests.get(
                f"{base}/api/v1/scans/{scan['id']}",
                params={"format": "sarif"},
                headers=auth,
                timeout=60,
            )
            _check(r)
            text = r.text
    except requests.RequestException as exc:
        raise ServiceCommandError(f"{base}: {type(exc).__name__}: {exc}") from None
    _emit(text, args.output)
    verdict = view["verdict"]
    print(f"{args.bundle.name}: {verdict}", file=sys.stderr)
    if args.fail_on and VERDICTS[verdict] >= VERDICTS[args.fail_on]:
        return EXIT_FAIL
    return EXIT_OK


def _check(r: Any) -> None:
    if r.status_code >= 400:
        try:
            problem = r.json()
            detail = problem.get("detail") or problem.get("title")
        except ValueError:
            detail = r.text[:200]
        raise ServiceCommandError(f"server answered {r.status_code}: {detail}")


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    from scanner.cli import write_atomically  # cli imports this module: import at use

    write_atomically(output, text)


# --- serve ---------------------------------------------------------------------------


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

    A process takes no more connections than it has threads. Otherwise the first process
    to wake accepted every keep-alive connection and served them all on one core while
    the others idled (webhook intake: 157/s before, 290/s after, on two processes).
    """
    cmd = [sys.executable, "-m", "gunicorn", "--bind", listen, "--workers", str(processes)]
    cmd += ["--worker-class", "gthread", "--threads", str(threads)]
    cmd += ["--worker-connections", str(threads), "--no-control-socket"]
    return [*cmd, "--access-logfile", "-", "review_ui.wsgi:build()"]


def serve_commands(settings: Settings, listen: str) -> dict[str, list[str]]:
    pid = os.getpid()
    return {
        "scan-worker": worker_command(
            "scan,av,callbacks",
            settings.worker_processes,
            f"scan-{pid}",
            settings.data_dir / "celerybeat-schedule",
        ),
        "browser-worker": worker_command("browser", 1, f"browser-{pid}"),
        "web": web_command(listen, settings.web_processes, settings.web_threads),
    }


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from scanner.clamd_server import ClamdServer
    from scanner.jobs import RecordingJobQueue
    from scanner.services import Services

    listen = args.listen or settings.listen
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    Services.from_settings(settings, RecordingJobQueue())  # migrate once, before the workers race
    clamd = ClamdServer(settings)
    if not settings.clamd_tcp and not clamd.is_running():
        clamd.start()
        print(f"serve: clamd started on {settings.clamd_socket_path}", file=sys.stderr)
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
    code = EXIT_OK
    while not stopping:
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead:
            print(f"serve: {', '.join(dead)} exited; stopping the rest", file=sys.stderr)
            code = EXIT_FAIL
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


def cmd_bench_service(args: argparse.Namespace, settings: Settings) -> int:
    import tempfile
    import uuid

    import psycopg
    import redis

    from scanner.bench import _ensure_clamd
    from scanner.service_bench import run

    def stop(*_: object) -> None:
        # The bench starts servers in sessions of their own: on SIGTERM, unwind so the
        # finally blocks stop them instead of leaving workers on the shared broker.
        raise SystemExit(EXIT_ERROR)

    signal.signal(signal.SIGTERM, stop)
    admin = args.database_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"gatehouse_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis.Redis.from_url(args.broker_url).flushdb()
    url = args.database_url.rsplit("/", 1)[0] + "/" + name
    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-") as tmp:
        clamd_settings, server = _ensure_clamd(settings, Path(tmp))
        try:
            run(
                url,
                args.broker_url,
                Path(tmp),
                clamd_settings.clamd_socket_path,
                args.scans,
                set(args.only or ()),
            )
        finally:
            if server is not None:
                server.stop()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            redis.Redis.from_url(args.broker_url).flushdb()
    return EXIT_OK
