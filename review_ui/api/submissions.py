"""The registry's webhook: POST /submissions, signed; GET /submissions/{id}."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, jsonify, request, url_for
from sqlalchemy import select

from review_ui.api import accepted, bp
from review_ui.api.auth import require_token
from review_ui.api.uploads import FORM_OVERHEAD, parse_multipart, saved_path, spooled_body
from review_ui.context import services_of
from review_ui.problems import ApiProblemError
from service.models import Scan, Submission, iso
from service.orchestration import summarize
from service.submissions import (
    SubmissionError,
    SubmissionRequest,
    VersionTakenError,
    accept_submission,
)
from service.webhooks import IncomingWebhook, SignatureError

FIELDS = {"name", "version", "publisher_id", "callback_url", "bundle_url", "sha256"}
REQUIRED = ("name", "version", "publisher_id")


@bp.post("/submissions")
def create_submission() -> Response:
    svc = services_of(current_app)
    try:
        incoming = IncomingWebhook.start(
            request.headers,
            svc.settings.webhook_secret_list,
            tolerance=svc.settings.webhook_tolerance,
        )
    except SignatureError as exc:
        raise ApiProblemError(401, exc.code, "Webhook signature refused", str(exc)) from None
    limit = svc.settings.archive.max_bundle_bytes + FORM_OVERHEAD
    with spooled_body(svc.settings.work_root, limit, incoming.update) as upload:
        try:
            incoming.verify()  # over the raw bytes, before anything parses them
        except SignatureError as exc:
            raise ApiProblemError(401, exc.code, "Webhook signature refused", str(exc)) from None
        fields, bundle = _fields_and_bundle(upload)
        req = SubmissionRequest(
            webhook_id=incoming.msg_id,
            publisher_id=fields["publisher_id"],
            plugin_name=fields["name"],
            plugin_version=fields["version"],
            callback_url=fields.get("callback_url"),
            bundle_url=fields.get("bundle_url"),
            sha256=fields.get("sha256"),
        )
        try:
            result = accept_submission(svc, req, bundle)
        except VersionTakenError as exc:
            raise ApiProblemError(
                409,
                "version-exists",
                "Conflict",
                str(exc),
                errors=[{"field": exc.field, "message": str(exc)}],
            ) from None
        except SubmissionError as exc:
            raise _invalid(exc.field, str(exc)) from None
    location = url_for("api.get_submission", submission_id=result.submission_id)
    body = {
        "id": result.submission_id,
        "scan_id": result.scan_id,
        "status": result.status,
        "duplicate": not result.created,
    }
    return accepted(body, location)


def _bound_to_signature(upload: Any) -> None:
    """Refuse a body that headers outside the signature could make mean something else.

    The signature covers the body, not the headers: changing only the Content-Type's
    boundary once made the same signed body carry another publisher, version and bundle.
    So the body must open with exactly the header's boundary (no preamble), and the
    header may carry no parameter a parser could read differently.
    """
    if "," in (request.content_type or ""):  # joined duplicate Content-Type headers
        raise _differential("one Content-Type header, with one media type")
    params = {k.lower(): v for k, v in request.mimetype_params.items()}
    if request.mimetype == "application/json":
        if set(params) - {"charset"} or params.get("charset", "utf-8").lower() != "utf-8":
            raise _differential("application/json takes no parameter but charset=utf-8")
    elif request.mimetype == "multipart/form-data":
        boundary = params.get("boundary", "")
        if set(params) != {"boundary"} or not boundary:
            raise _differential("multipart/form-data takes exactly one parameter, boundary")
        first = upload.body.read(len(boundary) + 4)
        upload.body.seek(0)
        if first != b"--" + boundary.encode("latin-1", "replace") + b"\r\n":
            raise _differential("the body must start with the Content-Type's boundary line")


def _differential(message: str) -> ApiProblemError:
    return ApiProblemError(
        400, "ambiguous-body", "Body and headers disagree", f"refused: {message}"
    )


def _fields_and_bundle(upload: Any) -> tuple[dict[str, str], Any]:
    _bound_to_signature(upload)
    if request.mimetype == "multipart/form-data":
        form, files = parse_multipart(upload)
        extra = (set(form) | set(files)) - FIELDS - {"bundle"}
        if extra:
            raise _invalid(sorted(extra)[0], "unknown field")
        misplaced = (set(files) - {"bundle"}) | (set(form) & {"bundle"})
        if misplaced:
            raise _invalid(sorted(misplaced)[0], "bundle is the one file part; the rest are fields")
        if len(files.getlist("bundle")) > 1 or any(len(form.getlist(k)) > 1 for k in form):
            raise _invalid("bundle", "each field may appear once")
        fields = {k: form[k] for k in form}
        part = files.get("bundle")
        bundle = saved_path(part) if part is not None else None
    elif request.mimetype == "application/json":
        try:
            # UTF-8 only (RFC 8259): json.loads would also guess UTF-16/32 from the bytes.
            text = upload.body.read().decode("utf-8")
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except (ValueError, UnicodeDecodeError):
            raise ApiProblemError(400, "malformed-json", "Malformed JSON body") from None
        if not isinstance(data, dict):
            raise ApiProblemError(400, "malformed-json", "The JSON body must be an object")
        extra = set(data) - FIELDS
        if extra:
            raise _invalid(sorted(extra)[0], "unknown field")
        if not all(isinstance(v, str) for v in data.values()):
            raise _invalid(
                next(k for k, v in data.items() if not isinstance(v, str)), "must be a string"
            )
        fields, bundle = dict(data), None
    else:
        raise ApiProblemError(
            415,
            "unsupported-media-type",
            "Unsupported Media Type",
            "send multipart/form-data (bundle inline) or application/json (bundle_url)",
        )
    for name in REQUIRED:
        if not fields.get(name):
            raise _invalid(name, "is required")
    return fields, bundle


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on which of two equal keys wins: a signed body means one thing.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _invalid(field: str, message: str) -> ApiProblemError:
    return ApiProblemError(
        422,
        "invalid-submission",
        "Invalid submission",
        f"{field}: {message}",
        errors=[{"field": field, "message": message}],
    )


@bp.get("/submissions/<submission_id>")
def get_submission(submission_id: str) -> Response:
    caller = require_token("read", "admin")
    svc = services_of(current_app)
    with svc.session() as s:
        sub = s.get(Submission, submission_id)
        # A token tied to a publisher reads that publisher's submissions only; another's
        # is as absent as one that never existed.
        if sub is None or not caller.may_read_publisher(sub.publisher_id):
            raise ApiProblemError(404, "not-found", "Not Found", "no such submission")
        scan = s.scalar(
            select(Scan).where(Scan.submission_id == sub.id).order_by(Scan.created_at.desc())
        )
        body = {
            "id": sub.id,
            "status": sub.status,
            "verdict": sub.verdict,
            "plugin": {"name": sub.plugin_name, "version": sub.plugin_version},
            "publisher_id": sub.publisher.external_id,
            "sha256": sub.bundle_sha256,
            "created_at": iso(sub.created_at),
            "updated_at": iso(sub.updated_at),
            "scan": None
            if scan is None
            else {
                "id": scan.id,
                "status": scan.status,
                "verdict": scan.verdict,
                "risk_score": scan.risk_score,
                "url": url_for("api.get_scan", scan_id=scan.id),
            },
            "findings_summary": summarize(scan.report) if scan and scan.report else {},
            "history": [
                {
                    "from": e.from_status,
                    "to": e.to_status,
                    "at": iso(e.at),
                    "actor": e.actor,
                    "reason": e.reason,
                }
                for e in sub.events
            ],
        }
    return jsonify(body)
