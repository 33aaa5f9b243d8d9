"""Code viewer, file diff, artifacts and report downloads.

Files are read back through intake and shown only as highlighted text. Artifacts are
served with the media type recorded when the scan stored them, ``nosniff`` and a
Content-Disposition, so nothing from a scan is ever rendered as a page of this site.
"""

from __future__ import annotations

import json
import re

from flask import Response, abort, current_app, render_template, request
from sqlalchemy import select

from review_ui.code import render
from review_ui.context import services_of
from review_ui.views import bp, signed_in
from service.blobs import BlobNotFoundError
from service.models import Artifact, FindingRecord, Scan, ScanKind, Submission
from service.review import files
from service.review.comparison import completed_scan
from service.review.queue import previous_approved

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._-]")


def _scan_of(submission_id: str) -> tuple[Submission, Scan]:
    with services_of(current_app).session() as s:
        sub = s.get(Submission, submission_id)
        scan = completed_scan(s, submission_id) if sub is not None else None
        if sub is None or scan is None:
            abort(404)
        s.expunge_all()
        return sub, scan


@bp.get("/submissions/<submission_id>/code")
@signed_in
def code(submission_id: str) -> str | tuple[str, int]:
    svc = services_of(current_app)
    sub, scan = _scan_of(submission_id)
    path = request.args.get("path", "")
    line = request.args.get("line", type=int)
    evidence = None
    finding_id = request.args.get("finding", type=int)
    if finding_id:
        with svc.session() as s:
            row = s.get(FindingRecord, finding_id)
            if row is not None and row.scan_id == scan.id:
                evidence = row.evidence
    want_pretty = request.args.get("view", "pretty") == "pretty"
    try:
        text = files.read_text(svc, scan, path)
    except files.FileUnavailableError as exc:
        return render_template("code.html", sub=sub, path=path, error=str(exc), view=None), 404
    view = render(path, text.text, line, evidence, want_pretty)
    return render_template("code.html", sub=sub, path=path, view=view, line=line, error=None)


@bp.get("/submissions/<submission_id>/diff")
@signed_in
def diff(submission_id: str) -> str | tuple[str, int]:
    svc = services_of(current_app)
    sub, scan = _scan_of(submission_id)
    path = request.args.get("path", "")
    with svc.session() as s:
        before_sub = previous_approved(s, s.get_one(Submission, submission_id))
        before = completed_scan(s, before_sub.id) if before_sub is not None else None
        if before is not None:
            s.expunge(before)
    if before is None:
        abort(404)
    try:
        lines = files.diff(svc, before, scan, path)
    except files.FileUnavailableError as exc:
        return render_template("diff.html", sub=sub, path=path, lines=[], error=str(exc)), 404
    return render_template("diff.html", sub=sub, path=path, lines=lines, error=None)


def _download(data: bytes, media_type: str, filename: str, inline: bool = False) -> Response:
    response = Response(data, mimetype=media_type)
    safe = SAFE_NAME_RE.sub("_", filename)[:120] or "download"
    disposition = "inline" if inline else "attachment"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{safe}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Even if a browser were talked into rendering it, nothing in it may run or load.
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@bp.get("/scans/<scan_id>/artifacts/<name>")
@signed_in
def artifact(scan_id: str, name: str) -> Response:
    svc = services_of(current_app)
    with svc.session() as s:
        scan = s.get(Scan, scan_id)
        row = s.scalar(select(Artifact).where(Artifact.scan_id == scan_id, Artifact.name == name))
        if row is None or scan is None or scan.kind == ScanKind.PREFLIGHT:
            abort(404)  # a CI user's pre-flight is theirs alone: not the desk's to show
        key, media_type = row.blob_key, row.media_type
    try:
        data = svc.blobs.get_bytes(key)
    except BlobNotFoundError:
        abort(404)
    if media_type == "image/png":
        if not data.startswith(PNG_MAGIC):
            abort(404)  # not what it claims to be: never served
        return _download(data, "image/png", name, inline=True)
    return _download(data, media_type, name)


@bp.get("/scans/<scan_id>/report.json")
@signed_in
def report_json(scan_id: str) -> Response:
    with services_of(current_app).session() as s:
        scan = s.get(Scan, scan_id)
        if scan is None or scan.report is None or scan.kind == ScanKind.PREFLIGHT:
            abort(404)
        body = json.dumps(scan.report, indent=2).encode()
    return _download(body, "application/json", f"gatehouse-{scan_id}.json")
