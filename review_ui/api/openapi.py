"""GET /api/v1/openapi.json: the API description, kept beside the code it describes."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from flask import Response, jsonify

from review_ui.api import bp

SPEC = Path(__file__).with_name("openapi.yaml")


@functools.cache
def document() -> dict[str, Any]:
    data = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(document())
