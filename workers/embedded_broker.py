"""The embedded broker: kombu's SQLAlchemy transport on SQLite, with a visibility timeout.

The stock transport polls once a second, which would add up to a second to every hop
of a scan, so the interval is set here. It also never redelivers: a message taken by a
worker that was then killed stays invisible for good, and the scan waited for the
sweeper. Here a taken message that is neither acknowledged nor rejected within the
visibility timeout becomes visible again, as on Redis; acknowledged messages are deleted
(the stock transport keeps them, invisible, which made them indistinguishable).
"""

from __future__ import annotations

import collections
import datetime
import logging
import time
from queue import Empty
from typing import Any

from kombu.transport.sqlalchemy import Channel as SQLAlchemyChannel
from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from sqlalchemy import delete, text, update

log = logging.getLogger(__name__)

ROW = "x-gatehouse-row"  # the message's row id, carried in its properties once taken
TRACKED = "x-gatehouse-tracked"  # rows written by this transport (older ones are left alone)
DEFAULT_VISIBILITY_TIMEOUT = 3600.0
RESTORE_EVERY = 1.0  # seconds between looks for expired messages, per queue
_OWN_OPTIONS = ("visibility_timeout",)


class Channel(SQLAlchemyChannel):
    """The SQLAlchemy channel with redelivery of messages left unacknowledged too long."""

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        options = connection.client.transport_options
        self.visibility_timeout = float(
            options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT)
        )
        self._restored_at: dict[str, float] = {}
        # Rows of messages acknowledged or rejected, deleted by the consumer's own thread:
        # acks come from the pool's result thread, and the session is not thread-safe.
        self._finished: collections.deque[int] = collections.deque()
        super().__init__(connection, **kwargs)

    def _engine_from_config(self) -> Any:
        client = self.connection.client
        saved = client.transport_options
        # The stock method hands every unknown option to create_engine.
        client.transport_options = {k: v for k, v in saved.items() if k not in _OWN_OPTIONS}
        try:
            return super()._engine_from_config()
        finally:
            client.transport_options = saved

    # kombu names the argument "message" in the base and "payload" here; keep the latter.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        payload.setdefault("properties", {})[TRACKED] = True
        payload["properties"].pop(ROW, None)
        return super()._put(queue, payload, **kwargs)

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        self._delete_finished()
        self._restore_expired(queue)
        obj = self._get_or_create(queue)
        if self.session.bind.name == "sqlite":
            self.session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            msg = (
                self.session.query(self.message_cls)
                .with_for_update()
                .filter(self.message_cls.queue_id == obj.id)
                .filter(self.message_cls.visible.is_(True))
                .order_by(self.message_cls.sent_at)
                .order_by(self.message_cls.id)
                .limit(1)
                .first()
            )
            if msg is None:
                raise Empty()
            msg.visible = False  # and its timestamp becomes the time it was taken
            payload: dict[str, Any] = loads(bytes_to_str(msg.payload))
            payload.setdefault("properties", {})[ROW] = msg.id
            return payload
        finally:
            self.session.commit()

    def _restore_expired(self, queue: str) -> None:
        """Make messages taken more than the visibility timeout ago visible again."""
        now = time.monotonic()
        if now - self._restored_at.get(queue, 0.0) < RESTORE_EVERY:
            return
        self._restored_at[queue] = now
        obj = self._get_or_create(queue)
        # The transport's timestamps are naive local time (kombu's model).
        cutoff = datetime.datetime.now() - datetime.timedelta(seconds=self.visibility_timeout)
        m = self.message_cls
        self.session.execute(
            update(m)
            .where(
                m.queue_id == obj.id,
                m.visible.is_(False),
                m.sent_at < cutoff,
                m.payload.contains(TRACKED),
            )
            .values(visible=True)
            .execution_options(synchronize_session=False)
        )
        self.session.commit()

    def _delete_finished(self) -> None:
        rows = []
        while self._finished:
            rows.append(self._finished.popleft())
        if rows:
            self.session.execute(delete(self.message_cls).where(self.message_cls.id.in_(rows)))
            self.session.commit()

    def _forget(self, delivery_tag: Any) -> None:
        message = self.qos._delivered.get(delivery_tag)
        row = message.properties.get(ROW) if message is not None else None
        if row is not None:
            self._finished.append(row)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        self._forget(delivery_tag)
        super().basic_ack(delivery_tag, multiple)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        # A requeue writes a fresh row (kombu's _restore); the taken one goes either way.
        self._forget(delivery_tag)
        super().basic_reject(delivery_tag, requeue=requeue)

    def _restore(self, message: Any) -> None:
        row = message.properties.get(ROW)
        super()._restore(message)
        if row is not None:  # unacknowledged at close: requeued as a new row
            self._finished.append(row)

    def close(self) -> None:
        if self._finished and not self.closed:
            try:
                self._delete_finished()
            except Exception as exc:  # a row left behind is redelivered once: idempotent
                log.warning("embedded broker: finished messages not deleted: %s", exc)
        super().close()


class Transport(SQLAlchemyTransport):
    Channel = Channel
    polling_interval = 0.1
