"""The composition root for WSGI servers: ``gunicorn 'review_ui.wsgi:build()'``."""

from __future__ import annotations

from flask import Flask

from review_ui.app import create_app
from scanner.config import Settings
from service.services import Services


def build() -> Flask:
    from workers.celery_app import CeleryJobQueue, make_celery

    settings = Settings.from_env()
    jobs = CeleryJobQueue(make_celery(settings))
    return create_app(settings, Services.from_settings(settings, jobs))
