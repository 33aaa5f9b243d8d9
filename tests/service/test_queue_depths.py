"""Queue depths (for /metrics) read from the real brokers this machine runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from scanner.config import Settings
from tests.service.live import require_redis
from workers.celery_app import QUEUES, CeleryJobQueue, make_celery

RABBITMQ = os.environ.get("GATEHOUSE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_DEPTHS = os.environ.get("GATEHOUSE_TEST_REDIS_DEPTHS", "redis://127.0.0.1:6379/11")


def _rabbitmq() -> Iterator[str]:
    from kombu import Connection

    try:
        with Connection(RABBITMQ, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
            present = [q for q in QUEUES if _declared(conn, q)]
    except OSError as exc:
        pytest.skip(f"RabbitMQ is not reachable at {RABBITMQ}: {exc}")
    if present:  # the test deletes its queues afterwards: never someone else's
        pytest.skip(f"RabbitMQ at {RABBITMQ} already has queues {present}")
    try:
        yield RABBITMQ
    finally:
        with Connection(RABBITMQ) as conn:
            channel = conn.channel()
            for queue in QUEUES:
                channel.queue_delete(queue)


def _declared(conn: Any, queue: str) -> bool:
    from amqp.exceptions import NotFound

    channel = conn.channel()
    try:
        channel.queue_declare(queue, passive=True)
    except NotFound:
        return False
    channel.close()
    return True


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
    yield from (_rabbitmq() if request.param == "rabbitmq" else _redis())


def test_depths_count_every_queue_even_after_a_missing_one(broker: str) -> None:
    jobs = CeleryJobQueue(make_celery(Settings(broker_url=broker)))
    jobs.start_scan("scan-1")
    # Two on browser; av and callbacks were never published to, so were never declared:
    # a missing queue counts as empty and does not hide the queues counted after it.
    jobs.run_stages("scan-1", ["runtime", "runtime"])
    assert jobs.depths() == {"scan": 1, "av": 0, "browser": 2, "callbacks": 0}
