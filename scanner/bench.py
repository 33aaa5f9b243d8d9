"""`gatehouse bench`: the speed figures of the scanning core, measured, not assumed."""

from __future__ import annotations

import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from scanner.bench_data import bench_plugin, sized_sample, synthetic_minified_js
from scanner.clamd_server import ClamdServer
from scanner.config import MiB, Settings
from scanner.pipeline import build_stages, default_stage_factories, scan_bundle
from scanner.policy import Policy
from scanner.stagepool import shared_pool
from scanner.stages.runtime import RuntimeStage

if TYPE_CHECKING:
    from scanner import bench_speed

__all__ = ["run_bench", "sized_sample", "synthetic_minified_js", "zeros_bomb"]

SIZES = (("100 KB", 100 * 1024), ("1 MB", 1024 * 1024), ("10 MB", 10 * 1024 * 1024))
BOMB_BYTES = 2 * 1024 * MiB


def _bundle(path: Path, js: bytes) -> Path:
    return bench_plugin(path, js)


def _ensure_clamd(settings: Settings, scratch: Path) -> tuple[Settings, ClamdServer | None]:
    if ClamdServer(settings).is_running():
        return settings, None
    private = replace(settings, data_dir=scratch / "clamd-data", clamd_socket="")
    server = ClamdServer(private)
    server.start()
    return private, server


def bench_static(settings: Settings, scratch: Path, repeat: int, real_js: Path | None) -> None:
    policy = Policy.load(settings.policy_path)
    # Static stages only: the browser has its own figure (bench_runtime).
    static = [
        f for f in default_stage_factories() if getattr(f, "__self__", None) is not RuntimeStage
    ]
    stages, unavailable = build_stages(settings, static)
    if unavailable:
        print("  stages unavailable:", ", ".join(f"{s.name} ({s.error})" for s in unavailable))
    source = real_js.read_bytes() if real_js else None
    what = f"copies of {real_js.name}" if real_js else "synthetic minified code"
    count = len(stages) + 1  # with intake
    print(f"static stages (all {count}, real clamd) on {what}, warm, median of {repeat}:")
    for label, size in SIZES:
        if source is not None and size < len(source) // 2:
            continue  # a real library cannot be cut smaller than itself
        times: list[float] = []
        cpu: list[float] = []
        per_stage: dict[str, list[float]] = {}
        for i in range(repeat + 1):
            # Fresh content each run: clamd caches results by hash and would flatter repeats.
            js = sized_sample(size, i, source) + f"/*{time.time_ns()}*/".encode()
            bundle = _bundle(scratch / f"bench-{size}-{i}.zip", js)
            pids = shared_pool(settings.stage_processes).pids()
            cpu_start = scan_cpu(pids)
            start = time.perf_counter()
            result = scan_bundle(bundle, settings, stages, policy)
            elapsed = time.perf_counter() - start
            used = scan_cpu(pids) - cpu_start
            bundle.unlink()
            if i == 0:
                continue  # warm-up
            times.append(elapsed)
            cpu.append(used)
            for s in result.stages:
                per_stage.setdefault(s.name, []).append(s.duration_ms)
        med = statistics.median(times)
        ranked = sorted(((statistics.median(v), k) for k, v in per_stage.items()), reverse=True)
        stage_text = ", ".join(f"{k} {v:.0f} ms" for v, k in ranked[:3])
        mb = len(js) / MiB
        print(
            f"  {label:>6} ({mb:5.2f} MB): {med * 1000:6.0f} ms"
            f" ({mb / med:5.2f} MB/s), CPU {statistics.median(cpu) * 1000:5.0f} ms; {stage_text}"
        )


def scan_cpu(worker_pids: list[int]) -> float:
    """CPU seconds used so far by this process and the stage workers: unlike the wall
    clock, it does not depend on what else the machine runs (clamd's not included)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for pid in worker_pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a worker replaced meanwhile: its time is lost, not invented
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def deflated_zip(name: str, deflated: bytes, size: int, crc: int) -> bytes:
    """A one-entry zip around an already-deflated stream, so a bomb need not be inflated."""
    raw_name = name.encode()
    local = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(deflated), size, len(raw_name), 0
    )
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII",
        b"PK\x01\x02",
        20,
        20,
        0,
        8,
        0,
        0,
        crc,
        len(deflated),
        size,
        len(raw_name),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    cd_offset = len(local) + len(raw_name) + len(deflated)
    cd = central + raw_name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(cd), cd_offset, 0)
    return local + raw_name + deflated + cd + end


def zeros_bomb(size: int) -> bytes:
    """``size`` bytes of zeros (under 4 GiB) deflated into a one-entry zip."""
    chunk = b"\0" * MiB
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = bytearray()
    crc = 0
    for _ in range(size // MiB):
        deflated += comp.compress(chunk)
        crc = zlib.crc32(chunk, crc)
    deflated += comp.flush()
    return deflated_zip("dist/bundle.js", bytes(deflated), size, crc)


_CHILD = (
    # The whole gatehouse command (assembled by the service package), as a user runs it.
    "import sys\nfrom service.cli import main\ncode = main(sys.argv[1:])\n"
    # VmHWM is this process's own peak; ru_maxrss would include the parent's pages from
    # before exec, since a fork starts as a copy of the benchmark process.
    "peak = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
    "sys.stderr.write(peak)\nsys.exit(code)\n"
)


def bench_bomb(settings: Settings, scratch: Path, corpus: Path | None) -> None:
    bomb = corpus / "pa04-zip-bomb.zip" if corpus else None
    if bomb is None or not bomb.exists():
        bomb = scratch / "bomb.zip"
        bomb.write_bytes(zeros_bomb(BOMB_BYTES))
    cmd = [sys.executable, "-c", _CHILD, "scan", str(bomb), "--format", "json"]
    env = {
        **os.environ,
        "GATEHOUSE_DATA_DIR": str(settings.data_dir),
        "GATEHOUSE_WORK_ROOT": str(scratch / "work"),
    }
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    report = json.loads(proc.stdout) if proc.stdout else None
    err = proc.stderr.decode()
    peak_kb = int(err.split("VmHWM:")[-1].split()[0]) if "VmHWM:" in err else -1
    print(f"zip bomb ({bomb.name}, {bomb.stat().st_size / MiB:.1f} MB packed):")
    if report is None:
        print(f"  no report: exit {proc.returncode}: {err[-300:]}")
        return
    rule = report["findings"][0]["rule_id"] if report["findings"] else "-"
    print(
        f"  {report['verdict']} by {rule} in {elapsed:.2f} s (whole process, start-up included),"
        f" peak RSS {peak_kb / 1024:.0f} MB"
    )


def bench_intake(settings: Settings, scratch: Path, corpus: Path | None, repeat: int) -> None:
    """Intake as scans run it (budgeted child process, then the repack) against the bare
    parser in this process: the difference is what the OS-enforced budget costs."""
    from scanner.intake import unpack, unpack_confined
    from scanner.repack import write_repack

    bundles = [_bundle(scratch / "intake-1mb.zip", synthetic_minified_js(MiB))]
    bundles += sorted(corpus.glob("[bp]0*.zip")) + sorted(corpus.glob("b-*.zip")) if corpus else []

    def once(bundle: Path, confined: bool) -> float:
        root = Path(tempfile.mkdtemp(dir=scratch))
        start = time.perf_counter()
        if confined:
            write_repack(root, unpack_confined(bundle, root, settings.archive), root / ".zip")
        else:
            unpack(bundle, root, settings.archive)
        return time.perf_counter() - start

    print(f"intake, median of {repeat} (confined child + repack / bare parser):")
    for label, group in (("1 MB bundle", bundles[:1]), (f"{len(bundles) - 1} corpus", bundles[1:])):
        if not group:
            continue
        figures = []
        for confined in (True, False):
            times = [statistics.median(once(b, confined) for _ in range(repeat)) for b in group]
            figures.append(statistics.median(times) * 1000)
        print(f"  {label}: {figures[0]:.1f} ms / {figures[1]:.1f} ms per bundle")


def bench_advisories(scratch: Path, shared: Path | None, rules_dir: Path, repeat: int) -> None:
    """Import time of the full advisory data, then the audit of a 1,000-package lockfile."""
    from scanner.advisories.feeds import read_feed
    from scanner.advisories.snapshot import snapshot_feeds
    from scanner.advisories.store import AdvisoryStore
    from scanner.db import make_engine
    from scanner.deps.typosquat import load_popular
    from scanner.deps.vendored import VendoredLibraries
    from scanner.stages.dependencies import DependencyStage
    from scanner.workspace import Workspace

    store = AdvisoryStore(make_engine(f"sqlite:///{scratch / 'bench-advisories.db'}"))
    start = time.perf_counter()
    if shared is not None and (shared / "pypa-advisory-database").is_dir():
        what = str(shared)
        retire = sorted((shared / "retirejs").glob("*repository*.json"))
        paths = [shared / "pypa-advisory-database" / "vulns", *retire]
        feeds = [read_feed(p) for p in paths]
    else:
        what = "the shipped snapshot"
        feeds = snapshot_feeds(rules_dir)
    count = sum(store.import_feed(f) for f in feeds)
    print(f"advisory import of {what}: {count} advisories in {time.perf_counter() - start:.1f} s")
    names = sorted(
        {
            name
            for f in feeds
            for r in f.records
            for a in r.affected
            if a.ecosystem == "npm"
            for name in [a.name]
        }
    )
    packages = {
        f"node_modules/{names[i % len(names)] if i < len(names) else f'pkg-{i}'}": {
            "version": f"{i % 5}.{i % 7}.{i % 3}"
        }
        for i in range(1000)
    }
    root = scratch / "lock-bench"
    root.mkdir()
    (root / "package-lock.json").write_text(
        json.dumps({"lockfileVersion": 3, "packages": packages})
    )
    stage = DependencyStage(
        store,
        VendoredLibraries(store.detectors()),
        load_popular(rules_dir / "popular-packages.toml"),
    )
    workspace = Workspace.from_directory(root)
    times = []
    for _ in range(repeat + 1):
        t = time.perf_counter()
        result = stage.run(workspace)
        times.append(time.perf_counter() - t)
    vulns = sum(f.category.value == "vulnerable-dependency" for f in result.findings)
    print(
        f"audit of a {len(packages)}-package lockfile: {statistics.median(times[1:]) * 1000:.0f} ms"
        f" median of {repeat} ({vulns} vulnerable-dependency findings)"
    )


def bench_runtime(settings: Settings, scratch: Path, corpus: Path | None, scans: int = 50) -> None:
    """Runtime stage per bundle (both roles) with a warm browser, over the corpus's bundles."""
    from sandbox.browser import browser_processes
    from scanner.intake import unpack
    from scanner.stages.runtime import RuntimeStage
    from scanner.workspace import Workspace

    bundles = sorted(corpus.glob("[bp]0*.zip")) + sorted(corpus.glob("b-*.zip")) if corpus else []
    if not bundles:
        bundles = [_bundle(scratch / "rt.zip", synthetic_minified_js(100 * 1024))]
    workspaces = []
    for i, b in enumerate(bundles):
        root = scratch / f"rt-{i}"
        root.mkdir()
        files = unpack(b, root, settings.archive)
        ws = Workspace(root, tuple(files))
        if ws.manifest.manifest is not None:
            workspaces.append(ws)
    stage = RuntimeStage.from_settings(settings)
    stage.run(workspaces[0])  # warm-up: the browser starts once
    times = []
    for i in range(scans):
        start = time.perf_counter()
        result = stage.run(workspaces[i % len(workspaces)])
        times.append(time.perf_counter() - start)
        if result.error:
            print(f"  scan {i}: {result.status.value} {result.error}")
    times.sort()
    p50, p90 = statistics.median(times), times[int(len(times) * 0.9) - 1]
    print(
        f"runtime stage, warm browser, {scans} scans of {len(workspaces)} bundles"
        " (user + admin each):"
        f" p50 {p50:.2f} s, p90 {p90:.2f} s; browser processes now {len(browser_processes())}"
    )


@dataclass(frozen=True)
class BenchOptions:
    corpus: Path | None = None
    repeat: int = 5
    real_js: tuple[Path, ...] = ()
    advisories: Path | None = None
    guarddog: Path | None = None
    memory_scans: int = 0  # 0: no memory figure
    only: frozenset[str] = frozenset()  # empty: every part but memory without memory_scans

    def wants(self, part: str) -> bool:
        if part == "memory" and not self.memory_scans:
            return False
        return not self.only or part in self.only


def run_bench(settings: Settings, options: BenchOptions) -> int:
    from scanner import bench_speed as speed

    reals = sorted((p.read_bytes() for p in options.real_js), key=len)
    largest = max(options.real_js, key=lambda p: p.stat().st_size) if options.real_js else None
    peer = speed.Peer.find(options.guarddog)
    repeat = options.repeat
    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-") as tmp:
        scratch = Path(tmp)
        live, server = _ensure_clamd(replace(settings, work_root=scratch / "work"), scratch)
        try:
            print(f"gatehouse bench on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
            print(f"peer: GuardDog at {peer.executable}" if peer else f"peer: {speed.UNAVAILABLE}")
            peers: dict[str, speed.Spread | None] = {}
            if options.wants("cold"):
                peers = speed.bench_cold(live, scratch, peer, repeat, reals)
            if options.wants("warm"):
                peer_1mb = peers.get("1 MB")
                if peer_1mb is None and peer is not None:
                    peer_1mb = _peer_1mb(peer, scratch, repeat, reals)
                speed.bench_warm(live, scratch, repeat, reals, peer_1mb)
            if options.wants("js"):
                speed.bench_js(live, scratch, repeat, reals)
            if options.wants("detonations"):
                speed.bench_detonations(live, scratch, repeat, reals)
            if options.wants("memory"):
                speed.bench_memory(live, scratch, options.memory_scans, reals)
            if options.wants("static"):
                bench_static(live, scratch, repeat, None)
                if largest is not None:
                    bench_static(live, scratch, repeat, largest)
            if options.wants("bomb"):
                bench_bomb(live, scratch, options.corpus)
            if options.wants("intake"):
                bench_intake(live, scratch, options.corpus, repeat)
            if options.wants("advisories"):
                bench_advisories(scratch, options.advisories, settings.rules_dir, repeat)
            if options.wants("runtime"):
                bench_runtime(live, scratch, options.corpus)
        finally:
            if server is not None:
                server.stop()
    return 0


def _peer_1mb(
    peer: bench_speed.Peer, scratch: Path, repeat: int, reals: Sequence[bytes]
) -> bench_speed.Spread:
    """GuardDog on 1 MB bundles, when the cold figures did not run it already."""
    from scanner import bench_speed as speed

    times = []
    for i in range(repeat):
        bundle = speed.plugin_bundle(scratch / f"peer-{i}.zip", speed.sample(MiB, i, reals))
        times.append(peer.scan_seconds(bundle))
    return speed.Spread(tuple(times))
