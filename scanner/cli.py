"""The analysis commands of ``gatehouse``: scan, sbom, clamd, advisories, libraries, bench.

Exit codes: 0 below the ``--fail-on`` bar (or no bar), 1 at or above it, 2 for usage or
internal errors (service.cli turns errors into messages; no traceback reaches the user).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanner.config import Settings
from scanner.libraries.commands import add_library_commands
from scanner.policy import Policy, Verdict

if TYPE_CHECKING:
    from scanner.advisories.store import AdvisoryStore

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
BENCH_PARTS = (
    "cold",
    "warm",
    "js",
    "detonations",
    "memory",
    "static",
    "bomb",
    "intake",
    "advisories",
    "runtime",
)


def add_peer_option(parser: argparse.ArgumentParser) -> None:
    """``--guarddog``: the peer both benchmark commands print beside their figures."""
    parser.add_argument(
        "--guarddog",
        type=Path,
        help="the peer's guarddog executable, in a venv of its own"
        " (default: $GATEHOUSE_BENCH_GUARDDOG)",
    )


class UsageError(Exception):
    """The command line asks for something impossible; exit 2 with the message."""


def add_commands(sub: Any) -> None:
    """The analysis commands; the ``gatehouse`` command is assembled in service.cli."""
    scan = sub.add_parser("scan", help="scan one bundle and print a report")
    scan.add_argument("bundle", type=Path)
    scan.add_argument("--format", choices=("json", "sarif", "text"), default="text")
    scan.add_argument(
        "--output", type=Path, help="write the report here instead of standard output"
    )
    scan.add_argument(
        "--fail-on", choices=("review", "reject"), help="exit 1 when the verdict is at least this"
    )
    scan.add_argument(
        "--keep-workdir", type=Path, help="copy the unpacked bundle here for inspection"
    )
    scan.add_argument("--artifacts", type=Path, help="write traces and screenshots to this folder")
    scan.add_argument(
        "--sarif-category",
        help="SARIF automationDetails.id category (default gatehouse/<plugin name>): one per"
        " bundle scanned in a repository, so uploads do not replace each other",
    )
    scan.set_defaults(func=_cmd_scan)

    clamd = sub.add_parser("clamd", help="run the embedded clamd with the project's signatures")
    clamd.add_argument(
        "action", choices=("start", "stop", "status", "foreground"), nargs="?", default="start"
    )
    clamd.set_defaults(func=_cmd_clamd)

    adv = sub.add_parser("advisories", help="manage the offline advisory database")
    adv_sub = adv.add_subparsers(required=True, metavar="ACTION")
    imp = adv_sub.add_parser(
        "import", help="import OSV (dir, all.zip, .json/.jsonl/.yaml) or RetireJS files"
    )
    imp.add_argument("paths", nargs="+", type=Path)
    imp.add_argument("--snapshot", help="the date the data was current (default: newest record)")
    imp.set_defaults(func=_cmd_advisories_import)
    st = adv_sub.add_parser("status", help="sources, counts per ecosystem, freshness")
    st.set_defaults(func=_cmd_advisories_status)
    snap = adv_sub.add_parser(
        "build-snapshot", help="rebuild rules/advisories from advisory sources"
    )
    snap.add_argument(
        "source", type=Path, help="a folder with pypa-advisory-database/ and retirejs/"
    )
    snap.add_argument("--output", type=Path, required=True)
    snap.set_defaults(func=_cmd_advisories_snapshot)

    add_library_commands(sub)

    sbom = sub.add_parser("sbom", help="write a CycloneDX JSON SBOM of a bundle's components")
    sbom.add_argument("bundle", type=Path)
    sbom.add_argument("--output", type=Path)
    sbom.set_defaults(func=_cmd_sbom)

    bench = sub.add_parser("bench", help="print the speed figures of the scanning core")
    bench.add_argument("--corpus", type=Path, help="the labelled corpus (for the zip bomb figure)")
    bench.add_argument("--repeat", type=int, default=5, help="runs per figure")
    bench.add_argument(
        "--js",
        type=Path,
        action="append",
        default=[],
        help="a real minified library to measure copies of (repeat: each size uses the largest"
        " one not over 1.5 times it, e.g. a 19 KB and a 1 MB library)",
    )
    bench.add_argument("--advisories", type=Path, help="advisory sources to time the import with")
    add_peer_option(bench)
    bench.add_argument(
        "--memory-scans",
        type=int,
        default=0,
        help="also print RSS per stage worker after this many full scans (e.g. 500; long)",
    )
    bench.add_argument(
        "--only", choices=BENCH_PARTS, action="append", help="run only these parts (repeatable)"
    )
    bench.set_defaults(func=_cmd_bench)


def _cmd_scan(args: argparse.Namespace, settings: Settings) -> int:
    from scanner.pipeline import build_stages, default_stage_factories, scan_bundle
    from scanner.reports import RENDERERS
    from scanner.reports.sarif import automation_id, render_sarif

    bundle: Path = args.bundle
    if not bundle.is_file():
        raise UsageError(f"{bundle}: no such file")
    if args.sarif_category is not None:
        try:
            automation_id(args.sarif_category)
        except ValueError as exc:
            raise UsageError(f"--sarif-category: {exc}") from None
    for wanted in (args.output, args.artifacts, args.keep_workdir):
        if wanted is not None:
            require_directory(wanted.parent, wanted)
    policy = Policy.load(settings.policy_path)
    stages, unavailable = build_stages(settings, default_stage_factories())
    result = scan_bundle(
        bundle, settings, stages, policy, unavailable=unavailable, keep_workdir=args.keep_workdir
    )
    if args.artifacts:
        require_directory(args.artifacts.parent, args.artifacts)
        args.artifacts.mkdir(exist_ok=True)
        for stage in result.stages:
            for name, data in stage.artifacts.items():
                (args.artifacts / f"{stage.name}-{name}").write_bytes(data)
    if args.format == "sarif":
        report = render_sarif(result, args.sarif_category)
    else:
        report = RENDERERS[args.format](result)
    if args.output:
        write_atomically(args.output, report)
        print(
            f"{bundle.name}: {result.decision.verdict.label} (report in {args.output})",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(report)
    if args.fail_on and result.decision.verdict >= Verdict.parse(args.fail_on):
        return EXIT_FAIL
    return EXIT_OK


def write_atomically(path: Path, text: str) -> None:
    """A report is either whole or absent: never a half-written file."""
    require_directory(path.parent, path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def require_directory(directory: Path, for_path: Path) -> None:
    """Output goes where it was asked or nowhere: a typo in a path is not a new tree."""
    if not directory.is_dir():
        raise UsageError(f"{for_path}: directory {directory} does not exist")


def _cmd_clamd(args: argparse.Namespace, settings: Settings) -> int:
    from scanner.clamd_server import ClamdServer, ClamdStartError

    server = ClamdServer(settings)
    try:
        if args.action == "status":
            running = server.is_running()
            print(f"clamd {'is' if running else 'is not'} running on {settings.clamd_socket_path}")
            return EXIT_OK if running else EXIT_FAIL
        if args.action == "stop":
            print("clamd stopped" if server.stop() else "clamd was not running")
            return EXIT_OK
        if args.action == "foreground":
            return server.run_foreground()
        if server.is_running():
            print(f"clamd already running on {settings.clamd_socket_path}")
            return EXIT_OK
        proc = server.start()
        print(
            f"clamd started (pid {proc.pid}) on {settings.clamd_socket_path}; config {server.conf}"
        )
        return EXIT_OK
    except ClamdStartError as exc:
        raise UsageError(str(exc)) from None


def _advisory_store(settings: Settings) -> AdvisoryStore:
    from scanner.advisories.store import AdvisoryStore
    from scanner.db import database_url, make_engine

    return AdvisoryStore(make_engine(database_url(settings)))


def _cmd_advisories_import(args: argparse.Namespace, settings: Settings) -> int:
    from scanner.advisories.feeds import FeedError, read_feed
    from scanner.advisories.store import import_warnings

    store = _advisory_store(settings)
    for path in args.paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or directory")
        start = time.perf_counter()
        try:
            feed = read_feed(path)
        except (FeedError, ValueError, OSError) as exc:
            raise UsageError(f"{path}: cannot import: {exc}") from None
        feed.snapshot = args.snapshot or feed.snapshot
        with store.importing():  # never beside a worker importing the snapshot
            count = store.import_feed(feed)
        elapsed = time.perf_counter() - start
        print(
            f"{feed.name}: {count} advisories, {len(feed.detectors)} detectors in {elapsed:.1f} s"
        )
        if feed.warnings:
            # Kept, not dropped: a scan meeting their library's text records a coverage gap.
            print(f"warning: {len(feed.warnings)} detector patterns cannot run on RE2:")
            for line in feed.warnings:
                print(f"  {line}")
        warnings = import_warnings(feed)
        if warnings:
            print(f"  warning: {len(warnings)} range bounds could not be read (advisories status)")
    return EXIT_OK


def _cmd_advisories_status(args: argparse.Namespace, settings: Settings) -> int:
    from scanner.advisories.snapshot import ensure_snapshot
    from scanner.advisories.store import STALE_AFTER_DAYS
    from scanner.reports.terminal import terminal_safe

    store = _advisory_store(settings)
    if ensure_snapshot(store, settings.rules_dir):
        print("imported the shipped offline snapshot (rules/advisories)")
    today = datetime.now(UTC).date()
    stale = False
    for s in store.status():
        counts = ", ".join(f"{eco} {n}" for eco, n in sorted(s.per_ecosystem.items()))
        age = ""
        if s.snapshot:
            days = (today - date.fromisoformat(s.snapshot[:10])).days
            stale |= days > STALE_AFTER_DAYS
            age = f", {days} days old" + (" (STALE)" if days > STALE_AFTER_DAYS else "")
        print(
            f"{s.name}: {s.advisories} advisories ({counts}); data as of {s.snapshot or '?'}{age};"
            f" newest record {s.newest_modified or '?'}; imported {s.imported_at:%Y-%m-%d %H:%M}"
        )
        if s.warning_count:
            print(f"  warning: {s.warning_count} range bounds could not be read, e.g.:")
            for line in s.warnings[:5]:
                print(f"    {terminal_safe(line)}")
    if stale:
        print(
            f"warning: some sources are older than {STALE_AFTER_DAYS} days; import fresh data "
            "(OSV all.zip exports, RetireJS repository files)"
        )
    return EXIT_OK


def _cmd_advisories_snapshot(args: argparse.Namespace, settings: Settings) -> int:
    from scanner.advisories.snapshot import build_snapshot

    sources = build_snapshot(args.source, args.output)
    print(f"wrote {len(sources)} sources to {args.output}")
    return EXIT_OK


def _cmd_sbom(args: argparse.Namespace, settings: Settings) -> int:
    from scanner.pipeline import build_stages, scan_bundle
    from scanner.sbom import build_sbom
    from scanner.stages.dependencies import DependencyStage

    if not args.bundle.is_file():
        raise UsageError(f"{args.bundle}: no such file")
    stages, unavailable = build_stages(settings, [DependencyStage.from_settings])
    policy = Policy.load(settings.policy_path)
    result = scan_bundle(args.bundle, settings, stages, policy, unavailable=unavailable)
    text = build_sbom(result)
    if args.output:
        write_atomically(args.output, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from scanner.bench import BenchOptions, run_bench

    options = BenchOptions(
        corpus=args.corpus,
        repeat=args.repeat,
        real_js=tuple(args.js),
        advisories=args.advisories,
        guarddog=args.guarddog,
        memory_scans=args.memory_scans,
        only=frozenset(args.only or ()),
    )
    return run_bench(settings, options)
