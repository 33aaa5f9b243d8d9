"""/healthz, /readyz (real clamd) and /metrics."""

from __future__ import annotations

from dataclasses import replace

import pytest
from flask.testing import FlaskClient

from review_ui.app import create_app
from scanner.config import Settings
from scanner.services import Services
from tests.service.conftest import post_submission, zip_bytes


def test_healthz_answers_without_dependencies(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}


@pytest.mark.integration
def test_readyz_checks_database_broker_clamd_and_browser(
    svc: Services, clamd_settings: Settings
) -> None:
    svc.settings = replace(svc.settings, clamd_socket=str(clamd_settings.clamd_socket_path))
    ready = create_app(svc.settings, svc).test_client().get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    assert set(ready.get_json()["checks"]) == {"database", "broker", "clamd", "browser"}
    svc.settings = replace(
        svc.settings, clamd_socket="/nonexistent/clamd.sock", chromium_path="/nope"
    )
    down = create_app(svc.settings, svc).test_client().get("/readyz")
    assert down.status_code == 503
    checks = down.get_json()["checks"]
    assert not checks["clamd"]["ok"] and not checks["browser"]["ok"] and checks["database"]["ok"]


def test_metrics_count_scans_by_verdict_and_stage_time(client: FlaskClient) -> None:
    post_submission(client, bundle=zip_bytes({"a.js": "EVIL"}))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'gatehouse_scans{kind="submission",status="completed",verdict="reject"} 1.0' in text
    assert 'gatehouse_stage_duration_seconds_count{stage="marker"} 1.0' in text
    assert 'gatehouse_queue_depth{queue="scan"}' in text
    assert "gatehouse_broker_up 1.0" in text
    assert "gatehouse_webhook_delivery_failures 0.0" in text
