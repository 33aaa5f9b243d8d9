"""Errors as RFC 9457 problem details (application/problem+json), never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from service.ratelimit import RateLimitedError

log = logging.getLogger(__name__)
TYPE_BASE = "https://gatehouse.dev/problems/"
MEDIA_TYPE = "application/problem+json"


class ApiProblemError(Exception):
    """Raise anywhere in a view to answer with a problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {"type": TYPE_BASE + code, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = request.path
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = MEDIA_TYPE
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiProblemError)
    def _problem(exc: ApiProblemError) -> Response:
        return problem_response(
            exc.status, exc.code, exc.title, exc.detail, exc.headers, **exc.extra
        )

    @app.errorhandler(RateLimitedError)
    def _rate_limited(exc: RateLimitedError) -> Response:
        headers = {"Retry-After": str(exc.retry_after)}
        return problem_response(429, "rate-limited", "Too Many Requests", str(exc), headers)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        if request.blueprint == "desk":
            return _page(status, exc.name or "Error", exc.description)
        code = (exc.name or "error").lower().replace(" ", "-")
        headers = dict(exc.get_headers()) if status == 405 else {}
        headers.pop("Content-Type", None)
        return problem_response(status, code, exc.name or "Error", exc.description, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if request.blueprint == "desk":
            return _page(500, "Internal Server Error", "Something went wrong; it was logged.")
        return problem_response(500, "internal-error", "Internal Server Error")


def _page(status: int, title: str, detail: str | None) -> Response:
    """The desk's errors as a page (its own layout, never a traceback)."""
    response = Response(render_template("error.html", status=status, title=title, detail=detail))
    response.status_code = status
    return response
