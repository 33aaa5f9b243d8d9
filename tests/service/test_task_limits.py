"""Celery's limits: a soft time limit below the hard one, handled as a recorded timeout
with the work dir removed; retries with Celery's jittered backoff (issue 15)."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace
from typing import Any, ClassVar

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from flask.testing import FlaskClient

from scanner.config import Settings, SettingsError
from scanner.findings import StageResult
from scanner.workspace import Workspace
from service import orchestration
from service.models import Scan, StageRun
from service.orchestration import StageRegistry
from service.services import Services
from tests.service.conftest import InlineJobQueue, post_submission, zip_bytes


class SlowStage:
    name: ClassVar[str] = "slow"
    version: ClassVar[int] = 1
    started = threading.Event()

    @classmethod
    def from_settings(cls, _: Settings) -> SlowStage:
        return cls()

    def run(self, workspace: Workspace) -> StageResult:
        type(self).started.set()
        time.sleep(3)
        return StageResult(self.name, self.version)


def test_the_soft_limit_records_a_timeout_and_removes_the_work_dir(
    client: FlaskClient,
    svc: Services,
    jobs: InlineJobQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers import tasks

    registry = StageRegistry((SlowStage.from_settings,))
    jobs.registry = registry
    jobs.hold = True
    scan_id = post_submission(client, bundle=zip_bytes()).get_json()["scan_id"]
    orchestration.start_scan(svc, scan_id, registry)
    monkeypatch.setattr(tasks, "services", lambda: svc)
    monkeypatch.setattr(tasks, "registry", lambda: registry)
    signal.signal(signal.SIGUSR1, _raise_soft)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        start = time.monotonic()
        tasks.run_stage.apply(args=[scan_id, "slow"])
        elapsed = time.monotonic() - start
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    assert SlowStage.started.is_set()
    assert elapsed < 2.5  # interrupted, not waited out
    with svc.session() as s:
        run = s.query(StageRun).filter_by(scan_id=scan_id, stage="slow").one()
        assert run.status == "timeout" and "soft time limit" in (run.error or "")
        scan = s.get_one(Scan, scan_id)
        assert scan.status == "completed" and scan.verdict != "pass"
    leftovers = [p for p in svc.settings.work_root.iterdir() if p.name.startswith("blob-")]
    assert leftovers == []


def _raise_soft(*_: Any) -> None:
    raise SoftTimeLimitExceeded()


def test_the_soft_limit_sits_between_the_stage_timeout_and_the_hard_limit(
    settings: Settings,
) -> None:
    from workers.celery_app import make_celery

    conf = make_celery(settings).conf
    assert settings.stage_timeout < conf.task_soft_time_limit < conf.task_time_limit
    assert conf.task_time_limit - conf.task_soft_time_limit == 30  # 300 s: 30 s to clean up
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is False
    with pytest.raises(SettingsError, match="soft margin"):
        replace(settings, task_time_limit=125.0).check()  # soft at 112.5 < stage 120
