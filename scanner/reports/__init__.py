"""Reporters turn a ScanResult into JSON, SARIF or text; they do no analysis."""

from __future__ import annotations

from collections.abc import Callable

from scanner.pipeline import ScanResult
from scanner.reports.json import render_json
from scanner.reports.sarif import render_sarif
from scanner.reports.text import render_text

RENDERERS: dict[str, Callable[[ScanResult], str]] = {
    "json": render_json,
    "sarif": render_sarif,
    "text": render_text,
}
