"""The CDN origin: ``/cdn/...`` from CDN storage, and the key that signs what it serves.

Every file request reads the version's promotion from the records first: only a
published, not-yanked version's listed files are served, so a half-uploaded version is
never visible and a yank is a 410 from the moment it commits. When the records cannot be
read the answer is 503, never the file: the blocklist of a CDN that fails open is no
blocklist (unpkg's did). The same goes for a yanked version's manifest until storage
holds the one that says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wsgi import wrap_file

from review_ui.context import services_of
from service.cdn import blocklist
from service.cdn.paths import (
    BLOCKLIST_KEY,
    IMMUTABLE,
    ORIGIN_CSP,
    SHORT_LIVED,
    CdnPathError,
    Target,
    file_key,
    index_key,
    manifest_key,
    parse_origin_path,
    tags,
)
from service.cdn.storage import CdnNotFoundError
from service.models import Promotion
from service.services import Services

log = logging.getLogger(__name__)
bp = Blueprint("cdn", __name__)
GONE_CACHE = "public, max-age=60, s-maxage=600"
FLUSH_EVERY = 10.0  # seconds between writes of the hit counts


class HitCounter:
    """Origin hits per promotion, counted in memory and written every few seconds: one
    write per file request would make the origin's speed the database's."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[int] = Counter()
        self.flushed = time.monotonic()

    def add(self, svc: Services, promotion_id: int) -> None:
        with self.lock:
            self.counts[promotion_id] += 1
            if time.monotonic() - self.flushed < FLUSH_EVERY:
                return
            counts, self.counts, self.flushed = self.counts, Counter(), time.monotonic()
        try:
            with svc.session() as s:
                for pid, n in counts.items():
                    s.execute(
                        update(Promotion).where(Promotion.id == pid).values(hits=Promotion.hits + n)
                    )
        except SQLAlchemyError as exc:  # usage is a hint for the retro order, not a record
            log.warning("origin hits not recorded: %s", exc)


def _counter(app: Flask) -> HitCounter:
    counter = app.extensions.setdefault("gatehouse-cdn-hits", HitCounter())
    assert isinstance(counter, HitCounter)
    return counter


def _headers(response: Response, cache: str, tag_list: list[str]) -> Response:
    h = response.headers
    h["Cache-Control"] = cache
    h["Content-Security-Policy"] = ORIGIN_CSP
    h["X-Content-Type-Options"] = "nosniff"
    h["Cross-Origin-Resource-Policy"] = "cross-origin"
    # CORS without credentials: what <script crossorigin integrity=...> needs for SRI.
    h["Access-Control-Allow-Origin"] = "*"
    h["Timing-Allow-Origin"] = "*"
    if tag_list:
        h["Surrogate-Key"] = " ".join(tag_list)
        h["Cache-Tag"] = ",".join(tag_list)
    return response


def _status(
    code: int,
    text: str,
    cache: str = "no-store",
    tag_list: list[str] | None = None,
    retry: bool = False,
) -> Response:
    response = Response(text + "\n", status=code, mimetype="text/plain")
    if retry:
        response.headers["Retry-After"] = "5"
    return _headers(response, cache, tag_list or [])


def _stream(
    svc: Services,
    key: str,
    content_type: str,
    cache: str,
    tag_list: list[str],
    etag: str | None = None,
) -> Response:
    try:
        stream = svc.cdn.open(key)
    except CdnNotFoundError:
        return _status(404, "Not Found")
    response = Response(
        wrap_file(request.environ, stream), content_type=content_type, direct_passthrough=True
    )
    if etag:
        response.set_etag(etag)
    _headers(response, cache, tag_list)
    response.make_conditional(request)  # 304 for a matching If-None-Match
    return response


def _canonical_request(rest: str) -> bool:
    """Only the one spelling of each URL is served: a query, a percent-encoded unreserved
    character or a doubled slash would be another cache entry, cached for a year, that a
    purge of the canonical URL misses."""
    if request.query_string:
        return False
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if not isinstance(raw, str):
        return True  # the server does not say: the decoded path is all there is
    path = raw.split("?", 1)[0]
    return path == quote(f"{request.script_root}/cdn/{rest}", safe=_PCHAR)


_PCHAR = "/:@!$&'()*+,;=-._~"


@bp.get("/cdn/<path:rest>")
def origin(rest: str) -> Response:
    try:
        target = parse_origin_path(rest)
    except CdnPathError:
        return _status(404, "Not Found")
    if not _canonical_request(rest):
        return _status(404, "Not Found")
    svc = services_of(current_app)
    try:
        if target.kind == "blocklist":
            return _blocklist(svc)
        if target.kind == "index":
            return _stream(
                svc, index_key(target.plugin), "application/json", SHORT_LIVED, tags(target.plugin)
            )
        return _version(svc, target)
    except SQLAlchemyError as exc:
        # Fail closed: without the records, nobody can say the version is not yanked.
        log.error("CDN origin: records unreadable, serving nothing: %s", exc)
        return _status(503, "Service Unavailable", retry=True)


def _blocklist(svc: Services) -> Response:
    try:
        svc.cdn.open(BLOCKLIST_KEY).close()
    except CdnNotFoundError:
        blocklist.publish(svc)  # nothing yanked yet: an empty, signed, version 0 one
    return _stream(svc, BLOCKLIST_KEY, "application/json", SHORT_LIVED, ["gh-blocklist"])


def _version(svc: Services, target: Target) -> Response:
    with svc.session() as s:
        row = s.execute(
            select(
                Promotion.id,
                Promotion.published_at,
                Promotion.yanked_at,
                Promotion.store_synced,
                Promotion.files,
                Promotion.manifest_sha256,
            ).where(
                Promotion.plugin_name == target.plugin,
                Promotion.plugin_version == target.version,
            )
        ).first()
    tag_list = tags(target.plugin, target.version)
    if row is None or row.published_at is None:
        return _status(404, "Not Found")
    if target.kind == "manifest":
        if row.yanked_at is not None and not row.store_synced:
            # Storage still holds the manifest from before the yank: not that one.
            return _status(503, "Service Unavailable", tag_list=tag_list, retry=True)
        key = manifest_key(target.plugin, target.version)
        return _stream(svc, key, "application/json", SHORT_LIVED, tag_list, row.manifest_sha256)
    if row.yanked_at is not None:
        return _status(
            410, "Gone: this version was withdrawn (see /cdn/blocklist.json)", GONE_CACHE, tag_list
        )
    listed = _listed(row.files, target.path)
    if listed is None:
        return _status(404, "Not Found")
    response = _stream(
        svc,
        file_key(target.plugin, target.version, target.path),
        str(listed["content_type"]),
        IMMUTABLE,
        tag_list,
        str(listed["sha256"]),
    )
    if response.status_code in (200, 304):
        _counter(current_app).add(svc, row.id)
    return response


def _listed(files: list[Any] | None, path: str) -> dict[str, Any] | None:
    for f in files or []:
        if isinstance(f, dict) and f.get("path") == path and "sha256" in f:
            return f
    return None


@bp.get("/.well-known/gatehouse/cdn-keys.json")
def well_known_keys() -> Response:
    """The public key(s) manifests and the blocklist are signed with (pin them)."""
    response = jsonify(services_of(current_app).signer.keys_document())
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response
