"""Issue 16's figures: scans beside GuardDog, JS analysis MB/s, detonations at once, memory.

Every figure is min/median/max over several runs, each on fresh content (clamd caches
results by hash). The peer, GuardDog, is a separate installation (a scratch venv outside
the project), named by ``--guarddog`` or ``GATEHOUSE_BENCH_GUARDDOG``, and runs in an
empty network namespace so its start-up cache refresh fails at once instead of waiting
on the network; without it the figures say "peer unavailable".
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scanner.bench_data import bench_plugin, sized_sample
from scanner.config import MiB, Settings

PEER_ENV = "GATEHOUSE_BENCH_GUARDDOG"
# Issue 16: what a full scan of a 1 MB bundle costs at the least on this machine type.
FLOOR_1MB_S = 0.9
COLD_SIZES = (("19 KB", 19 * 1024), ("1 MB", MiB), ("10 MB", 10 * MiB))
# Appended to every sample so the runtime stage has a plugin to mount and provoke.
MOUNT = (
    b"\n;var Bench={mount:function(c){var p=document.createElement('p');"
    b"p.textContent='ok';c.appendChild(p);return function(){c.removeChild(p)}}};\n"
)
UNAVAILABLE = "peer unavailable"


class PeerError(RuntimeError):
    """The peer ran but did not complete its scan."""


@dataclass(frozen=True)
class Spread:
    """Several measurements of one figure."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def text(self, unit: str = "s", digits: int = 2) -> str:
        lo, mid, hi = min(self.values), self.median, max(self.values)
        return f"{lo:.{digits}f}/{mid:.{digits}f}/{hi:.{digits}f} {unit}"


def ratio(ours: Spread, theirs: Spread | None) -> str:
    """Our median over theirs, or why there is no ratio."""
    if theirs is None:
        return UNAVAILABLE
    return f"{ours.median / theirs.median:.1f}x"


class Peer:
    """GuardDog's npm scan of a bundle, cold (a fresh process), without network."""

    def __init__(self, executable: Path) -> None:
        self.executable = executable

    @classmethod
    def find(cls, option: Path | None) -> Peer | None:
        """The peer named by the option or the environment, if it can be run."""
        named = option or (Path(os.environ[PEER_ENV]) if os.environ.get(PEER_ENV) else None)
        if named is None or not os.access(named, os.X_OK) or shutil.which("unshare") is None:
            return None
        return cls(named)

    def command(self, target: Path) -> list[str]:
        # As root a new network namespace needs nothing more; otherwise a user namespace.
        unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]
        return [*unshare, str(self.executable), "npm", "scan", str(target)]

    def scan_seconds(self, target: Path) -> float:
        start = time.perf_counter()
        proc = subprocess.run(self.command(target), capture_output=True, check=False)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise PeerError(f"guarddog exited {proc.returncode}: {proc.stderr[-300:]!r}")
        return elapsed


def plugin_bundle(path: Path, js: bytes) -> Path:
    """A bundle with a manifest and one entry file: what every figure here scans."""
    return bench_plugin(path, js + MOUNT)


def sample(size: int, seed: int, reals: Sequence[bytes]) -> bytes:
    """Copies of the largest real library not over 1.5 times ``size``, else synthetic."""
    fitting = [r for r in reals if len(r) <= size * 1.5]
    real = max(fitting, key=len) if fitting else None
    return sized_sample(size, seed, real) + f"/*{seed}-{time.time_ns()}*/".encode()


def cli_command(bundle: Path) -> list[str]:
    """``gatehouse scan`` as a user runs it: a fresh interpreter, the whole command."""
    return [sys.executable, "-m", "service.cli", "scan", str(bundle), "--format", "json"]


def _cli_env(settings: Settings, scratch: Path) -> dict[str, str]:
    return {
        **os.environ,
        "GATEHOUSE_DATA_DIR": str(settings.data_dir),
        "GATEHOUSE_WORK_ROOT": str(scratch / "work"),
        **({"GATEHOUSE_CLAMD_SOCKET": settings.clamd_socket} if settings.clamd_socket else {}),
    }


def cli_seconds(bundle: Path, env: dict[str, str]) -> tuple[float, str]:
    """Wall time of one cold ``gatehouse scan`` and the verdict it printed."""
    start = time.perf_counter()
    proc = subprocess.run(cli_command(bundle), capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1) or not proc.stdout:
        raise PeerError(f"gatehouse scan exited {proc.returncode}: {proc.stderr[-300:]!r}")
    return elapsed, str(json.loads(proc.stdout)["verdict"])


def bench_cold(
    settings: Settings, scratch: Path, peer: Peer | None, runs: int, reals: Sequence[bytes]
) -> dict[str, Spread | None]:
    """Cold CLI scans (fresh processes) beside GuardDog's, interleaved run by run.

    Returns GuardDog's figure per size (the warm figures are compared with its 1 MB one)."""
    env = _cli_env(settings, scratch)
    (scratch / "work").mkdir(exist_ok=True)
    # The first scan of a fresh data dir imports the advisory snapshot: not a cold figure.
    cli_seconds(plugin_bundle(scratch / "cold-warmup.zip", sample(1024, 0, ())), env)
    peers: dict[str, Spread | None] = {}
    print(f"cold `gatehouse scan` (fresh process, all stages) beside GuardDog, {runs} runs:")
    for label, size in COLD_SIZES:
        ours: list[float] = []
        theirs: list[float] = []
        verdict = ""
        for i in range(runs):
            bundle = plugin_bundle(scratch / f"cold-{size}-{i}.zip", sample(size, i, reals))
            seconds, verdict = cli_seconds(bundle, env)
            ours.append(seconds)
            if peer is not None:
                theirs.append(peer.scan_seconds(bundle))
            bundle.unlink()
        mine, peers[label] = Spread(tuple(ours)), Spread(tuple(theirs)) if theirs else None
        beside = f"GuardDog {peers[label].text()}" if peers[label] else UNAVAILABLE  # type: ignore[union-attr]
        print(
            f"  {label:>6}: gatehouse {mine.text()} (verdict {verdict}), {beside},"
            f" ratio {ratio(mine, peers[label])}"
        )
    refused = scratch / "not-an-archive.zip"
    refused.write_bytes(b"this is not a zip archive\n" * 100)
    times = Spread(tuple(_refused_seconds(refused, env) for _ in range(runs)))
    print(f"  refused at intake (not an archive): gatehouse {times.text()}")
    return peers


def _refused_seconds(bundle: Path, env: dict[str, str]) -> float:
    return cli_seconds(bundle, env)[0]


def bench_warm(
    settings: Settings, scratch: Path, runs: int, reals: Sequence[bytes], peer_1mb: Spread | None
) -> None:
    """Full scans (every stage, the browser too) in one warm process: what a service
    worker pays per 1 MB bundle once its processes and browser are up."""
    from scanner.pipeline import build_stages, default_stage_factories, scan_bundle
    from scanner.policy import Policy

    policy = Policy.load(settings.policy_path)
    stages, unavailable = build_stages(settings, default_stage_factories())
    if unavailable:
        print("  stages unavailable:", ", ".join(f"{s.name} ({s.error})" for s in unavailable))
    times: list[float] = []
    cpu: list[float] = []
    for i in range(runs + 2):  # two warm-ups: workers, rules and the browser start
        bundle = plugin_bundle(scratch / f"warm-{i}.zip", sample(MiB, i, reals))
        start, cpu_start = time.perf_counter(), _children_cpu()
        scan_bundle(bundle, settings, stages, policy)
        if i >= 2:
            times.append(time.perf_counter() - start)
            cpu.append(_children_cpu() - cpu_start)
        bundle.unlink()
    full = Spread(tuple(times))
    floor = Spread((FLOOR_1MB_S,))
    peer = f"GuardDog static {peer_1mb.text()}" if peer_1mb else f"GuardDog static: {UNAVAILABLE}"
    print(
        f"warm full scan of a 1 MB bundle (all stages, browser warm, {runs} runs):"
        f" p50 {full.median:.2f} s ({full.text()}); {peer}, ratio {ratio(full, peer_1mb)};"
        f" floor {FLOOR_1MB_S:.1f} s, ratio {ratio(full, floor)};"
        f" CPU of this process and its workers {Spread(tuple(cpu)).text('CPU-s')}"
    )


def _children_cpu() -> float:
    """CPU time of this process (user + system); the stage workers report theirs on exit
    only, so the warm figure adds the live workers' from /proc."""
    from scanner.stagepool import shared_pool

    total = sum(os.times()[:2])
    for pid in shared_pool(os.cpu_count() or 1).pids():
        total += _proc_cpu(pid)
    return total


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_js(settings: Settings, scratch: Path, runs: int, reals: Sequence[bytes]) -> None:
    """JS analysis alone: one 1 MB minified file in this process (one core), then a
    bundle of four such files on the stage pool (its processes, every core)."""
    from scanner.pipeline import make_stage, run_stages
    from scanner.stages.js_static import JsStaticStage
    from scanner.workspace import Workspace

    stage = JsStaticStage.from_settings(settings)
    kinds = [("synthetic", ())] + [(f"real {len(r) / MiB:.2f} MB", (r,)) for r in reals[-1:]]
    print(f"JS analysis (js-static: parse once, every rule), {runs} runs:")
    for what, real in kinds:
        root = scratch / f"js-{what.split()[0]}"
        (root / "dist").mkdir(parents=True)
        code = sample(MiB, 1, real)
        (root / "dist" / "bundle.js").write_bytes(code)
        ws = Workspace.from_directory(root)
        one = measure(lambda ws=ws: stage.run(ws), runs)  # type: ignore[misc]
        mb = len(code) / MiB
        print(f"  one {mb:.2f} MB file ({what}), one process: {_rate(mb, one)}")
    root = scratch / "js-multi"
    (root / "dist").mkdir(parents=True)
    for i in range(4):
        (root / "dist" / f"part{i}.js").write_bytes(sample(MiB, 10 + i, reals[-1:]))
    ws = Workspace.from_directory(root)
    pooled = make_stage(JsStaticStage.from_settings, settings)
    many = measure(lambda: run_stages(ws, [pooled], settings.stage_timeout), runs)
    mb = sum(f.size for f in ws.files) / MiB
    print(
        f"  four files, {mb:.2f} MB, on {settings.stage_processes} worker processes:"
        f" {_rate(mb, many)}"
    )


def _rate(mb: float, took: Spread) -> str:
    rates = Spread(tuple(mb / t for t in took.values))
    return f"{rates.text('MB/s')} (min/median/max), {took.median * 1000:.0f} ms median"


def measure(fn: Callable[[], object], runs: int) -> Spread:
    """``fn`` timed ``runs`` times after one warm-up."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Spread(tuple(times))


def bench_detonations(settings: Settings, scratch: Path, runs: int, reals: Sequence[bytes]) -> None:
    """Both roles of a 1 MB bundle on one warm browser: side by side, then one after the
    other (as before issue 16), interleaved; and the browser's CPU per bundle."""
    from sandbox.browser import BrowserPool, BrowserSettings
    from scanner.intake import unpack
    from scanner.stages.runtime import RuntimeStage
    from scanner.workspace import Workspace

    bundle = plugin_bundle(scratch / "detonate.zip", sample(MiB, 3, reals))
    root = scratch / "detonate"
    root.mkdir()
    ws = Workspace(root, tuple(unpack(bundle, root, settings.archive)))
    together = max(1, os.cpu_count() or 1)
    pools = {
        n: BrowserPool(BrowserSettings(executable=settings.chromium_path, parallel=n))
        for n in sorted({1, together})
    }
    stages = {n: RuntimeStage(p, settings.detonation_timeout) for n, p in pools.items()}
    times: dict[int, list[float]] = {n: [] for n in pools}
    cpu: dict[int, list[float]] = {n: [] for n in pools}
    try:
        for stage in stages.values():
            stage.run(ws)  # the browser starts
        for _ in range(runs):
            for n, stage in stages.items():
                session = pools[n]._session
                jail = session.jail if session is not None else None
                before = jail.cpu_seconds() if jail else 0.0
                start = time.perf_counter()
                result = stage.run(ws)
                times[n].append(time.perf_counter() - start)
                cpu[n].append((jail.cpu_seconds() if jail else 0.0) - before)
                if result.error:
                    print(f"  detonation: {result.status.value} {result.error}")
    finally:
        for pool in pools.values():
            pool.close()
    print(f"detonations of a 1 MB bundle, user + admin, warm browser, {runs} runs:")
    for n in pools:
        how = "one after the other" if n == 1 else f"{n} at once"
        print(
            f"  {how}: {Spread(tuple(times[n])).text()} per bundle,"
            f" browser CPU {Spread(tuple(cpu[n])).text('CPU-s')}"
        )


def bench_memory(settings: Settings, scratch: Path, scans: int, reals: Sequence[bytes]) -> None:
    """Peak and current RSS of each stage worker, of the scanning process and of the
    browser, after 50 full scans and after ``scans``: growth shows as the difference."""
    from scanner.pipeline import build_stages, default_stage_factories, scan_bundle
    from scanner.policy import Policy
    from scanner.stagepool import shared_pool

    policy = Policy.load(settings.policy_path)
    stages, _ = build_stages(settings, default_stage_factories())
    marks = sorted({min(50, scans), scans})
    print(f"memory over {scans} full scans of 1 MB bundles in one process:")
    for i in range(1, scans + 1):
        bundle = plugin_bundle(scratch / "rss.zip", sample(MiB, i, reals))
        scan_bundle(bundle, settings, stages, policy)
        if i in marks:
            pids = shared_pool(settings.stage_processes).pids()
            workers = ", ".join(_rss(pid) for pid in pids) or "none"
            print(
                f"  after {i} scans: stage workers {workers} (peak/now);"
                f" scanning process {_rss(os.getpid())}; browser {_browser_mb(stages)}"
            )


def _rss(pid: int) -> str:
    """'peak/now MB' of a process (VmHWM/VmRSS)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "gone"
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    peak, now = (int(fields[k].split()[0]) / 1024 for k in ("VmHWM", "VmRSS"))
    return f"{peak:.0f}/{now:.0f} MB"


def _browser_mb(stages: Sequence[object]) -> str:
    """The warm browser's memory now (proportional set size of its jail's processes)."""
    for stage in stages:
        pool = getattr(getattr(stage, "detonator", None), "pool", None)
        session = pool()._session if callable(pool) else None
        if session is not None and session.jail is not None:
            return f"{session.jail.memory_bytes() / MiB:.0f} MB PSS"
    return "not running"
