"""CI pre-flight: POST /scans (bearer token, scope preflight), GET /scans/{id}."""

from __future__ import annotations

import time

from flask import Response, current_app, jsonify, request, url_for
from sqlalchemy.orm import Session

from review_ui.api import accepted, bp
from review_ui.api.auth import Caller, require_token
from review_ui.api.uploads import FORM_OVERHEAD, parse_multipart, saved_path, spooled_body
from review_ui.context import services_of
from review_ui.problems import ApiProblemError
from scanner.reports.sarif import automation_id, with_category
from service.blobs import BlobNotFoundError, artifact_key
from service.models import Scan, ScanStatus, Submission, iso
from service.services import Services
from service.submissions import start_preflight

MAX_WAIT = 60.0
POLL = 0.1


@bp.post("/scans")
def create_scan() -> Response:
    caller = require_token("preflight")
    svc = services_of(current_app)
    if request.mimetype != "multipart/form-data":
        raise ApiProblemError(
            415, "unsupported-media-type", "Unsupported Media Type", "send multipart/form-data"
        )
    limit = svc.settings.archive.max_bundle_bytes + FORM_OVERHEAD
    with spooled_body(svc.settings.work_root, limit, lambda _: None) as upload:
        form, files = parse_multipart(upload)
        unknown = (set(form) | set(files)) - {"bundle"}
        part = files.get("bundle")
        if unknown or part is None or len(files.getlist("bundle")) != 1:
            raise ApiProblemError(
                422,
                "invalid-scan",
                "Invalid scan request",
                "send exactly one file part named bundle, and nothing else",
                errors=[
                    {"field": sorted(unknown)[0] if unknown else "bundle", "message": "invalid"}
                ],
            )
        scan_id = start_preflight(svc, caller.token_id, saved_path(part), part.filename or "")
    location = url_for("api.get_scan", scan_id=scan_id)
    return accepted({"id": scan_id, "status": ScanStatus.QUEUED.value}, location)


@bp.get("/scans/<scan_id>")
def get_scan(scan_id: str) -> Response:
    caller = require_token("preflight", "read", "admin")
    svc = services_of(current_app)
    fmt = request.args.get("format", "json")
    if fmt not in {"json", "sarif"}:
        raise ApiProblemError(400, "bad-format", "Bad Request", "format is json or sarif")
    category = request.args.get("category")
    if category is not None:
        try:
            automation_id(category)
        except ValueError as exc:
            raise ApiProblemError(400, "bad-category", "Bad Request", str(exc)) from None
    try:
        wait = float(request.args.get("wait", "0"))
    except ValueError:
        wait = -1.0
    if not 0.0 <= wait <= MAX_WAIT:  # NaN fails too: the document says 0 to 60, so do we
        raise ApiProblemError(
            400, "bad-wait", "Bad Request", f"wait is a number of seconds from 0 to {MAX_WAIT:g}"
        )
    view = _load(svc, scan_id, caller)
    deadline = time.monotonic() + wait
    while (
        view["status"] in (ScanStatus.QUEUED, ScanStatus.SCANNING) and time.monotonic() < deadline
    ):
        time.sleep(POLL)
        view = _load(svc, scan_id, caller)
    if view["status"] == ScanStatus.EXPIRED:
        raise ApiProblemError(410, "expired", "Gone", "this pre-flight report has expired")
    if fmt == "sarif":
        return _sarif(svc, scan_id, str(view["status"]), request.args.get("category"))
    return jsonify(view)


def _load(svc: Services, scan_id: str, caller: Caller) -> dict[str, object]:
    with svc.session() as s:
        scan = s.get(Scan, scan_id)
        # Someone else's pre-flight (or another publisher's submission) is as absent as
        # one that never existed.
        if scan is None or not _may_see(s, caller, scan):
            raise ApiProblemError(404, "not-found", "Not Found", "no such scan")
        return {
            "id": scan.id,
            "kind": scan.kind,
            "status": scan.status,
            "verdict": scan.verdict,
            "risk_score": scan.risk_score,
            "submission_id": scan.submission_id,
            "created_at": iso(scan.created_at),
            "finished_at": iso(scan.finished_at),
            "expires_at": iso(scan.expires_at),
            "sarif_url": url_for("api.get_scan", scan_id=scan.id, format="sarif"),
            "report": scan.report,
        }


def _may_see(s: Session, caller: Caller, scan: Scan) -> bool:
    if caller.may_read_all() or (scan.token_id is not None and scan.token_id == caller.token_id):
        return True
    if scan.submission_id is None:
        return False
    sub = s.get(Submission, scan.submission_id)
    return sub is not None and caller.may_read_publisher(sub.publisher_id)


def _sarif(svc: Services, scan_id: str, status: str, category: str | None) -> Response:
    if status != ScanStatus.COMPLETED:
        raise ApiProblemError(
            409, "not-finished", "Conflict", "the scan has not finished; ask again with wait"
        )
    try:
        data = svc.blobs.get_bytes(artifact_key(scan_id, "report.sarif"))
    except BlobNotFoundError:
        raise ApiProblemError(404, "not-found", "Not Found", "no SARIF for this scan") from None
    if category is not None:
        try:
            data = with_category(data.decode(), category).encode()
        except ValueError as exc:
            raise ApiProblemError(400, "bad-category", "Bad Request", str(exc)) from None
    return Response(data, mimetype="application/sarif+json")
