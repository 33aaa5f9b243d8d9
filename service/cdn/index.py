"""``{plugin}/index.json``: the versions on the CDN, which are yanked, and the latest.

Rebuilt from the records each time, under a lock on the plugin's row, so two versions
published at once cannot leave an index that lacks one of them.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner.semver import SEMVER_RE
from service.cdn.paths import MANIFEST_NAME, SHORT_LIVED, index_key, semver_key
from service.cdn.storage import CdnStore
from service.models import CdnPlugin, Promotion, iso, utcnow

SCHEMA = "gatehouse-index/1"


def latest(versions: list[tuple[str, bool]]) -> str | None:
    """The highest version not yanked, a release over any pre-release."""
    live = [v for v, yanked in versions if not yanked]
    releases = [v for v in live if (m := SEMVER_RE.fullmatch(v)) is not None and not m.group(4)]
    pool = releases or live
    return max(pool, key=semver_key) if pool else None


def build(s: Session, plugin: str) -> dict[str, Any]:
    rows = list(
        s.scalars(
            select(Promotion).where(
                Promotion.plugin_name == plugin, Promotion.published_at.is_not(None)
            )
        )
    )
    rows.sort(key=lambda p: semver_key(p.plugin_version), reverse=True)
    return {
        "schema": SCHEMA,
        "plugin": plugin,
        "latest": latest([(p.plugin_version, p.yanked_at is not None) for p in rows]),
        "versions": [
            {
                "version": p.plugin_version,
                "published_at": iso(p.published_at),
                "entry": p.entry,
                "manifest": f"{p.plugin_version}/{MANIFEST_NAME}",
                "yanked": p.yanked_at is not None,
                "yanked_at": iso(p.yanked_at),
                "yank_reason": p.yank_reason,
            }
            for p in rows
        ],
        "updated_at": iso(utcnow()),
    }


def write(s: Session, store: CdnStore, plugin: str) -> None:
    """Rebuild and store the index, holding the plugin's row (the caller's transaction)."""
    s.get(CdnPlugin, plugin, with_for_update=True)
    s.flush()
    data = json.dumps(build(s, plugin), indent=1).encode() + b"\n"
    store.put(index_key(plugin), data, "application/json", SHORT_LIVED, {})
