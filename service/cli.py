"""The ``gatehouse`` command: the scanner's commands and the service's, with one error policy.

Exit codes: 0 below the ``--fail-on`` bar (or no bar), 1 at or above it, 2 for usage or
internal errors, 130 when interrupted. No traceback reaches the user unless
GATEHOUSE_DEBUG=1. ``serve`` starts the other processes by module name (service.processes).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scanner import __version__
from scanner import cli as scanner_cli
from scanner.cli import UsageError
from scanner.config import Settings, SettingsError
from scanner.policy import PolicyError
from scanner.reports.terminal import TerminalSafeFormatter, terminal_safe

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 128 + signal.SIGINT
VERDICTS = {"pass": 0, "review": 1, "reject": 2}


class ServiceCommandError(Exception):
    """A service command cannot do what was asked; exit 2 with the message."""


def main(argv: Sequence[str] | None = None) -> int:
    debug = os.environ.get("GATEHOUSE_DEBUG") == "1"
    try:
        args = parser().parse_args(argv)
        handler = logging.StreamHandler()
        handler.setFormatter(TerminalSafeFormatter("%(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])
        settings = Settings.from_env()
        return int(args.func(args, settings))
    except (UsageError, SettingsError, PolicyError, ServiceCommandError) as exc:
        print(f"gatehouse: {terminal_safe(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("gatehouse: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        detail = terminal_safe(f"{type(exc).__name__}: {exc}")
        print(f"gatehouse: internal error: {detail}", file=sys.stderr)
        return EXIT_ERROR


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="gatehouse", description="Scan plugin bundles before they reach users."
    )
    top.add_argument("--version", action="version", version=f"gatehouse {__version__}")
    sub = top.add_subparsers(required=True, metavar="COMMAND")
    scanner_cli.add_commands(sub)
    add_commands(sub)
    return top


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
    create.add_argument("--user", help="the desk user a review token acts for")
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

    users = sub.add_parser("users", help="reviewer and admin accounts of the desk")
    usub = users.add_subparsers(required=True, metavar="ACTION")
    add = usub.add_parser("add", help="add a user and print a one-time password")
    add.add_argument("name")
    add.add_argument("--role", choices=("reviewer", "admin"), required=True)
    add.set_defaults(func=cmd_users_add)
    usub.add_parser("list", help="users and their state").set_defaults(func=cmd_users_list)
    reset = usub.add_parser("reset", help="a new one-time password (ends the user's sessions)")
    reset.add_argument("name")
    reset.set_defaults(func=cmd_users_reset)

    retro_cmd = sub.add_parser("retro", help="retro-scans of promoted versions")
    rsub = retro_cmd.add_subparsers(required=True, metavar="ACTION")
    rsub.add_parser("status", help="stale promoted versions and the plan").set_defaults(
        func=cmd_retro_status
    )
    rsub.add_parser(
        "plan", help="plan a rescan of every stale promoted version now (the workers run it)"
    ).set_defaults(func=cmd_retro_plan)

    pre = sub.add_parser("preflight", help="scan a bundle on a Gatehouse server (CI)")
    pre.add_argument("bundle", type=Path)
    pre.add_argument("--server", required=True, help="https://gatehouse.example")
    pre.add_argument("--format", choices=("json", "sarif"), default="json")
    pre.add_argument("--output", type=Path, help="write the report here (default: stdout)")
    pre.add_argument("--fail-on", choices=("review", "reject"))
    pre.add_argument("--timeout", type=float, default=900.0, help="seconds to wait in all")
    pre.add_argument(
        "--sarif-category", help="SARIF automationDetails.id category (default gatehouse/<name>)"
    )
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
        "--only",
        choices=("intake", "get", "review", "preflight", "throughput", "busy", "cdn", "retro"),
        action="append",
        help="run only these",
    )
    scanner_cli.add_peer_option(bench)
    bench.add_argument(
        "--throughput",
        type=int,
        nargs=2,
        default=(60, 3),
        metavar=("BUNDLES", "RUNS"),
        help="distinct 1 MB bundles per throughput run, and runs",
    )
    bench.set_defaults(func=cmd_bench_service)


def _services(settings: Settings) -> Any:
    from service.jobs import RecordingJobQueue
    from service.services import Services

    return Services.from_settings(settings, RecordingJobQueue())


def cmd_tokens_create(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from service.models import User
    from service.submissions import SubmissionError, publisher_named
    from service.tokens import TokenError, create_token

    svc = _services(settings)
    with svc.session() as s:
        try:
            publisher = publisher_named(s, args.publisher, "cli") if args.publisher else None
        except SubmissionError as exc:
            raise ServiceCommandError(f"--publisher {args.publisher!r}: {exc}") from None
        user = s.scalar(select(User).where(User.name == args.user)) if args.user else None
        if args.user and user is None:
            raise ServiceCommandError(f"no user {args.user}")
        try:
            row, plaintext = create_token(
                s,
                args.name,
                set(args.scope),
                publisher=publisher,
                hourly_limit=args.hourly_limit,
                user=user,
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

    from service.models import ApiToken

    with _services(settings).session() as s:
        for t in s.scalars(select(ApiToken).order_by(ApiToken.id)):
            state = "revoked" if t.revoked_at else "active"
            print(f"{t.id}\t{t.prefix}…\t{t.scopes}\t{state}\t{t.name}")
    return EXIT_OK


def cmd_tokens_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from service.tokens import TokenError, revoke

    with _services(settings).session() as s:
        try:
            revoke(s, args.id)
        except TokenError as exc:
            raise ServiceCommandError(str(exc)) from None
    print(f"token {args.id} revoked")
    return EXIT_OK


def cmd_publishers_list(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from service.models import Publisher

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
    from service.audit import audit
    from service.submissions import SubmissionError, publisher_named

    with _services(settings).session() as s:
        try:
            p = publisher_named(s, args.publisher, "cli")
        except SubmissionError as exc:
            raise ServiceCommandError(f"{args.publisher!r}: {exc}") from None
        p.daily_limit = args.daily_limit
        audit(s, "cli", "publisher.limit", "publisher", p.id, {"daily_limit": args.daily_limit})
    print(f"{args.publisher}: {args.daily_limit} submissions a day")
    return EXIT_OK


def cmd_users_add(args: argparse.Namespace, settings: Settings) -> int:
    from service.review.accounts import AccountError, create_user

    with _services(settings).session() as s:
        try:
            user, password = create_user(s, args.name, args.role, "cli")
        except AccountError as exc:
            raise ServiceCommandError(str(exc)) from None
        print(
            f"user {user.name} ({user.role}); one-time password, to be changed at first"
            " sign-in (shown once):",
            file=sys.stderr,
        )
    print(password)
    return EXIT_OK


def cmd_users_list(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from service.models import User

    with _services(settings).session() as s:
        for u in s.scalars(select(User).order_by(User.name)):
            state = (
                "disabled"
                if u.disabled_at
                else "must set password"
                if u.must_change_password
                else "active"
            )
            print(f"{u.name}\t{u.role}\t{state}")
    return EXIT_OK


def cmd_users_reset(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from service.models import User
    from service.review.accounts import reset_password

    with _services(settings).session() as s:
        user = s.scalar(select(User).where(User.name == args.name))
        if user is None:
            raise ServiceCommandError(f"no user {args.name}")
        password = reset_password(s, user, "cli")
    print(password)
    return EXIT_OK


def cmd_retro_status(args: argparse.Namespace, settings: Settings) -> int:
    from service.cdn import retro

    p = retro.progress(_services(settings))
    rate = f"{p.per_hour:.0f}/h" if p.per_hour else "no rescan finished in the last hour"
    print(
        f"rules {p.current_ruleset} advisories {p.current_advisories}\n"
        f"plan {p.generation} ({p.reason}): {p.running} running, {p.planned} waiting,"
        f" {p.done} done; {rate}; {len(p.stale)} of {p.total_promoted} promoted stale"
    )
    for v in p.stale:
        eta = v.eta.isoformat(timespec="minutes") if v.eta else "-"
        print(f"{v.plugin}@{v.version}\t{v.state or 'unplanned'}\t{eta}\t{v.retro_state or ''}")
    return EXIT_OK


def cmd_retro_plan(args: argparse.Namespace, settings: Settings) -> int:
    from service.audit import audit
    from service.cdn import retro

    svc = _services(settings)
    generation = retro.detect(svc, reason="manual")
    with svc.session() as s:
        audit(s, "cli", "retro.requested", "retro", generation or 0)
    print(
        f"retro plan {generation}: the workers rescan stale promoted versions from the next sweep"
    )
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from service.processes import serve

    return serve(settings, args.listen or settings.listen)


def cmd_preflight(args: argparse.Namespace, settings: Settings) -> int:
    from service.preflight import PreflightError, run_preflight

    token = os.environ.get("GATEHOUSE_TOKEN", "")
    if not token:
        raise ServiceCommandError("set GATEHOUSE_TOKEN to a token with the preflight scope")
    if not args.bundle.is_file():
        raise ServiceCommandError(f"{args.bundle}: no such file")
    if args.output is not None:
        scanner_cli.require_directory(args.output.parent, args.output)
    try:
        report = run_preflight(
            args.bundle, args.server, token, args.format, args.timeout, args.sarif_category
        )
    except PreflightError as exc:
        raise ServiceCommandError(str(exc)) from None
    if args.output is None:
        sys.stdout.write(report.text)
    else:
        scanner_cli.write_atomically(args.output, report.text)
    print(f"{args.bundle.name}: {report.verdict}", file=sys.stderr)
    if args.fail_on and VERDICTS[report.verdict] >= VERDICTS[args.fail_on]:
        return EXIT_FAIL
    return EXIT_OK


def cmd_bench_service(args: argparse.Namespace, settings: Settings) -> int:
    import tempfile
    import uuid

    import psycopg
    import redis

    from scanner.bench import _ensure_clamd
    from service.bench import run

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
                args.guarddog,
                tuple(args.throughput),
            )
        finally:
            if server is not None:
                server.stop()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            redis.Redis.from_url(args.broker_url).flushdb()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
