"""/healthz (the process answers), /readyz (its dependencies do), /metrics (Prometheus)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import case, func, select, text
from sqlalchemy.orm import Session

from review_ui.context import services_of
from scanner.clamav import SocketClamdClient
from service import heartbeats
from service.jobs import QUEUES as QUEUE_NAMES
from service.models import DeliveryAttempt, Scan, StageRun, WebhookDelivery
from service.services import Services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    svc = services_of(current_app)
    checks: dict[str, Callable[[], dict[str, Any] | None]] = {
        "database": lambda: _database(svc),
        "broker": svc.jobs.ping,
        "clamd": lambda: SocketClamdClient(svc.settings).ping(),
        "browser": lambda: _browser(svc),
    }
    results: dict[str, dict[str, Any]] = {}
    for name, check in checks.items():
        start = time.perf_counter()
        try:
            results[name] = {"ok": True, **(check() or {})}
        except Exception as exc:
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
        results[name]["ms"] = round((time.perf_counter() - start) * 1000, 1)
    ready = all(r["ok"] for r in results.values())
    response = jsonify({"status": "ready" if ready else "not ready", "checks": results})
    response.status_code = 200 if ready else 503
    return response


def _database(svc: Services) -> None:
    with svc.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _browser(svc: Services) -> dict[str, Any]:
    """A worker on the browser queue reported lately, and its browser ran."""
    interval = svc.settings.heartbeat_interval
    with svc.session() as s:
        workers = heartbeats.serving(heartbeats.alive(s, interval), "browser")
        if not workers:
            raise BrowserUnavailableError(
                "no worker on the browser queue has reported in the last"
                f" {heartbeats.BEATS_BEFORE_STALE * interval:g} s"
            )
        running = [w for w in workers if w.browser_error is None]
        if not running:
            raise BrowserUnavailableError(f"{workers[0].hostname}: {workers[0].browser_error}")
        return {"workers": sorted(w.hostname for w in running), "version": running[0].browser}


class BrowserUnavailableError(RuntimeError):
    """No browser worker is alive with a browser that runs."""


@bp.get("/metrics")
def metrics() -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(services_of(current_app)))
    # content_type, not mimetype: Flask would append a second "; charset=utf-8".
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class _Collector:
    """Read from the records at scrape time: every web process reports the same truth."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        with self.svc.session() as s:
            scans = GaugeMetricFamily(
                "gatehouse_scans",
                "Scans by kind, status and verdict",
                labels=["kind", "status", "verdict"],
            )
            for kind, status, verdict, n in s.execute(
                select(Scan.kind, Scan.status, Scan.verdict, func.count()).group_by(
                    Scan.kind, Scan.status, Scan.verdict
                )
            ):
                scans.add_metric([kind, status, verdict or "none"], n)
            yield scans
            yield _stage_durations(s)
            # Attempts are append-only rows, so this count only grows: a counter.
            failures = CounterMetricFamily(
                "gatehouse_webhook_delivery_failures", "Callback attempts that failed"
            )
            failures.add_metric(
                [],
                s.scalar(select(func.count()).where(DeliveryAttempt.error.is_not(None))) or 0,
            )
            yield failures
            deliveries = GaugeMetricFamily(
                "gatehouse_webhook_deliveries", "Callbacks by status", labels=["status"]
            )
            for status, n in s.execute(
                select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
            ):
                deliveries.add_metric([status], n)
            yield deliveries
        depth = GaugeMetricFamily("gatehouse_queue_depth", "Messages waiting", labels=["queue"])
        up = GaugeMetricFamily("gatehouse_broker_up", "Whether the broker answered")
        try:
            for queue, n in self.svc.jobs.depths().items():
                depth.add_metric([queue], n)
            up.add_metric([], 1)
        except Exception:
            up.add_metric([], 0)
        yield depth
        yield up
        with self.svc.session() as s:
            alive = heartbeats.alive(s, self.svc.settings.heartbeat_interval)
        workers = GaugeMetricFamily(
            "gatehouse_workers", "Workers heard from lately, by queue", labels=["queue"]
        )
        for queue in QUEUE_NAMES:
            workers.add_metric([queue], len(heartbeats.serving(alive, queue)))
        yield workers


# Upper bounds (seconds) of the stage-duration histogram: from a static stage's fraction
# of a second to the default stage timeout.
STAGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _stage_durations(s: Session) -> HistogramMetricFamily:
    """Recorded stage runs as a histogram, bucketed in the database in one query."""
    ms = StageRun.duration_ms
    columns = [
        func.sum(case((ms <= bound * 1000, 1), else_=0)).label(f"le{n}")
        for n, bound in enumerate(STAGE_BUCKETS)
    ]
    family = HistogramMetricFamily(
        "gatehouse_stage_duration_seconds", "Time each stage run took", labels=["stage"]
    )
    query = (
        select(StageRun.stage, func.count(), func.sum(ms), *columns)
        .where(ms.is_not(None))
        .group_by(StageRun.stage)
    )
    for stage, n, total_ms, *cumulative in s.execute(query):
        # Labels as the client library writes them ("1.0", "0.25"), so dashboards match.
        buckets = [
            (repr(float(b)), int(c or 0)) for b, c in zip(STAGE_BUCKETS, cumulative, strict=True)
        ]
        buckets.append(("+Inf", int(n)))
        family.add_metric([stage], buckets, (total_ms or 0) / 1000)
    return family
