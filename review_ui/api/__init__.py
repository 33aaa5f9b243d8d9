"""JSON under /api/v1: registry submissions, CI pre-flight scans, the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from review_ui.api import openapi, scans, submissions  # noqa: E402, F401 - routes register on bp
