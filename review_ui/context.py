"""The service objects an app was built with, as views reach them."""

from __future__ import annotations

from flask import Flask

from service.services import Services

EXTENSION = "gatehouse"


def services_of(app: Flask) -> Services:
    svc = app.extensions[EXTENSION]
    assert isinstance(svc, Services)
    return svc
