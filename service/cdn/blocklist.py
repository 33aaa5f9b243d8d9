"""``/cdn/blocklist.json``: every yanked version, signed and versioned, for hosts to poll.

Its version is the id of the newest yank or un-yank, so it only grows; a host keeps the
highest version it has verified and refuses an older document (a cache or an attacker
replaying one from before a yank). Each entry lists the files' SRI too, so a host can
refuse the bytes wherever they are served from.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scanner.db import insert_if_absent
from service.cdn.paths import BLOCKLIST_KEY, SHORT_LIVED
from service.cdn.signing import BLOCKLIST_TYPE, Signer
from service.models import CdnDocument, Promotion, YankEvent, iso, utcnow
from service.services import Services

SCHEMA = "gatehouse-blocklist/1"
NAME = "blocklist"


def serial(s: Session) -> int:
    return int(s.scalar(select(func.max(YankEvent.id))) or 0)


def build(s: Session, signer: Signer) -> tuple[int, bytes]:
    rows = s.scalars(
        select(Promotion)
        .where(Promotion.yanked_at.is_not(None), Promotion.published_at.is_not(None))
        .order_by(Promotion.plugin_name, Promotion.plugin_version)
    )
    version = serial(s)
    body: dict[str, Any] = {
        "schema": SCHEMA,
        "version": version,
        "issued_at": iso(utcnow()),
        "entries": [
            {
                "plugin": p.plugin_name,
                "version": p.plugin_version,
                "yanked_at": iso(p.yanked_at),
                "reason": p.yank_reason,
                "files": [
                    {"path": f["path"], "integrity": f["integrity"]} for f in (p.files or [])
                ],
            }
            for p in rows
        ],
    }
    return version, signer.envelope(BLOCKLIST_TYPE, json.dumps(body, sort_keys=True).encode())


def publish(svc: Services) -> int:
    """Write the current blocklist unless a newer one is written already; its version."""
    with svc.session() as s:
        insert_if_absent(s, CdnDocument, {"name": NAME, "serial": -1, "written_at": utcnow()})
        doc = s.get_one(CdnDocument, NAME, with_for_update=True)
        version, data = build(s, svc.signer)
        if version < doc.serial:
            return doc.serial  # another writer got a newer one out first
        svc.cdn.put(BLOCKLIST_KEY, data, "application/json", SHORT_LIVED, {})
        doc.serial, doc.sha256 = version, hashlib.sha256(data).hexdigest()
        doc.written_at = utcnow()
        return version


def ensure(svc: Services) -> None:
    """Publish the (maybe empty) blocklist once, so hosts can poll it from the start."""
    with svc.session() as s:
        written = s.get(CdnDocument, NAME)
    if written is None or written.serial < 0:
        publish(svc)
