"""JSON under /api/v1: registry submissions, CI pre-flight scans, the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def accepted(body: dict[str, Any], location: str) -> Response:
    """202 with the status URL in the body and in Location: the work goes on elsewhere."""
    response = jsonify({**body, "status_url": location})
    response.status_code = 202
    response.headers["Location"] = location
    return response


from review_ui.api import cdn, openapi, review, scans, submissions  # noqa: E402, F401 - routes register on bp
