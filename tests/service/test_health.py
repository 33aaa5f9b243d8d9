"""/healthz, /readyz (real clamd) and /metrics."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from review_ui.app import create_app
from scanner.config import Settings
from service import heartbeats
from service.models import StageRun, WorkerHeartbeat, utcnow
from service.services import Services
from tests.service.conftest import post_submission, submission_fields, zip_bytes


def test_healthz_answers_without_dependencies(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}


@pytest.mark.integration
def test_readyz_checks_database_broker_clamd_and_browser(
    svc: Services, clamd_settings: Settings
) -> None:
    svc.settings = replace(svc.settings, clamd_socket=str(clamd_settings.clamd_socket_path))
    heartbeats.beat(svc.engine, "browser-1@host", ["browser"], svc.settings.chromium_path)
    ready = create_app(svc.settings, svc).test_client().get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    checks = ready.get_json()["checks"]
    assert set(checks) == {"database", "broker", "clamd", "browser"}
    assert checks["browser"]["workers"] == ["browser-1@host"]
    assert checks["browser"]["version"].startswith("Chromium")
    svc.settings = replace(svc.settings, clamd_socket="/nonexistent/clamd.sock")
    down = create_app(svc.settings, svc).test_client().get("/readyz")
    assert down.status_code == 503
    checks = down.get_json()["checks"]
    assert not checks["clamd"]["ok"] and checks["browser"]["ok"] and checks["database"]["ok"]


def _browser_check(svc: Services) -> dict[str, object]:
    checks = create_app(svc.settings, svc).test_client().get("/readyz").get_json()["checks"]
    return dict(checks["browser"])


def test_readyz_browser_wants_a_recent_browser_worker_whose_browser_runs(svc: Services) -> None:
    chromium = svc.settings.chromium_path
    assert "no worker on the browser queue" in str(_browser_check(svc)["error"])
    heartbeats.beat(svc.engine, "scan-1@host", ["scan", "av"], chromium)
    assert not _browser_check(svc)["ok"]  # a worker, but none on the browser queue
    heartbeats.beat(svc.engine, "browser-1@host", ["browser"], "/nonexistent/chromium")
    broken = _browser_check(svc)
    assert not broken["ok"] and "FileNotFoundError" in str(broken["error"])
    heartbeats.beat(svc.engine, "browser-1@host", ["browser"], chromium)
    assert _browser_check(svc)["ok"]
    with svc.session() as s:  # silent for longer than three intervals
        s.execute(update(WorkerHeartbeat).values(seen_at=utcnow() - timedelta(minutes=2)))
    assert "no worker on the browser queue" in str(_browser_check(svc)["error"])


def test_a_pool_that_reports_its_browser_down_makes_readiness_false(
    svc: Services, tmp_path: Path
) -> None:
    """The pool in a worker's child writes its state; the worker's beat carries it."""
    states = tmp_path / "browser-state"
    states.mkdir()
    me, parent = os.getpid(), os.getppid()
    record = {"pid": me, "ppid": parent, "state": "down", "error": "aborted", "since": 0}
    (states / f"{me}.json").write_text(json.dumps(record))
    gone = {"pid": 2**22 + 7, "ppid": parent, "state": "down", "error": "old", "since": 0}
    (states / "stale.json").write_text(json.dumps(gone))
    problem = heartbeats.pool_problem(states, parent)
    assert problem is not None and "aborted" in problem
    assert not (states / "stale.json").exists()  # a record of a dead process is dropped
    other = next(p for p in range(parent + 1, parent + 100) if p not in (me, parent))
    assert heartbeats.pool_problem(states, other) is None  # another worker's child
    chromium = svc.settings.chromium_path
    heartbeats.beat(svc.engine, "browser-1@host", ["browser"], chromium, problem)
    check = _browser_check(svc)
    assert not check["ok"] and "the browser is down" in str(check["error"])
    record["state"] = "ready"
    (states / f"{me}.json").write_text(json.dumps(record))
    heartbeats.beat(
        svc.engine, "browser-1@host", ["browser"], chromium, heartbeats.pool_problem(states, parent)
    )
    assert _browser_check(svc)["ok"]


def test_heartbeats_forget_workers_gone_for_a_day(svc: Services) -> None:
    heartbeats.beat(svc.engine, "old@host", ["scan"], svc.settings.chromium_path)
    with svc.session() as s:
        s.execute(update(WorkerHeartbeat).values(seen_at=utcnow() - timedelta(days=2)))
    heartbeats.beat(svc.engine, "new@host", ["scan"], svc.settings.chromium_path)
    with svc.session() as s:
        assert [w.hostname for w in s.scalars(select(WorkerHeartbeat))] == ["new@host"]


def test_metrics_count_scans_by_verdict_and_stage_time(client: FlaskClient, svc: Services) -> None:
    post_submission(client, bundle=zip_bytes({"a.js": "EVIL"}))
    heartbeats.beat(svc.engine, "w@host", ["scan", "browser"], svc.settings.chromium_path)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'gatehouse_scans{kind="submission",status="completed",verdict="reject"} 1.0' in text
    assert 'gatehouse_stage_duration_seconds_count{stage="marker"} 1.0' in text
    assert 'gatehouse_queue_depth{queue="scan"}' in text
    assert "gatehouse_broker_up 1.0" in text
    assert "gatehouse_webhook_delivery_failures_total 0.0" in text
    assert 'gatehouse_workers{queue="browser"} 1.0' in text
    assert 'gatehouse_workers{queue="av"} 0.0' in text


def test_metrics_follow_prometheus_conventions_by_its_own_parser(
    client: FlaskClient, svc: Services
) -> None:
    for n in range(3):
        fields = submission_fields(version=f"1.0.{n}")
        post_submission(client, fields=fields, bundle=zip_bytes({"a.js": "EVIL" * (n + 1)}))
    with svc.session() as s:  # one slow run, to land in a higher bucket
        s.execute(update(StageRun).where(StageRun.stage == "marker").values(duration_ms=12_000))
    response = client.get("/metrics")
    assert response.headers.getlist("Content-Type") == [CONTENT_TYPE_LATEST]
    assert response.headers["Content-Type"].count("charset") == 1
    families = {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}
    assert families["gatehouse_stage_duration_seconds"].type == "histogram"
    assert families["gatehouse_webhook_delivery_failures"].type == "counter"
    for name in ("gatehouse_scans", "gatehouse_queue_depth", "gatehouse_workers"):
        assert families[name].type == "gauge", name
    # No gauge hides behind a reserved suffix.
    for family in families.values():
        if family.type == "gauge":
            assert not family.name.endswith(("_sum", "_count", "_total", "_bucket")), family.name
    samples = {
        (smp.name, smp.labels.get("stage"), smp.labels.get("le")): smp.value
        for smp in families["gatehouse_stage_duration_seconds"].samples
    }
    assert samples[("gatehouse_stage_duration_seconds_count", "marker", None)] == 3
    assert samples[("gatehouse_stage_duration_seconds_sum", "marker", None)] == 36.0
    assert samples[("gatehouse_stage_duration_seconds_bucket", "marker", "10.0")] == 0
    assert samples[("gatehouse_stage_duration_seconds_bucket", "marker", "30.0")] == 3
    assert samples[("gatehouse_stage_duration_seconds_bucket", "marker", "+Inf")] == 3
