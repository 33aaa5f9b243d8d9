"""The Celery application, built from Settings; nothing connects at import time."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery, group, signature
from kombu.transport import TRANSPORT_ALIASES

from scanner.config import Settings
from scanner.private_dirs import private_file
from service.jobs import QUEUES, URGENT, queue_of

EMBEDDED = "workers.embedded_broker:Transport"


def make_celery(settings: Settings) -> Celery:
    broker = settings.broker
    # Above the task time limit (Settings.check enforces it), or a task still running
    # would be handed to a second worker; the embedded broker honours it too.
    transport: dict[str, object] = {"visibility_timeout": int(settings.broker_visibility_timeout)}
    if broker.startswith("sqla+"):
        if not settings.broker_url:
            # The queue holds submission ids and callback ids: 0600 in the private data dir.
            private_file(settings.data_dir / "broker.sqlite")
        # kombu refuses import paths in URLs, so the embedded transport gets an alias.
        TRANSPORT_ALIASES.setdefault("gatehouse-sqla", EMBEDDED)
        broker = "gatehouse-sqla" + broker.removeprefix("sqla")
    app = Celery("gatehouse", broker=broker, set_as_current=False)
    app.conf.update(
        include=["workers.tasks"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_ignore_result=True,
        task_default_queue="scan",
        task_time_limit=settings.task_time_limit,
        # Below the hard limit: the task is interrupted in Python, records the stage as
        # timed out and its work dir is removed on the way out; the hard limit then only
        # catches a task that ignores the interruption.
        task_soft_time_limit=settings.task_soft_time_limit,
        # Decided: keep running. With acks_late, a task whose broker connection drops is
        # redelivered anyway, and every step is idempotent (the database decides who
        # records a result), so finishing the work costs nothing and cancelling it
        # mid-stage would only waste it. Set explicitly: Celery 6 changes the default.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=500,
        worker_hijack_root_logger=False,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_connection_timeout=2,
        # An accepted submission is committed first; a publish that fails is retried by
        # the sweeper, so the request need not wait long on a broker that is down.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        beat_schedule={
            "sweep": {"task": "gatehouse.sweep", "schedule": settings.sweep_interval},
        },
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
    )
    return app


class CeleryJobQueue:
    """The JobQueue protocol on a Celery broker; tasks are sent by name."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def start_scan(self, scan_id: str, urgent: bool = False) -> None:
        queue = (URGENT if urgent else "") + "scan"
        self.app.send_task("gatehouse.start_scan", args=[scan_id], queue=queue)

    def run_stages(
        self, scan_id: str, stages: Sequence[str], urgent: bool = False, background: bool = False
    ) -> None:
        # One task per stage, each on its queue, all at once: a slow stage delays no other.
        tasks = [
            signature(
                "gatehouse.run_stage",
                args=(scan_id, name),
                queue=queue_of(name, urgent, background),
                app=self.app,
            )
            for name in stages
        ]
        group(tasks).apply_async()

    def start_retro(self, scan_id: str) -> None:
        self.app.send_task("gatehouse.start_scan", args=[scan_id], queue="retro")

    def deliver(self, delivery_id: int) -> None:
        self.app.send_task("gatehouse.deliver", args=[delivery_id], queue="callbacks")

    def promote(self, promotion_id: int) -> None:
        self.app.send_task("gatehouse.promote", args=[promotion_id], queue="cdn")

    def ping(self) -> None:
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)

    def broker_identity(self) -> str | None:
        """Redis keeps nothing across a restart here (and often in production): its
        run id tells a restart. RabbitMQ and the embedded broker keep their messages."""
        with self.app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            client = getattr(conn.default_channel, "client", None)
            if client is None or not hasattr(client, "info"):
                return None
            return str(client.info("server").get("run_id")) or None

    def depths(self) -> dict[str, int]:
        out = {}
        with self.app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            channel = conn.default_channel
            for queue in QUEUES:
                try:
                    out[queue] = int(channel.queue_declare(queue, passive=True).message_count)
                except Exception:  # a queue nobody declared yet holds nothing
                    out[queue] = 0
        return out
