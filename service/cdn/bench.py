"""``gatehouse bench-service --only cdn|retro``: promotion to an S3 API, retro-scan speed.

``cdn``: a 1 MB bundle of 20 files promoted to an S3-compatible server (moto's, started
here as a process) the way the promotion task does it (repack read back and verified,
20 uploads each read back, the signed manifest, the index), p50 over warm runs.
``retro``: 500 promoted versions seeded in PostgreSQL, a rule change, the real workers
(``gatehouse serve``'s queues, with the sweeper); rescans per hour, and how long a new
submission's scan waits to start while they run.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Engine, func, insert, select

from scanner.config import Settings
from scanner.db import session_scope
from service.models import (
    Decision,
    Promotion,
    Publisher,
    RetroItem,
    Scan,
    Submission,
    utcnow,
)

KB = 1024
Percentile = Callable[[list[float], float], float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def s3_server(logs: Path) -> Iterator[str]:
    """moto's S3 server as a process of its own (a development tool, not a dependency)."""
    port = _free_port()
    with (logs / "moto.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def bundle_of_20(version: str, total: int = 1024 * KB) -> dict[str, bytes]:
    from scanner.bench import synthetic_minified_js

    manifest = {
        "name": "bench-cdn",
        "version": version,
        "displayName": "Bench",
        "globalName": "Bench",
        "entry": "dist/bundle.js",
        "capabilities": {"network": [], "dom": "container"},
        "license": "MIT",
    }
    files = {"plugin.json": json.dumps(manifest).encode()}
    each = (total - len(files["plugin.json"])) // 19
    files["dist/bundle.js"] = synthetic_minified_js(each, seed=1) + f"//{version}".encode()
    for n in range(18):
        files[f"dist/chunk-{n:02d}.js"] = synthetic_minified_js(each, seed=n + 2)
    return files


def bench_cdn(env: dict[str, str], logs: Path, runs: int, pct: Percentile) -> None:
    from service.cdn import sync as cdn_sync
    from service.jobs import RecordingJobQueue
    from service.orchestration import StageRegistry, start_scan
    from service.review import decisions
    from service.review.accounts import Actor, create_user
    from service.services import Services
    from service.submissions import SubmissionRequest, accept_submission

    with s3_server(logs) as endpoint:
        # moto takes any credentials; boto3 needs some.
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_DEFAULT_REGION="us-east-1")
        os.environ["AWS_SECRET_ACCESS_KEY"] = "bench"  # noqa: S105 - not a secret (moto)
        settings = replace(
            Settings.from_env(env), cdn_url="s3://bench-cdn/cdn", s3_endpoint_url=endpoint
        )
        svc = Services.from_settings(settings, RecordingJobQueue())
        svc.cdn.client.create_bucket(Bucket="bench-cdn")  # type: ignore[attr-defined]
        with svc.session() as s:
            user, _ = create_user(s, f"bench-{uuid.uuid4().hex[:6]}", "admin", "bench")
            admin = Actor(user.id, user.name, user.role)
        times: list[float] = []
        size = 0
        for i in range(runs + 2):
            files = bundle_of_20(f"1.0.{i}")
            size = sum(len(v) for v in files.values())
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "b.zip"
                path.write_bytes(_zip(files))
                req = SubmissionRequest(
                    f"msg_{uuid.uuid4().hex}", "bench-cdn", "bench-cdn", f"1.0.{i}"
                )
                accepted = accept_submission(svc, req, path)
            start_scan(svc, accepted.scan_id, StageRegistry(()))  # intake and the repack
            decisions.decide(svc, accepted.submission_id, admin, "approve", accepted.scan_id)
            promotion = svc.jobs.promotions[-1]  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            outcome = cdn_sync.sync(svc, promotion)
            if outcome != "published":
                raise RuntimeError(f"promotion {promotion}: {outcome}")
            if i >= 2:  # the first two warm connections and caches
                times.append(time.perf_counter() - t0)
        svc.engine.dispose()
    print(
        f"promotion of a {size / KB / KB:.2f} MB bundle of 20 files to an S3 API (moto server"
        f" on loopback; read back, hashed, signed manifest, index; {runs} runs):"
        f" p50 {statistics.median(times) * 1000:.0f} ms, p95 {pct(times, 0.95) * 1000:.0f} ms"
    )


def _multipart(fields: dict[str, str], bundle: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="bundle"; filename="b.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n".encode()
        + bundle
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def _seed_promoted(env: dict[str, str], logs: Path, versions: int) -> None:
    """``versions`` promoted versions of 100 plugins, all scanned with other rules, on one
    small bundle in blob storage (each rescan is still a whole scan of it)."""
    import random

    from service import bundles
    from service.jobs import RecordingJobQueue
    from service.models import new_id
    from service.services import Services

    svc = Services.from_settings(Settings.from_env(env), RecordingJobQueue())
    files = {
        "plugin.json": json.dumps(
            {
                "name": "retro",
                "version": "1.0.0",
                "displayName": "Retro",
                "globalName": "Retro",
                "entry": "dist/bundle.js",
                "capabilities": {"network": [], "dom": "container"},
                "license": "MIT",
            }
        ).encode(),
        "dist/bundle.js": b"var Retro={mount:function(c){var p=document.createElement('p');"
        b"p.textContent='hi';c.appendChild(p);}};\n",
    }
    path = logs / "retro-bundle.zip"
    path.write_bytes(_zip(files))
    stored = bundles.store_bytes(svc.blobs, path)
    rng = random.Random(3)  # noqa: S311 - usage counts for the order, not secrets
    now = utcnow()
    report = {"verdict": "pass", "findings": [], "ruleset": "sha256:before"}
    with svc.session() as s:
        bundles.record(s, stored)
        s.add(Publisher(external_id="bench-retro"))
        s.flush()
        pub = s.scalar(select(Publisher.id).where(Publisher.external_id == "bench-retro"))
        subs, scans, promos = [], [], []
        for i in range(versions):
            sid, scan_id = new_id(), new_id()
            name, version = f"retro-{i // 5}", f"1.0.{i % 5}"
            subs.append(
                {
                    "id": sid,
                    "publisher_id": pub,
                    "plugin_name": name,
                    "plugin_version": version,
                    "bundle_sha256": stored.sha256,
                    "webhook_id": f"seed-{sid}",
                    "status": "promoted",
                    "verdict": "pass",
                    "created_at": now,
                    "updated_at": now,
                }
            )
            scans.append(
                {
                    "id": scan_id,
                    "kind": "submission",
                    "submission_id": sid,
                    "bundle_sha256": stored.sha256,
                    "bundle_name": "retro.zip",
                    "status": "completed",
                    "verdict": "pass",
                    "ruleset": "sha256:before",
                    "advisories": "adv:before",
                    "report": report,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            promos.append((sid, scan_id, name, version, rng.randrange(0, 10_000)))
        s.execute(insert(Submission), subs)
        s.execute(insert(Scan), scans)
        for sid, scan_id, name, version, hits in promos:
            d = Decision(
                scan_id=scan_id,
                submission_id=sid,
                kind="reviewer",
                verdict="pass",
                reasons=[],
                actor="bench",
                action="approve",
            )
            s.add(d)
            s.flush()
            s.add(
                Promotion(
                    submission_id=sid,
                    scan_id=scan_id,
                    decision_id=d.id,
                    publisher_id=pub,
                    plugin_name=name,
                    plugin_version=version,
                    repack_sha256="0" * 64,
                    tree_sha256="0" * 64,
                    state="published",
                    store_synced=True,
                    hits=hits,
                    published_at=now,
                )
            )
    svc.engine.dispose()


@contextmanager
def _service(env: dict[str, str], logs: Path) -> Iterator[str]:
    """The processes `gatehouse serve` starts, the sweeper included."""
    from service.processes import web_command, worker_command

    port = _free_port()
    cmds = {
        "web": web_command(f"127.0.0.1:{port}", 2, 4),
        "scan": worker_command(
            "scan,av,callbacks,cdn,retro", 2, f"bench-retro-{port}", logs / "beat-schedule"
        ),
        "browser": worker_command("browser", 1, f"bench-retro-browser-{port}"),
    }
    procs = []
    for name, cmd in cmds.items():
        with (logs / f"retro-{name}.log").open("ab") as log:
            procs.append(
                subprocess.Popen(
                    cmd, env=env, cwd=logs, stdout=log, stderr=log, start_new_session=True
                )
            )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _done(engine: Engine) -> int:
    with session_scope(engine) as s:
        return int(s.scalar(select(func.count()).where(RetroItem.outcome.is_not(None))) or 0)


def _probe(addr: str, secret: str, engine: Engine, n: int) -> tuple[float, float]:
    """A new submission while the rescans run: seconds until its scan started, and until
    it completed."""
    from service.webhooks import signed_headers

    files = bundle_of_20(f"9.0.{n}", 64 * KB)
    body, ctype = _multipart(
        {"name": "bench-probe", "version": f"9.0.{n}", "publisher_id": "bench-probe"}, _zip(files)
    )
    headers = signed_headers(secret, f"msg_{uuid.uuid4().hex}", body)
    conn = http.client.HTTPConnection(addr, timeout=60)
    t0 = time.perf_counter()
    conn.request(
        "POST", "/api/v1/submissions", body=body, headers={**headers, "Content-Type": ctype}
    )
    scan_id = json.loads(conn.getresponse().read())["scan_id"]
    started = 0.0
    while time.perf_counter() - t0 < 300:
        with session_scope(engine) as s:
            status = s.scalar(select(Scan.status).where(Scan.id == scan_id))
        if status != "queued" and not started:
            started = time.perf_counter() - t0
        if status == "completed":
            return started, time.perf_counter() - t0
        time.sleep(0.1)
    raise RuntimeError(f"probe scan {scan_id} still {status} after 300 s")


def bench_retro(
    env: dict[str, str], logs: Path, versions: int, window: float, probes: int, pct: Percentile
) -> None:
    from scanner.advisories.snapshot import ensure_snapshot
    from scanner.advisories.store import AdvisoryStore
    from scanner.config import packaged_rules
    from scanner.db import make_engine

    env = {**env, "GATEHOUSE_SWEEP_INTERVAL": "2"}
    engine = make_engine(env["GATEHOUSE_DATABASE_URL"])
    ensure_snapshot(AdvisoryStore(engine), packaged_rules())
    _seed_promoted(env, logs, versions)
    with _service(env, logs) as addr:
        deadline = time.monotonic() + 300
        while _done(engine) < 4:  # warm: browsers launched, rules compiled
            if time.monotonic() > deadline:
                raise RuntimeError("no retro-scan finished in 300 s: see " + str(logs))
            time.sleep(1)
        start, t0 = _done(engine), time.monotonic()
        started, finished = [], []
        for n in range(probes):
            target = t0 + (n + 1) * window / (probes + 1)
            time.sleep(max(0.0, target - time.monotonic()))
            wait, total = _probe(addr, env["GATEHOUSE_WEBHOOK_SECRETS"], engine, n)
            started.append(wait)
            finished.append(total)
        time.sleep(max(0.0, t0 + window - time.monotonic()))
        done = _done(engine) - start
        elapsed = time.monotonic() - t0
    engine.dispose()
    rate = done * 3600 / elapsed
    print(
        f"retro-scans ({versions} promoted versions planned by a rule change; 2 in flight on"
        f" the retro queue, a 2-process worker and 1 browser worker, all stages):"
        f" {rate:,.0f} versions/hour ({done} in {elapsed:.0f} s);"
        f" {versions / rate if rate else float('inf'):.1f} h for all {versions}"
    )
    print(
        f"  a new submission meanwhile ({probes} probes): its scan started after"
        f" p50 {statistics.median(started):.1f} s, max {max(started):.1f} s;"
        f" completed p50 {statistics.median(finished):.1f} s, max {max(finished):.1f} s"
    )
    print("  CPU per stage on one small plugin (64 KB, 20 files), each stage alone, 5 runs:")
    for line in stage_cpu(Settings.from_env(env)):
        print(f"    {line}")


def _tree_cpu(root: int) -> float:
    """CPU seconds of every live process below ``root`` (itself excluded), with what each
    one's reaped children used (/proc stat utime, stime, cutime, cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick

    def below(pid: int) -> bool:
        seen = 0
        while pid in parents and seen < 64:
            pid, seen = parents[pid], seen + 1
            if pid == root:
                return True
        return False

    return sum(c for pid, c in cpu.items() if below(pid))


def stage_cpu(settings: Settings, runs: int = 5) -> list[str]:
    """CPU seconds per stage on one small plugin, each stage run alone in this process
    (the browser's and clamd's CPU counted where it is spent: the browser's process
    tree, and clamd's own process)."""
    from scanner.pipeline import default_stage_factories, opened_bundle, stage_name

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.zip"
        path.write_bytes(_zip(bundle_of_20("1.0.0", 64 * KB)))
        lines = []
        with opened_bundle(path, settings) as opened:
            assert opened.workspace is not None
            for factory in default_stage_factories():
                stage = factory(settings)
                stage.run(opened.workspace)  # warm: rules compiled, browser started
                me, tree = time.process_time(), _tree_cpu(os.getpid())
                wall = time.perf_counter()
                for _ in range(runs):
                    stage.run(opened.workspace)
                own = (time.process_time() - me) / runs
                other = (_tree_cpu(os.getpid()) - tree) / runs
                wall = (time.perf_counter() - wall) / runs
                close = getattr(stage, "close", None)
                if callable(close):
                    close()
                lines.append(
                    f"{stage_name(factory)}: {own + other:.3f} CPU s"
                    f" ({own:.3f} here, {other:.3f} in child processes), {wall:.3f} s wall"
                )
    return lines
