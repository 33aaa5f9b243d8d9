"""The embedded broker redelivers a message whose worker died, after the visibility
timeout, as Redis does; acknowledged messages are gone for good (real kombu, SQLite)."""

from __future__ import annotations

import time
from pathlib import Path
from queue import Empty

import pytest
from kombu import Connection

from workers.celery_app import EMBEDDED
from workers.embedded_broker import Transport

TIMEOUT = 1.0
# kombu's own models use a loader strategy SQLAlchemy 2.1 deprecates: third-party, harmless.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


def _connection(path: Path, timeout: float = TIMEOUT) -> Connection:
    return Connection(
        f"sqlite:///{path}",
        transport=Transport,
        transport_options={"visibility_timeout": timeout},
    )


def _take(conn: Connection, wait: float = 0.5) -> object:
    return conn.SimpleQueue("scan").get(block=True, timeout=wait)


def test_a_message_left_unacknowledged_comes_back_after_the_visibility_timeout(
    tmp_path: Path,
) -> None:
    broker = tmp_path / "broker.sqlite"
    with _connection(broker) as producer:
        producer.SimpleQueue("scan").put({"scan_id": "s1"})
    dying = _connection(broker)
    taken = dying.SimpleQueue("scan").get(block=True, timeout=2)
    assert taken.payload == {"scan_id": "s1"}
    # The worker is SIGKILLed: no ack, no reject, no clean close of its channel.
    with _connection(broker) as survivor:
        with pytest.raises(Empty):
            _take(survivor)  # still within the visibility timeout
        time.sleep(TIMEOUT + 0.2)
        again = survivor.SimpleQueue("scan").get(block=True, timeout=3)
        assert again.payload == {"scan_id": "s1"}
        again.ack()
        time.sleep(TIMEOUT + 1.2)
        with pytest.raises(Empty):
            _take(survivor, wait=1.5)  # acknowledged: never delivered again


def test_a_running_task_within_the_timeout_is_not_delivered_twice(tmp_path: Path) -> None:
    broker = tmp_path / "broker.sqlite"
    with _connection(broker, timeout=30) as conn:
        conn.SimpleQueue("scan").put({"n": 1})
        first = conn.SimpleQueue("scan").get(block=True, timeout=2)
        with _connection(broker, timeout=30) as other, pytest.raises(Empty):
            _take(other, wait=1.5)
        first.ack()


def test_acks_from_the_pools_result_thread_are_applied_by_the_consumer(tmp_path: Path) -> None:
    """Celery acknowledges from another thread; the channel's session must not be used there."""
    import sqlite3
    import threading

    broker = tmp_path / "broker.sqlite"
    with _connection(broker) as conn:
        queue = conn.SimpleQueue("scan")
        for n in range(5):
            queue.put({"n": n})
        taken = [queue.get(block=True, timeout=2) for _ in range(5)]
        acks = [threading.Thread(target=m.ack) for m in taken]
        for t in acks:
            t.start()
        for t in acks:
            t.join()
        with pytest.raises(Empty):
            queue.get(block=True, timeout=0.5)  # the consumer's poll deletes the acked rows
        rows = sqlite3.connect(broker).execute("SELECT count(*) FROM kombu_message").fetchone()
        assert rows == (0,)


def test_celery_uses_this_transport_with_the_visibility_timeout(tmp_path: Path) -> None:
    from dataclasses import replace

    from scanner.config import Settings
    from workers.celery_app import make_celery

    settings = replace(Settings(), data_dir=tmp_path / "data", broker_visibility_timeout=900)
    app = make_celery(settings)
    assert app.conf.broker_transport_options["visibility_timeout"] == 900
    assert EMBEDDED == "workers.embedded_broker:Transport"
    with app.connection_for_write() as conn:
        assert conn.transport_cls in ("gatehouse-sqla", EMBEDDED)
