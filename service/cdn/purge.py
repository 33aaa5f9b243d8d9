"""Purge hooks: a signed webhook to each configured CDN, naming the URLs and the cache
tags to drop, sent through the callback rows (retries with backoff, every attempt kept).

A purge is requested only after storage says what the CDN should fetch next (the files
deleted, the manifest and index rewritten): purging first would let an edge re-fetch the
old bytes in between.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from urllib.parse import quote

from sqlalchemy.orm import Session

from scanner.config import Settings
from service.callbacks import PURGE_EVENT
from service.cdn.paths import BLOCKLIST_KEY, file_key, index_key, manifest_key, tags
from service.models import WebhookDelivery, iso, utcnow


def url_of(settings: Settings, key: str) -> str:
    """The public URL of a CDN key (the blocklist has its own short name)."""
    path = "blocklist.json" if key == BLOCKLIST_KEY else key
    return f"{settings.cdn_public_url}/{quote(path, safe='/@+')}"


def urls_of(settings: Settings, plugin: str, version: str, paths: list[str]) -> list[str]:
    keys = [file_key(plugin, version, p) for p in paths]
    keys += [manifest_key(plugin, version), index_key(plugin), BLOCKLIST_KEY]
    return [url_of(settings, k) for k in keys]


def enqueue(
    s: Session,
    settings: Settings,
    submission_id: str,
    plugin: str,
    version: str,
    paths: list[str],
    reason: str,
) -> list[WebhookDelivery]:
    """One delivery per purge hook, in the caller's transaction."""
    body = {
        "type": PURGE_EVENT,
        "timestamp": iso(utcnow()),
        "data": {
            "reason": reason,
            "plugin": plugin,
            "version": version,
            "urls": urls_of(settings, plugin, version, paths),
            "tags": tags(plugin, version),
        },
    }
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    out = []
    for hook in settings.cdn_purge_url_list:
        delivery = WebhookDelivery(
            message_id="msg_" + uuid.uuid4().hex,
            event_type=PURGE_EVENT,
            submission_id=submission_id,
            url=hook,
            body=text,
            # Dispatched after the commit; the sweeper takes over once this lease ends.
            next_attempt_at=utcnow() + timedelta(seconds=60),
        )
        s.add(delivery)
        out.append(delivery)
    s.flush()
    return out
