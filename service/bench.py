"""``gatehouse bench-service``: the service's figures, measured on real processes.

Webhook intake rate and latency (100 KB inline bundles, scans queued, no worker), the
latency of GET /api/v1/scans/{id} with 100,000 scans in PostgreSQL, and end-to-end
pre-flight of a 1 MB bundle with warm workers. Starts gunicorn and Celery workers itself.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scanner.bench_speed import FLOOR_1MB_S, UNAVAILABLE, Peer, Spread, ratio
from scanner.config import Settings
from service.jobs import consumed
from service.webhooks import new_secret, signed_headers

KB = 1024
SCAN_DEADLINE = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class BenchError(RuntimeError):
    """A process the benchmark needs did not come up."""


@contextmanager
def _processes(env: dict[str, str], workers: bool, logs: Path) -> Iterator[str]:
    """The same processes ``gatehouse serve`` starts (the workers only when asked)."""
    from service.processes import web_command, worker_command

    port = _free_port()
    cmds = {"web": web_command(f"127.0.0.1:{port}", 2, Settings().web_threads)}
    if workers:
        scan_queues = f"{consumed('scan')},{consumed('av')},callbacks"
        scan_processes = Settings().worker_processes  # as `gatehouse serve` starts them
        cmds["scan"] = worker_command(scan_queues, scan_processes, f"bench-scan-{port}")
        cmds["browser"] = worker_command(consumed("browser"), 1, f"bench-browser-{port}")
    procs = []
    for name, cmd in cmds.items():
        with (logs / f"{name}.log").open("ab") as log:
            procs.append(
                subprocess.Popen(
                    cmd, env=env, cwd=logs, stdout=log, stderr=log, start_new_session=True
                )
            )
    try:
        _wait_healthy(port, logs / "web.log")
        yield f"127.0.0.1:{port}"
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _wait_healthy(port: int, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise BenchError(f"the web server did not answer within {timeout:g} s:\n{_tails(log.parent)}")


def _tails(logs: Path, chars: int = 3000) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}"
        for p in sorted(logs.glob("*.log"))
    )


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


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
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _manifest(name: str, version: str) -> bytes:
    return json.dumps(
        {
            "name": name,
            "version": version,
            "displayName": "Bench",
            "globalName": "Bench",
            "entry": "dist/bundle.js",
            "capabilities": {"network": [], "dom": "container"},
            "license": "MIT",
        }
    ).encode()


def _webhooks(secret: str, count: int, first: int = 0) -> list[tuple[bytes, str]]:
    """Signed-to-be webhook bodies with 100 KB inline bundles, each a new version."""
    rng = random.Random(5 + first)  # noqa: S311 - filler bytes for bundles, not secrets
    payloads = []
    for i in range(first, first + count):
        js = (
            b"var Bench={mount:function(c){}};//"
            + rng.randbytes(100 * KB).hex()[: 100 * KB].encode()
        )
        bundle = _zip({"plugin.json": _manifest("bench", f"1.0.{i}"), "dist/bundle.js": js})
        body, ctype = _multipart(
            {"name": "bench", "version": f"1.{i}.0", "publisher_id": f"pub-{i % 50}"}, bundle
        )
        payloads.append((body, ctype))
    return payloads


def _fire(
    addr: str, secret: str, payloads: list[tuple[bytes, str]], threads: int
) -> tuple[float, list[float], list[int]]:
    """Send the webhooks from ``threads`` keep-alive clients: (seconds, ms each, statuses)."""
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    chunks = [payloads[i::threads] for i in range(threads)]

    def client(chunk: list[tuple[bytes, str]]) -> None:
        conn = http.client.HTTPConnection(addr, timeout=30)
        for body, ctype in chunk:
            headers = signed_headers(secret, "msg_" + uuid.uuid4().hex, body)
            headers["Content-Type"] = ctype
            start = time.perf_counter()
            conn.request("POST", "/api/v1/submissions", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            with lock:
                latencies.append((time.perf_counter() - start) * 1000)
                statuses.append(resp.status)

    start = time.perf_counter()
    pool = [threading.Thread(target=client, args=(c,)) for c in chunks]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - start, latencies, statuses


def _intake_line(what: str, count: int, fired: tuple[float, list[float], list[int]]) -> str:
    elapsed, latencies, statuses = fired
    accepted = statuses.count(202)
    others = Counter(s for s in statuses if s != 202)
    return (
        f"{what}: {accepted / elapsed:.0f} accepted/s, p50 {_pct(latencies, 0.5):.1f} ms,"
        f" p95 {_pct(latencies, 0.95):.1f} ms, {accepted}/{count} answered 202"
        + (f" (others: {dict(others)})" if others else "")
    )


def bench_intake(env: dict[str, str], logs: Path, requests_total: int, threads: int) -> None:
    secret = env["GATEHOUSE_WEBHOOK_SECRETS"]
    payloads = _webhooks(secret, requests_total)
    with _processes(env, workers=False, logs=logs) as addr:
        fired = _fire(addr, secret, payloads, threads)
    print(
        _intake_line(
            f"webhook intake ({requests_total} x {len(payloads[0][0]) // KB} KB inline,"
            f" {threads} clients, idle workers: scans queued on the broker)",
            requests_total,
            fired,
        )
    )


def bench_busy(env: dict[str, str], logs: Path, backlog: int, requests_total: int) -> None:
    """While the same box scans a registry backlog: intake, and a CI pre-flight's wait."""
    secret = env["GATEHOUSE_WEBHOOK_SECRETS"]
    queued = _webhooks(secret, backlog, first=10_000)
    payloads = _webhooks(secret, requests_total, first=20_000)
    token = _preflight_token(env)
    with _processes(env, workers=True, logs=logs) as addr:
        _fire(addr, secret, queued, 4)  # the backlog the workers now chew on
        time.sleep(5)  # the workers are busy: scans, browser, clamd
        fired = _fire(addr, secret, payloads, 8)
        print(
            _intake_line(
                f"webhook intake while the box scans a backlog of {backlog} submissions"
                f" ({requests_total} x 100 KB, 8 clients, workers niced)",
                requests_total,
                fired,
            )
        )
        seconds, verdict = _preflight_once(addr, token, _bench_js(), 99)
        print(
            f"pre-flight of a 1 MB bundle behind that backlog (its own queues):"
            f" {seconds:.1f} s to the report, verdict {verdict}"
        )


def _sample_report(scratch: Path) -> dict[str, object]:
    """A real report to fill the table with: the static stages over a 100 KB bundle."""
    from scanner.bench import synthetic_minified_js
    from scanner.pipeline import build_stages, scan_bundle
    from scanner.policy import Policy
    from scanner.reports.json import report_dict
    from scanner.stages.js_static import JsStaticStage
    from scanner.stages.manifest import ManifestStage

    settings = Settings(work_root=scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    bundle = scratch / "sample.zip"
    js = b"var Bench={mount:function(c){document.cookie;fetch('https://x.test/'+c)}};\n"
    bundle.write_bytes(
        _zip(
            {
                "plugin.json": _manifest("bench", "1.0.0"),
                "dist/bundle.js": js + synthetic_minified_js(100 * KB),
            }
        )
    )
    stages, unavailable = build_stages(
        settings, [ManifestStage.from_settings, JsStaticStage.from_settings]
    )
    result = scan_bundle(
        bundle, settings, stages, Policy.load(settings.policy_path), unavailable=unavailable
    )
    return report_dict(result)


def bench_get(env: dict[str, str], logs: Path, scans: int, lookups: int) -> None:
    from sqlalchemy import text

    from scanner.db import make_engine, session_scope
    from service.db import migrate
    from service.tokens import create_token

    engine = make_engine(env["GATEHOUSE_DATABASE_URL"])
    migrate(engine)
    report = _sample_report(Path(env["GATEHOUSE_WORK_ROOT"]))
    start = time.perf_counter()
    with session_scope(engine) as s:
        _, token = create_token(s, "bench", {"read"})
        s.execute(
            text(
                "INSERT INTO scans (id, kind, bundle_name, status, verdict, risk_score, report,"
                " created_at, updated_at, finished_at)"
                " SELECT md5(i::text || :salt), 'preflight', 'bundle.zip', 'completed', 'pass', 0,"
                " CAST(:report AS json), now(), now(), now() FROM generate_series(1, :n) AS i"
            ),
            {"salt": uuid.uuid4().hex, "report": json.dumps(report), "n": scans},
        )
        ids = [
            r[0]
            for r in s.execute(
                text("SELECT id FROM scans ORDER BY random() LIMIT :k"), {"k": lookups}
            )
        ]
        total = s.execute(text("SELECT count(*) FROM scans")).scalar_one()
    s_elapsed = time.perf_counter() - start
    engine.dispose()
    with _processes(env, workers=False, logs=logs) as addr:
        latencies: list[float] = []
        conn = http.client.HTTPConnection(addr, timeout=30)
        auth = {"Authorization": f"Bearer {token}"}
        for scan_id in ids:
            t0 = time.perf_counter()
            conn.request("GET", f"/api/v1/scans/{scan_id}", headers=auth)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
            latencies.append((time.perf_counter() - t0) * 1000)
    print(
        f"GET /api/v1/scans/{{id}} with {total:,} scans in PostgreSQL"
        f" (report {len(json.dumps(report)) // KB} KB each, {lookups} random ids;"
        f" rows loaded in {s_elapsed:.0f} s): p50 {_pct(latencies, 0.5):.1f} ms,"
        f" p95 {_pct(latencies, 0.95):.1f} ms"
    )


def _preflight_token(env: dict[str, str]) -> str:
    from scanner.db import make_engine, session_scope
    from service.db import migrate
    from service.tokens import create_token

    engine = make_engine(env["GATEHOUSE_DATABASE_URL"])
    migrate(engine)
    with session_scope(engine) as s:
        _, token = create_token(s, "bench-preflight", {"preflight"}, hourly_limit=10_000)
    engine.dispose()
    return token


def _bench_js() -> bytes:
    from scanner.bench import synthetic_minified_js

    js = b"var Bench={mount:function(c){var p=document.createElement('p');c.appendChild(p);}};\n"
    return js + synthetic_minified_js(1024 * KB - len(js))


def _preflight_once(addr: str, token: str, js: bytes, i: int) -> tuple[float, str]:
    """Upload a 1 MB bundle to the pre-flight API and wait for its report: (s, verdict)."""
    bundle = _zip(
        {"plugin.json": _manifest("bench", f"2.0.{i}"), "dist/bundle.js": js + f"//{i}".encode()}
    )
    body, ctype = _multipart({}, bundle)
    conn = http.client.HTTPConnection(addr, timeout=120)
    auth = {"Authorization": f"Bearer {token}"}
    t0 = time.perf_counter()
    conn.request("POST", "/api/v1/scans", body=body, headers={**auth, "Content-Type": ctype})
    scan = json.loads(conn.getresponse().read())
    view: dict[str, Any] = {"status": ""}
    while view["status"] != "completed":
        if time.perf_counter() - t0 > SCAN_DEADLINE:
            raise BenchError(f"scan {scan['id']} still {view['status']} after {SCAN_DEADLINE} s")
        conn.request("GET", f"/api/v1/scans/{scan['id']}?wait=30", headers=auth)
        view = json.loads(conn.getresponse().read())
    return time.perf_counter() - t0, str(view["verdict"])


def bench_preflight(env: dict[str, str], logs: Path, runs: int, peer: Peer | None) -> None:
    """One 1 MB bundle at a time through the service, warm, beside GuardDog's static scan
    of the same bundle and the floor (issue 16)."""
    token = _preflight_token(env)
    js = _bench_js()
    times: list[float] = []
    verdict = ""
    with _processes(env, workers=True, logs=logs) as addr:
        for i in range(runs + 2):
            try:
                seconds, verdict = _preflight_once(addr, token, js, i)
            except BenchError as exc:
                raise BenchError(f"{exc}\n{_tails(logs)}") from None
            if i >= 2:  # the first two warm the workers (browser launch, rule compilation)
                times.append(seconds)
    ours = Spread(tuple(times))
    theirs = _peer_times(peer, js, runs, Path(env["GATEHOUSE_WORK_ROOT"]))
    beside = f"GuardDog static {theirs.text()}" if theirs else f"GuardDog: {UNAVAILABLE}"
    print(
        f"end-to-end pre-flight of a 1 MB bundle (upload to report, all stages, warm workers,"
        f" {runs} runs): p50 {ours.median:.2f} s, p90 {_pct(times, 0.9):.2f} s"
        f" ({ours.text()}), last verdict {verdict}; {beside}, ratio {ratio(ours, theirs)};"
        f" floor {FLOOR_1MB_S:.1f} s, ratio {ratio(ours, Spread((FLOOR_1MB_S,)))}"
    )


def _peer_times(peer: Peer | None, js: bytes, runs: int, scratch: Path) -> Spread | None:
    if peer is None:
        return None
    scratch.mkdir(parents=True, exist_ok=True)
    times = []
    for i in range(runs):
        bundle = scratch / f"peer-{i}.zip"
        bundle.write_bytes(
            _zip({"plugin.json": _manifest("bench", "2.0.0"), "dist/bundle.js": js + b"//%d" % i})
        )
        times.append(peer.scan_seconds(bundle))
        bundle.unlink()
    return Spread(tuple(times))


def _submit(addr: str, token: str, js: bytes, i: int) -> str:
    bundle = _zip(
        {"plugin.json": _manifest("bench", f"3.0.{i}"), "dist/bundle.js": js + f"//{i}".encode()}
    )
    body, ctype = _multipart({}, bundle)
    conn = http.client.HTTPConnection(addr, timeout=120)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": ctype}
    conn.request("POST", "/api/v1/scans", body=body, headers=auth)
    return str(json.loads(conn.getresponse().read())["id"])


def _wait_done(addr: str, token: str, scan_id: str, deadline: float) -> None:
    conn = http.client.HTTPConnection(addr, timeout=120)
    auth = {"Authorization": f"Bearer {token}"}
    status = ""
    while status != "completed":
        if time.monotonic() > deadline:
            raise BenchError(f"scan {scan_id} still {status} at the deadline")
        conn.request("GET", f"/api/v1/scans/{scan_id}?wait=30", headers=auth)
        status = str(json.loads(conn.getresponse().read())["status"])


def _busy_cores() -> tuple[float, float]:
    """(busy, total) jiffies of all cores so far, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def bench_throughput(env: dict[str, str], logs: Path, bundles: int, runs: int) -> None:
    """Distinct 1 MB bundles submitted at once to the workers `gatehouse serve` starts:
    bundles per hour from the first upload to the last report, and how busy the cores were."""
    token = _preflight_token(env)
    js = _bench_js()
    rates: list[float] = []
    busy: list[float] = []
    with _processes(env, workers=True, logs=logs) as addr:
        for i in range(2):  # warm-up: browser launch, rule compilation, advisory import
            _preflight_once(addr, token, js, 500 + i)
        for run in range(runs):
            cpu_before, start = _busy_cores(), time.perf_counter()
            first = 10_000 * (run + 1)
            ids = [_submit(addr, token, js, first + i) for i in range(bundles)]
            deadline = time.monotonic() + SCAN_DEADLINE * bundles
            for scan_id in ids:
                _wait_done(addr, token, scan_id, deadline)
            elapsed = time.perf_counter() - start
            cpu_after = _busy_cores()
            rates.append(bundles / elapsed * 3600)
            busy.append(100 * (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1]))
    print(
        f"throughput, {bundles} distinct 1 MB bundles at once, default workers"
        f" ({Settings().worker_processes} scan processes, 1 browser process), {runs} runs:"
        f" {Spread(tuple(rates)).text('bundles/hour', 0)} (min/median/max);"
        f" cores busy {Spread(tuple(busy)).text('%', 0)} (the load generator and the"
        " database share them)"
    )


def bench_review(env: dict[str, str], logs: Path, pending: int, runs: int) -> None:
    """The desk's pages on PostgreSQL (service.review.bench seeds and fetches them)."""
    from scanner.config import packaged_rules
    from scanner.db import make_engine
    from service.review import bench as desk

    engine = make_engine(env["GATEHOUSE_DATABASE_URL"])
    big, seeded = desk.prepare(engine, packaged_rules(), pending)
    engine.dispose()
    # Plain http on loopback: the session cookie must not be Secure-only here.
    env = {**env, "GATEHOUSE_COOKIE_SECURE": "0"}
    with _processes(env, workers=False, logs=logs) as addr:
        lines = desk.measure(addr, big, pending, runs, _pct)
    print(f"desk ({pending:,} waiting submissions seeded in {seeded:.0f} s):")
    for line in lines:
        print(f"  {line}")


def run(
    database_url: str,
    broker_url: str,
    scratch: Path,
    clamd_socket: Path,
    scans: int,
    only: set[str],
    guarddog: Path | None = None,
    throughput: tuple[int, int] = (60, 3),
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    env.update(
        {
            "GATEHOUSE_DATA_DIR": str(scratch / "data"),
            "GATEHOUSE_WORK_ROOT": str(scratch / "work"),
            "GATEHOUSE_DATABASE_URL": database_url,
            "GATEHOUSE_BROKER_URL": broker_url,
            "GATEHOUSE_CLAMD_SOCKET": str(clamd_socket),
            "GATEHOUSE_WEBHOOK_SECRETS": new_secret(),
            "GATEHOUSE_PUBLISHER_DAILY_LIMIT": "1000000",
        }
    )
    logs = scratch / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (scratch / "data").mkdir(parents=True, exist_ok=True)
    print(
        f"database {database_url.split('@')[-1]}, broker {broker_url.split('@')[-1]};"
        f" {os.cpu_count()} cores"
    )
    from scanner.db import make_engine
    from service.db import migrate

    engine = make_engine(database_url)
    migrate(engine)
    engine.dispose()
    if not only or "intake" in only:
        bench_intake(env, logs, 1000, 8)
    if not only or "get" in only:
        bench_get(env, logs, scans, 2000)
    if not only or "review" in only:
        bench_review(env, logs, 10_000, 200)
    if not only or "cdn" in only:
        from service.cdn.bench import bench_cdn

        bench_cdn(env, logs, 15, _pct)
    if not only or "retro" in only:
        import redis

        from service.cdn.bench import bench_retro

        redis.Redis.from_url(broker_url).flushdb()
        bench_retro(env, logs, 500, 180.0, 5, _pct)
    if not only or "preflight" in only:
        import redis

        # The intake part left 1,000 scans queued: measure pre-flight on an idle queue.
        redis.Redis.from_url(broker_url).flushdb()
        bench_preflight(env, logs, 10, Peer.find(guarddog))
    if not only or "throughput" in only:
        import redis

        redis.Redis.from_url(broker_url).flushdb()
        bench_throughput(env, logs, *throughput)
    if not only or "busy" in only:
        import redis

        redis.Redis.from_url(broker_url).flushdb()
        bench_busy(env, logs, backlog=60, requests_total=300)
