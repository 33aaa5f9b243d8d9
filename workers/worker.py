"""Entry point for ``celery -A workers.worker``: the app from the environment's settings."""

from __future__ import annotations

import os

from scanner.config import Settings
from service.webhooks import check_secrets
from workers.celery_app import make_celery
from workers.heartbeat import Heartbeat

# A worker with unusable signing secrets refuses to start (it would send unsigned callbacks).
settings = check_secrets(Settings.from_env())
# Below the web server: a registry's webhook is answered at once, however busy the
# scans keep the cores (the pool's children, stage workers and browsers inherit it).
if settings.worker_nice:
    os.nice(settings.worker_nice)
app = make_celery(settings)
app.steps["worker"].add(Heartbeat)
