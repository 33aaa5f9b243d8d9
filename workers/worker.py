"""Entry point for ``celery -A workers.worker``: the app from the environment's settings."""

from __future__ import annotations

from scanner.config import Settings
from workers.celery_app import make_celery
from workers.heartbeat import Heartbeat

app = make_celery(Settings.from_env())
app.steps["worker"].add(Heartbeat)
