"""A worker bootstep that records a heartbeat (service.heartbeats) on the worker's timer."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import bootsteps

from scanner.config import Settings
from scanner.db import database_url, make_engine
from service import heartbeats
from service.db import migrate
from service.workdirs import sweep_leftovers

log = logging.getLogger(__name__)


class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        settings = Settings.from_env()
        # The main process forks the pool: an unpooled engine keeps no connection to inherit.
        engine = make_engine(database_url(settings), pooled=False)
        queues = list(worker.app.amqp.queues.consume_from or worker.app.amqp.queues)

        def send() -> None:
            try:
                migrate(engine)
                problem = heartbeats.pool_problem(settings.data_dir / "browser-state", os.getpid())
                heartbeats.beat(engine, worker.hostname, queues, settings.chromium_path, problem)
                removed = sweep_leftovers(settings)  # what killed tasks on this host left
                if removed:
                    log.warning("removed %d work dirs left by killed tasks", removed)
            except Exception as exc:  # the next beat tries again; readiness shows the gap
                log.warning("heartbeat not recorded: %s", exc)

        send()
        self.tref = worker.timer.call_repeatedly(settings.heartbeat_interval, send)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
