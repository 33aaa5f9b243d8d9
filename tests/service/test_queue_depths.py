"""Queue depths (for /metrics) read from the real brokers this machine runs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from scanner.config import Settings
from tests.service.live import private_rabbitmq, require_redis
from workers.celery_app import CeleryJobQueue, make_celery

REDIS_DEPTHS = os.environ.get("GATEHOUSE_TEST_REDIS_DEPTHS", "redis://127.0.0.1:6379/11")


def _redis() -> Iterator[str]:
    import redis

    require_redis(REDIS_DEPTHS)
    client = redis.Redis.from_url(REDIS_DEPTHS)
    client.flushdb()
    try:
        yield REDIS_DEPTHS
    finally:
        client.flushdb()


@pytest.fixture(params=["rabbitmq", "redis"])
def broker(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "rabbitmq":
        with private_rabbitmq() as url:
            yield url
    else:
        yield from _redis()


def test_depths_count_every_queue_even_after_a_missing_one(broker: str) -> None:
    jobs = CeleryJobQueue(make_celery(Settings(broker_url=broker)))
    jobs.start_scan("scan-1")
    # Two on browser; av and callbacks were never published to, so were never declared:
    # a missing queue counts as empty and does not hide the queues counted after it.
    jobs.run_stages("scan-1", ["runtime", "runtime"])
    jobs.run_stages("pre-1", ["antivirus"], urgent=True)  # a CI scan: the urgent twin
    assert jobs.depths() == {
        "scan": 1,
        "av": 0,
        "browser": 2,
        "callbacks": 0,
        "preflight.scan": 0,
        "preflight.av": 1,
        "preflight.browser": 0,
        "cdn": 0,
        "retro": 0,
    }
