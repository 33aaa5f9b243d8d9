"""Thin tasks: ids in, the work is in service.orchestration and service.callbacks."""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from scanner.config import Settings
from scanner.pipeline import default_stage_factories
from service import callbacks, orchestration
from service.cdn import sync as cdn_sync
from service.fetch import FetchError
from service.orchestration import StageRegistry
from service.services import Services
from service.webhooks import check_secrets
from workers.celery_app import CeleryJobQueue, make_celery

log = logging.getLogger(__name__)
FETCH_RETRIES = 5
FETCH_BACKOFF = 5
FETCH_BACKOFF_MAX = 300


@functools.cache
def services() -> Services:
    # Built in the worker child on its first task: engines and browsers never cross a fork.
    settings = check_secrets(Settings.from_env())
    return Services.from_settings(settings, CeleryJobQueue(make_celery(settings)))


@functools.cache
def registry() -> StageRegistry:
    return StageRegistry(default_stage_factories())


@shared_task(
    name="gatehouse.start_scan",
    bind=True,
    max_retries=FETCH_RETRIES,
    # A transient fetch failure is retried by Celery: exponential from FETCH_BACKOFF s,
    # capped, with full jitter so a registry outage does not come back as a wave.
    autoretry_for=(FetchError,),
    retry_backoff=FETCH_BACKOFF,
    retry_backoff_max=FETCH_BACKOFF_MAX,
    retry_jitter=True,
)
def start_scan(self: Any, scan_id: str) -> None:
    """Fetch and unpack the bundle once, record intake, fan the stages out."""
    try:
        orchestration.start_scan(services(), scan_id, registry())
    except FetchError as exc:  # only transient ones reach here
        if self.request.retries >= FETCH_RETRIES:
            orchestration.give_up(services(), scan_id, "fetch", str(exc))
            return
        raise
    except SoftTimeLimitExceeded:
        limit = services().settings.task_soft_time_limit
        orchestration.give_up(services(), scan_id, "archive", f"intake took over {limit:g} s")


@shared_task(name="gatehouse.run_stage")
def run_stage(scan_id: str, stage: str) -> None:
    """Run one stage; the last one to finish concludes the scan."""
    try:
        orchestration.run_stage(
            services(), scan_id, stage, registry(), interrupted_by=(SoftTimeLimitExceeded,)
        )
    except SoftTimeLimitExceeded:
        # The work dir is already gone (removed while unwinding); the stage fails closed.
        limit = services().settings.task_soft_time_limit
        orchestration.stage_timed_out(
            services(), scan_id, stage, f"the task passed its soft time limit ({limit:g} s)"
        )


@shared_task(name="gatehouse.deliver")
def deliver(delivery_id: int) -> None:
    """One callback attempt; the sweeper sends the next one when it is due."""
    callbacks.attempt(services(), delivery_id)


@shared_task(name="gatehouse.promote")
def promote(promotion_id: int) -> None:
    """Publish a promotion, or withdraw a yanked one; the sweeper retries what stops."""
    outcome = cdn_sync.sync(services(), promotion_id)
    log.info("promotion %s: %s", promotion_id, outcome)


@shared_task(name="gatehouse.sweep")
def sweep() -> None:
    """Recover stuck scans, send due callbacks, expire pre-flight reports."""
    counts = orchestration.sweep(services())
    if any(counts.values()):
        log.info("sweep: %s", counts)
