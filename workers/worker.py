"""Entry point for ``celery -A workers.worker``: the app from the environment's settings."""

from __future__ import annotations

from scanner.config import Settings
from service.webhooks import check_secrets
from workers.celery_app import make_celery
from workers.heartbeat import Heartbeat

# A worker with unusable signing secrets refuses to start (it would send unsigned callbacks).
app = make_celery(check_secrets(Settings.from_env()))
app.steps["worker"].add(Heartbeat)
